"""Chaos Toolkit actions: start a scenario's flow run, inject and heal faults, stop everything.

Each action does what ``run_scenario`` does for the same step, with the same functions: the
system comes from a :class:`ChaosSession`, the workload is deployed by the backend's ``deploy``
(kept open until the run ends), a trigger is awaited by polling ``observe.snapshot`` /
``observe.fired`` as ``run._watch`` does, and a fault is made by the backend's ``fault`` and
injected / healed through ``faults.inject`` / ``faults.heal``, so it is recorded the same way.

Arguments and results are JSON.  A fault is described with the matrix's own fields and validated
by its model (the fault alone, then the scenario with it on this backend), so bad input is
refused with the matrix's messages, naming the argument and the scenario.

``inject_fault`` never heals by itself: ``heal_faults`` does (an exported experiment pauses
``heal_after_seconds`` and then heals that fault; its rollbacks heal whatever is still open).
"""

import copy
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.ctk import find_scenario, seconds, state
from harness.model import faults
from harness.model.faults import FaultRecord
from harness.model.fields import BACKENDS
from harness.model.matrix import _format_errors
from harness.model.scenario import FaultSpec, Scenario
from harness.run import observe
from harness.run.case import POLL

__all__ = ["start_run", "inject_fault", "heal_faults", "stop_system"]


def start_run(scenario: str, backend: str = "local", matrix: str | None = None) -> dict:
    """Deploy the scenario's workload with its config on ``backend`` and create its flow run.

    The matrix (default: the repository's ``scenarios/``) is loaded and validated whole first.
    The backend's system is started on first use and reused by later runs of this process; a
    run started earlier in this process is ended first (its deployment cleaned up)."""
    found = find_scenario(scenario, matrix, "start_run")
    if backend not in BACKENDS or backend not in found.backends:
        raise ValueError(f"start_run: argument 'backend': scenario {found.id!r} runs on "
                         f"{', '.join(found.backends)}, not {backend!r}")
    if found.workload.runs > 1:
        raise ValueError(f"start_run: scenario {found.id!r}: workload.runs is {found.workload.runs}: a storm; "
                         "start_run starts one flow run (run storms with python -m harness run)")
    if found.own_server:
        raise ValueError(f"start_run: scenario {found.id!r}: server.env sets its server's settings, and "
                         "start_run runs on the process's shared server (run it with python -m harness run)")
    state.end_run()
    system = state.session().system(backend, found.database)
    if getattr(system, "shared_worker", None) is not None:
        # an experiment may inject any fault of the catalogue, the worker's too, whatever its row
        # says: each run has a worker of its own, never the one other cases share
        system.shared_worker.stop()
        system.shared_worker = None
    instance = f"{found.id}-{uuid.uuid4().hex[:6]}"
    stack = ExitStack()
    try:
        deployed = stack.enter_context(system.deploy(found, instance))
        run_id = system.api.create_flow_run(deployed.deployment_id, found.workload.parameters, ["chaos", instance])
    except BaseException:
        stack.close()
        raise
    run = state.Run(found, backend, system, deployed, stack, run_id, time.time())
    state.begin(run)
    return {"flow_run_id": run_id, "scenario": found.id, "backend": backend, "instance": instance,
            "deployment_id": deployed.deployment_id, "session": state.session().id,
            "workdir": str(state.session().workdir), "api_url": system.api.url, "started_at": run.started}


def _refused(where: str, run: state.Run, exc: ValidationError) -> ValueError:
    """The matrix's own error lines; the fault's fields named as this action's arguments."""
    lines = _format_errors(Path(where), run.scenario.id, exc.errors())
    return ValueError("\n".join(line.replace(": faults.0.", ": argument ") for line in lines))


def _spec(run: state.Run, raw: dict[str, Any]) -> FaultSpec:
    """The fault through the scenario model, on this run's backend: its own fields, and the rules
    of the row (the backend has the fault, an oom fault has a memory limit, restart-database needs
    PostgreSQL, ...)."""
    row = {**run.scenario.model_dump(exclude_unset=True), "backends": [run.backend], "faults": [raw]}
    try:
        spec = Scenario.model_validate(row).faults[0]
    except ValidationError as exc:
        raise _refused("inject_fault", run, exc) from None
    if spec.share is not None:
        raise ValueError(f"inject_fault: scenario {run.scenario.id!r}: argument share: a share of a storm's runs; "
                         "this run is one flow run")
    if spec.kind in faults.API_FAULTS and run.deployed.extra.get("proxy") is None:
        raise ValueError(f"inject_fault: scenario {run.scenario.id!r}: argument kind: {spec.kind} needs a fault "
                         "proxy, and this scenario was deployed without one (it has no API fault)")
    return spec


