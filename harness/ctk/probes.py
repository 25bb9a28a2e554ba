"""Chaos Toolkit probes: what the current run looks like, read the way the harness reads it.

``flow_run_state`` waits as ``run._watch`` does (terminal, then a quiet period in which no state
overwrites the terminal one, or the bound): an exported hypothesis waits in it.
The others read the run once it has settled: the ledger for executions, and for the rest the
history ``observe.collect`` gathers and the checker's own ``figures`` (run_count, the final
state's name and message, time to detect, overlaps, flapping, OOM evidence, subflows), so a
probe's output is the figure the harness's verdict would have used.

Every probe needs a run started by the ``start_run`` action in the same process; without one it
raises, naming itself.  Results are JSON: strings, numbers, booleans, lists, or null.
"""

import time
from typing import Any

from harness import ledger
from harness.ctk import seconds, state
from harness.model.check import figures
from harness.model.history import FlowRun, History, TaskRun
from harness.run import observe
from harness.run.case import POLL, add_infrastructure

__all__ = ["flow_run_state", "flow_run_state_name", "flow_run_message", "flow_run_count", "task_run_state",
           "task_run_count", "executions", "subflow_states", "time_to_detect", "overlapping", "flapping",
           "oom_killed", "exit_code", "faults_injected", "api_healthy"]


def _task(where: str, task: Any) -> str:
    if not isinstance(task, str) or not task:
        raise ValueError(f"{where}: argument 'task': a task run name such as 'step-1', not {task!r}")
    return task


def _history(run: state.Run) -> History:
    """The run's whole history, as run_scenario collects it once the run has settled."""
    history = observe.collect(
        run.system.api, scenario=run.scenario.id, backend=run.backend, started_at=run.started,
        bound=run.expect.settle_within_seconds, main_id=run.flow_run_id, rerun_ids=[],
        faults=[i.record.as_dict() for i in run.faults], ledger_path=run.deployed.ledger)
    add_infrastructure(history, run.system, run.deployed)
    return history


def _figure(where: str, name: str) -> Any:
    return figures(_history(state.current(where)))[name]


def _final(where: str) -> FlowRun:
    run = state.current(where)
    main = _history(run).main
    if main is None or main.final is None:
        raise RuntimeError(f"{where}: no state of the flow run could be read ({run.describe()})")
    return main


def flow_run_state(wait_seconds: float = 0, quiet_seconds: float = 3) -> str | None:
    """The flow run's state type (e.g. "CRASHED") once it is terminal and stayed so for
    ``quiet_seconds``, or at the bound: ``wait_seconds`` counted from start_run, as a scenario's
    settle_within_seconds is.  A non-terminal state at the bound means stuck; null: the API never
    answered."""
    wait_seconds = seconds("flow_run_state", "wait_seconds", wait_seconds)
    quiet_seconds = seconds("flow_run_state", "quiet_seconds", quiet_seconds)
    run = state.current("flow_run_state")
    deadline, quiet_until, seen = run.started + wait_seconds, None, None
    while True:
        snap = observe.snapshot(run.system.api, run.flow_run_id, with_tasks=False)
        now = time.time()
        seen = snap.flow_state or seen
        if snap.terminal:
            quiet_until = quiet_until or now + quiet_seconds
            if now >= quiet_until:
                return snap.flow_state
        elif snap.flow_state is not None:
            quiet_until = None  # the terminal state was overwritten (a retry, a reschedule): wait again
        if now >= deadline:
            return seen
        time.sleep(POLL)


def flow_run_state_name() -> str:
    """The final state's name (e.g. "Crashed", "AwaitingRetry")."""
    return _final("flow_run_state_name").final.name


def flow_run_message() -> str:
    """The final state's message ("" when it has none)."""
    return _final("flow_run_message").final.message or ""


def flow_run_count() -> int:
    """The flow run's run_count: how many times Prefect ran it (retries and reschedules count)."""
    return _final("flow_run_count").run_count


def _task_run(where: str, task: Any) -> TaskRun | None:
    """The flow run's task run named ``task`` (the latest created, should a flow retry have run it
    again: the history lists task runs oldest first), as the checker picks it; None: no such task run."""
    task = _task(where, task)
    run = state.current(where)
    found = [t for t in _history(run).task_runs if t.name == task and t.flow_run_id == run.flow_run_id]
    return found[-1] if found else None


def task_run_state(task: str) -> str | None:
    """The final state type of the flow run's task run named ``task``; null: no such task run (or
    it has no state)."""
    found = _task_run("task_run_state", task)
    return found.states[-1].type if found is not None and found.states else None


def task_run_count(task: str) -> int | None:
    """The run_count of the flow run's task run named ``task`` (task retries count); null: no such task run."""
    found = _task_run("task_run_count", task)
    return found.run_count if found is not None else None


def executions(task: str | None = None) -> int:
    """Task-body executions from the ledger (its ``start`` lines) of ``task``, or of every task."""
    if task is not None:
        task = _task("executions", task)
    lines, _ = ledger.read(state.current("executions").deployed.ledger)
    return sum(1 for line in lines if line.get("event") == "start" and task in (None, line.get("task")))


def subflow_states() -> list:
    """The final state type of each subflow run (null for one without a state), oldest first."""
    run = state.current("subflow_states")
    return [r.final.type if r.final else None for r in _history(run).runs("subflow")]


def time_to_detect() -> float | None:
    """Seconds from the first fault's injection to the first state that reflects it; null: none did."""
    return _figure("time_to_detect", "time_to_detect")


def overlapping() -> bool:
    """Whether two processes executed the flow run at once (the ledger's per-process spans)."""
    return bool(_figure("overlapping", "overlaps"))


def flapping() -> bool:
    """Whether a terminal state of the run was later overwritten."""
    return _figure("flapping", "flapping")


def oom_killed() -> bool | None:
    """Whether the kernel's OOM killer acted on the run; null: nothing could tell.  An oom fault is
    closed first (it never heals), as run_scenario closes faults before it collects: its memory
    cgroup's OOM count is read then."""
    run = state.current("oom_killed")
    with state.LOCK:
        for injected in run.faults:
            if injected.spec.kind == "oom":
                injected.close()
    return _figure("oom_killed", "oom_killed")


def exit_code() -> int | None:
    """The first flow-run container's exit code, where the backend accounts for it (docker)."""
    return _figure("exit_code", "exit_code")


def faults_injected() -> int:
    """How many inject_fault calls of the run injected their fault without an error (a failed heal
    is an error too): the harness calls a verdict unknown when any fault did not."""
    run = state.current("faults_injected")
    return sum(1 for i in run.faults if i.record.injected_at is not None and i.record.error is None)


def api_healthy() -> bool:
    """Whether the Prefect server of the current run answers its health endpoint."""
    return state.current("api_healthy").system.api.healthy()