def _await(run: state.Run, spec: FaultSpec, timeout: float) -> tuple[bool, observe.Snapshot]:
    """Poll the run until the fault's trigger fires (as run._watch decides it) or ``timeout``."""
    deadline = time.time() + timeout
    seen_at = None  # a delayed trigger counts from the state as this call first sees it
    while True:
        snap = observe.snapshot(run.system.api, run.flow_run_id, with_tasks=spec.when.task is not None)
        seen_at = observe.first_seen(spec.when, snap, seen_at)
        if snap.flow_state is not None and observe.fired(spec.when, snap, run.started, seen_at):
            return True, snap
        if time.time() >= deadline:
            return False, snap
        time.sleep(POLL)


def _copy(record: FaultRecord) -> dict[str, Any]:
    """The record as it is now: the journal serializes outputs at its end, after later heals."""
    return copy.deepcopy(record.as_dict())


def inject_fault(kind: str, target: str | None = None, when: dict | None = None, timeout: float = 120,
                 **fields: Any) -> dict:
    """Wait for the fault's trigger, then inject it into the current run; return its record.

    ``kind``, ``target``, ``when`` and ``fields`` are a fault of the matrix (``when`` None: now;
    fields such as grace_seconds, mem_limit, status, heal_after_seconds).  ``timeout``: seconds to
    wait for the trigger.  A trigger not seen, or an injection that failed, raises (the failed
    record is kept: the faults_injected probe counts only faults injected without an error)."""
    run = state.current("inject_fault")
    raw = {"kind": kind, "when": {"after_seconds": 0} if when is None else when, **fields}
    if target is not None:
        raw["target"] = target
    spec = _spec(run, raw)
    timeout = seconds(f"inject_fault: scenario {run.scenario.id!r}", "timeout", timeout)
    fired, snap = _await(run, spec, timeout)
    injected = state.Injected(spec, FaultRecord(spec.kind, spec.target))
    with state.LOCK:
        run.faults.append(injected)
        index = len(run.faults) - 1
    what = f"inject_fault: {spec.kind} -> {spec.target} ({run.describe()})"
    if not fired:
        injected.record.detail["not_fired"] = f"its trigger ({spec.when.describe()}) was not seen within {timeout:g}s"
        raise TimeoutError(f"{what}: its trigger ({spec.when.describe()}) was not seen within {timeout:g}s "
                           f"(the run is {snap.flow_state}, its tasks {snap.tasks}); nothing was injected")
    try:
        injected.fault = run.system.fault(spec, run.deployed, run.flow_run_id)
    except Exception as exc:
        injected.record.error = f"inject failed: {type(exc).__name__}: {exc}"
    else:
        faults.inject(injected.fault, injected.record)
    if injected.record.error:
        raise RuntimeError(f"{what}: {injected.record.error}")
    return {"index": index, "trigger": spec.when.describe(), "heal_after_seconds": spec.heal_after_seconds,
            "run_state": snap.flow_state, **_copy(injected.record)}


def heal_faults(index: int | None = None) -> list:
    """Heal the current run's open faults (injected, healing kinds, not healed yet), or only the
    ``index``-th inject_fault of the run; return the healed records.  Without a run: nothing."""
    run = state.current_or_none()
    if run is None:
        return []
    chosen = run.faults
    if index is not None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(run.faults):
            raise ValueError(f"heal_faults: argument 'index': {index!r}, but {len(run.faults)} fault(s) were "
                             f"injected ({run.describe()})")
        chosen = [run.faults[index]]
        if not chosen[0].heals:
            raise ValueError(f"heal_faults: argument 'index': fault {index} ({chosen[0].spec.kind}) does not heal "
                             f"({run.describe()})")
    healed, failed = [], []
    with state.LOCK:
        for injected in chosen:
            if injected.open:
                faults.heal(injected.fault, injected.record)
                (failed if injected.record.error else healed).append(_copy(injected.record))
    if failed:
        errors = "; ".join(f"{f['kind']}: {f['error']}" for f in failed)
        raise RuntimeError(f"heal_faults: {errors} ({run.describe()})")
    return healed


def stop_system() -> dict:
    """End the current run (its deployment cleaned up) and the session: every system stopped,
    every process of the session's marker reaped, its cgroups and directory removed.  Idempotent;
    it also runs at exit."""
    return state.close()
