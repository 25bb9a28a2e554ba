"""The checker: ``check(expectation, history) -> Verdict``, a pure function.

``figures`` measures the history (time to detect, time to settle, run_count, executions, overlaps,
stuck, flapping); ``check`` compares those figures and the final states with one expectation.
A history that cannot support a verdict (a fault that never fired, an API that never answered)
gives ``unknown`` with the reason, never a guess.  Tested on hand-written histories.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.model.expectation import Expectation, RunExpectation
from harness.model.history import TERMINAL, FlowRun, History, State, TaskRun, reporter, task_states
from harness.model.scenario import Scenario

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
# A state after a fault that says Prefect noticed it: anything but still-running or done.
_UNREFLECTING = frozenset({"RUNNING", "COMPLETED"})


@dataclass
class Verdict:
    outcome: str
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    claim: str | None = None  # held | refuted | None (no claim, or it predicts nothing)
    claim_reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first_injection(history: History) -> float | None:
    times = [f["injected_at"] for f in history.faults if f.get("injected_at")]
    return min(times) if times else None


def overlaps(history: History) -> list[dict[str, Any]]:
    """Flow runs executed by two processes at once, from the ledger's per-process intervals.

    With background task workers the unit is the task run: a flow's delayed tasks are meant to
    run at once in several replicas; one task run in two of them is the overlap."""
    unit = "task_run_id" if any("task_worker" in i for i in history.infrastructure) else "flow_run_id"
    spans: dict[str, dict[tuple, list[float]]] = defaultdict(dict)
    for line in history.ledger:
        run, who = line.get(unit), (line.get("host"), line.get("pid"), line.get("pstart"))
        if run is None:
            continue
        span = spans[run].setdefault(who, [line["time"], line["time"]])
        span[0], span[1] = min(span[0], line["time"]), max(span[1], line["time"])
    found = []
    for run, by_proc in spans.items():
        procs = sorted(by_proc.items(), key=lambda kv: kv[1][0])
        for (a, (a0, a1)), (b, (b0, b1)) in zip(procs, procs[1:]):
            if b0 < a1:
                found.append({unit: run, "processes": [list(a[:2]), list(b[:2])], "overlap_seconds": round(a1 - b0, 3)})
    return found


def _flapped(run: FlowRun) -> bool:
    """A terminal state that is not the run's last state was overwritten."""
    return any(s.type in TERMINAL for s in run.states[:-1])


def _oom_evidence(history: History, infra: list[dict[str, Any]]) -> bool | None:
    """Did the kernel's OOM killer act on the main run?  None: nothing could tell."""
    if infra:
        return any(bool(i.get("oom_killed")) for i in infra)
    told = None
    for f in history.faults:
        d = f.get("detail") or {}
        if "oom_kills" in d:
            told = bool(told) or d["oom_kills"] > 0
        if "watchdog_killed_at" in d:
            told = bool(told) or d["watchdog_killed_at"] is not None
    return told


def figures(history: History) -> dict[str, Any]:
    main = history.main
    injected = _first_injection(history)
    fig: dict[str, Any] = {
        "final": None, "final_name": None, "run_count": None, "time_to_detect": None,
        "detected_as": None, "time_to_settle": None, "stuck": None, "flapping": False,
        "executions": dict(sorted(Counter(l["task"] for l in history.ledger if l.get("event") == "start").items())),
        "re_executions": 0, "overlaps": overlaps(history), "oom_killed": None, "exit_code": None,
        "reported_by": None, "path": [],
    }
    fig["re_executions"] = sum(max(0, n - 1) for n in fig["executions"].values())
    fig["flapping"] = any(_flapped(r) for r in history.flow_runs if r.role != "subflow")
    infra = [i for i in history.infrastructure if main is not None and i.get("flow_run_id") == main.id]
    fig["oom_killed"] = _oom_evidence(history, infra)
    fig["exit_code"] = infra[0].get("exit_code") if infra else None
    fig.update(_task_worker_figures(history))
    if main is None or main.final is None:
        return fig
    fig.update(final=main.final.type, final_name=main.final.name, run_count=main.run_count,
               stuck=main.final.type not in TERMINAL, reported_by=reporter(main.final.message),
               path=[f"{s.type}/{s.name}" for s in main.states])
    if injected is not None:
        # a cancel's CANCELLING is the harness's own request: the run reflects it once it leaves it
        unreflecting = _UNREFLECTING | ({"CANCELLING"} if any(f["kind"] == "cancel" for f in history.faults) else set())
        for s in main.states:
            if s.timestamp >= injected and s.type not in unreflecting:
                fig["time_to_detect"] = round(s.timestamp - injected, 3)
                fig["detected_as"] = f"{s.type}/{s.name}"
                break
    if main.final.type in TERMINAL:
        fig["time_to_settle"] = round(main.final.timestamp - main.states[0].timestamp, 3)
    return fig


def _task_worker_figures(history: History) -> dict[str, Any]:
    """Background tasks: each main-run task run's final state and run_count, and which task worker
    replica (and generation: a restarted replica) executed each task body, from the ledger's pids."""
    replicas = {i["pid"]: ("foreign-" if i.get("foreign") else "") + f"task-worker-{i['task_worker']}"
                + (f".{i['generation']}" if i.get("generation") else "")
                for i in history.infrastructure if "task_worker" in i}
    if not replicas:
        return {}
    main_ids = {r.id for r in history.runs("main")}
    executed_by: dict[str, list[str]] = {}
    for line in history.ledger:
        if line.get("event") == "start":
            executed_by.setdefault(line["task"], []).append(replicas.get(line.get("pid"), f"pid {line.get('pid')}"))
    return {"tasks": {t.name: {"final": t.final.type if t.final else None, "run_count": t.run_count}
                      for t in sorted(history.task_runs, key=lambda t: t.name) if t.flow_run_id in main_ids},
            "executed_by": dict(sorted(executed_by.items()))}


def _check_tasks(expected: dict[str, RunExpectation], history: History) -> list[str]:
    """Task runs by name, of the main run (the latest created of that name, should a flow retry have
    run it again: the history lists task runs oldest first)."""
    main = history.main
    why = []
    for name, wanted in expected.items():
        runs = [t for t in history.task_runs if t.name == name and main is not None and t.flow_run_id == main.id]
        why += check_run(wanted, runs[-1] if runs else None, f"task {name}")
    return why


def _matches(value: Any, allowed: Any) -> bool:
    return value in allowed if isinstance(allowed, list) else value == allowed


def check_run(expect: RunExpectation, run: FlowRun | TaskRun | None, label: str) -> list[str]:
    """Differences between one flow (or task) run and a run expectation, as sentences."""
    if run is None or run.final is None:
        return [f"{label}: no state was observed"]
    why = []
    if expect.final is not None and not _matches(run.final.type, expect.final):
        why.append(f"{label}: final state {run.final.type} ({run.final.name}), expected {expect.final}")
    if expect.final_name is not None and not _matches(run.final.name, expect.final_name):
        why.append(f"{label}: final state name {run.final.name!r}, expected {expect.final_name!r}")
    if expect.message is not None and not re.search(expect.message, run.final.message or ""):
        why.append(f"{label}: final message {run.final.message!r} does not match /{expect.message}/")
    if expect.run_count is not None and not _matches(run.run_count, expect.run_count):
        why.append(f"{label}: run_count {run.run_count}, expected {expect.run_count}")
    return why


def is_state(state: State | str, wanted: str) -> bool:
    """``wanted`` names the state: its type (SCHEDULED), its name (AwaitingRetry) or both
    (SCHEDULED/AwaitingRetry).  ``state`` is a State or a figure's "TYPE/Name"."""
    kind, _, name = (state if isinstance(state, str) else f"{state.type}/{state.name}").partition("/")
    return wanted in (kind, name, f"{kind}/{name}")


def _check_path(expect: Expectation, history: History, fig: dict[str, Any]) -> list[str]:
    """The main run's path: states it entered and did not, from the first fault on (the whole run
    without one), the first state that reflected the fault, and who set the final state."""
    main, why = history.main, []
    if main is None:
        return why
    since = _first_injection(history)
    path = [s for s in main.states if since is None or s.timestamp >= since]
    where = "after the fault" if since is not None else "in the run"
    shown = " -> ".join(f"{s.type}/{s.name}" for s in path) or "no state"
    for wanted in expect.passes_through:
        if not any(is_state(s, wanted) for s in path):
            why.append(f"main run: never entered {wanted} {where} ({shown})")
    for unwanted in expect.never:
        entered = [s for s in path if is_state(s, unwanted)]
        if entered:
            why.append(f"main run: entered {entered[0].type}/{entered[0].name} {where}, expected never {unwanted}")
    if expect.detected_as is not None:
        allowed = expect.detected_as if isinstance(expect.detected_as, list) else [expect.detected_as]
        got = fig["detected_as"]
        if got is None or not any(is_state(got, a) for a in allowed):
            why.append(f"main run: detected as {got or 'nothing'}, expected {' or '.join(allowed)}")
    if expect.reported_by is not None and not _matches(fig["reported_by"], expect.reported_by):
        message = main.final.message if main.final else None
        why.append(f"main run: final state reported by {fig['reported_by']} ({message!r}), expected {expect.reported_by}")
    return why


def _check_executions(expected: dict[str, Any], fig: dict[str, Any]) -> list[str]:
    why = []
    for task, count in expected.items():
        got = fig["executions"].get(task, 0)
        if not _matches(got, count):
            why.append(f"task {task}: executed {got} time(s), expected {count}")
    return why


def _check_subflows(expect: RunExpectation, history: History) -> list[str]:
    subs = history.runs("subflow")
    why = [] if subs else ["subflows: none observed"]
    for sub in subs:
        why += check_run(expect, sub, f"subflow {sub.flow_name}")
    return why


def _unknown_reasons(history: History) -> list[str]:
    why = [f"fault {f['kind']} -> {f['target']}: {f['error']}" for f in history.faults if f.get("error")]
    ran = sorted({t.name for t in history.task_runs})
    for i, f in enumerate(history.faults):
        detail = f.get("detail") or {}
        if f.get("injected_at") or f.get("error") or detail.get("not_fired"):  # not_fired: a storm's run settled first
            continue
        task = detail.get("task")
        if task is not None and history.main is not None and history.main.final is not None \
                and not task_states({name: "" for name in ran}, task):
            # the trigger names a task the flow never ran: the row's mistake, named by its field
            why.append(f"@faults.{i}.when.task: the flow never ran a task {task!r} (its task runs: "
                       f"{', '.join(ran[:12]) or 'none'}{', ...' if len(ran) > 12 else ''}), so fault {f['kind']} "
                       "never fired")
            continue
        why.append(f"fault {f['kind']} -> {f['target']} never fired (its trigger"
                   f"{', ' + detail['trigger'] + ',' if detail.get('trigger') else ''} was not seen)")
    if history.main is None or history.main.final is None:
        why.append("the main flow run's states could not be read")
    return why + [n for n in history.notes if n.startswith("unknown:")]


def _storm_hits(history: History) -> tuple[set[str], int]:
    """The storm's runs a fault hit while they ran, and how many faults landed after Prefect had
    recorded their run's end: under a storm's load the poll that saw a run's trigger can be seconds
    old, and a SIGKILL of a process that has already reported Completed does not make it Crashed.
    The run's terminal state and the fault carry times from the same clock (the flow run's process
    and the harness run on one machine, containers and kind nodes included)."""
    runs = {r.id: r for r in history.runs("main")}
    hit, after_end = set(), 0
    for f in history.faults:
        run_id = (f.get("detail") or {}).get("flow_run_id")
        if not f.get("injected_at"):
            continue
        run = runs.get(run_id)
        if run is not None and any(s.type in TERMINAL and s.timestamp <= f["injected_at"] for s in run.states):
            after_end += 1
        else:
            hit.add(run_id)
    return hit, after_end


def storm_figures(history: History, hits: tuple[set[str], int]) -> dict[str, Any] | None:
    """A storm's account of its runs: how many, how each ended, which a fault hit (``hits``:
    ``_storm_hits`` of the history), which are stuck; None for a single run."""
    mains = history.runs("main")
    if len(mains) < 2:
        return None
    hit, after_end = hits
    known = {r.id for r in history.flow_runs}
    stray = sorted({l.get("flow_run_id") for l in history.ledger} - known - {None})
    return {"runs": len(mains), "faulted": sum(r.id in hit for r in mains),
            "settled_before_fault": sum(1 for f in history.faults if (f.get("detail") or {}).get("not_fired")),
            "fault_after_run_ended": after_end,
            "final": dict(Counter(r.final.type if r.final else "UNSEEN" for r in mains)),
            "stuck": [r.id for r in mains if r.final is None or r.final.type not in TERMINAL],
            "unaccounted_ledger_runs": stray}


def _grouped(reasons: Counter) -> list[str]:
    return [f"{n} run(s): {reason}" for reason, n in reasons.items()]


def _check_every_run(wanted: Any, history: History) -> list[str]:
    """Every run of a storm against one expectation (a claim's prediction): one line per distinct
    difference."""
    return _grouped(Counter(reason for run in history.runs("main") for reason in check_run(wanted, run, "a run")))


def _check_storm(expect: Expectation, history: History, storm: dict[str, Any], hit: set[str]) -> list[str]:
    """Every run of a storm against its expectation; one line per distinct difference."""
    grouped: dict[str, int] = Counter()
    for run in history.runs("main"):
        faulted = run.id in hit
        wanted = expect.faulted if faulted and expect.faulted is not None else expect
        for reason in check_run(wanted, run, "a faulted run" if faulted else "an unfaulted run"):
            grouped[reason] += 1
    why = _grouped(grouped)
    for state, least in expect.at_least.items():
        got = storm["final"].get(state, 0)
        if got < least:
            why.append(f"at least {least} run(s) {state} expected, {got} were (final states: {storm['final']})")
    if storm["unaccounted_ledger_runs"]:
        why.append(f"ledger lines of flow runs the scenario did not start: {storm['unaccounted_ledger_runs']}")
    return why


def check(expect: Expectation, history: History, scenario: Scenario | None = None) -> Verdict:
    fig = figures(history)
    unknown = _unknown_reasons(history)
    if unknown:
        return Verdict(UNKNOWN, unknown, fig)
    hits = _storm_hits(history)
    storm = storm_figures(history, hits)
    if storm is not None:
        fig["storm"] = storm
        why = _check_storm(expect, history, storm, hits[0]) + _check_executions(expect.executions, fig)
    else:
        why = check_run(expect, history.main, "main run") + _check_executions(expect.executions, fig)
    why += _check_tasks(expect.tasks, history)
    if storm is None:
        why += _check_path(expect, history, fig)
    if expect.detect_within_seconds is not None:
        ttd = fig["time_to_detect"]
        if ttd is None:
            why.append(f"no state reflected the fault (expected within {expect.detect_within_seconds:g}s)")
        elif ttd > expect.detect_within_seconds:
            why.append(f"detected after {ttd:.1f}s, expected within {expect.detect_within_seconds:g}s")
    if fig["time_to_settle"] is not None and fig["time_to_settle"] > expect.settle_within_seconds:
        why.append(f"settled after {fig['time_to_settle']:.1f}s, bound {expect.settle_within_seconds:g}s")
    if storm is None and fig["stuck"] and (expect.final is None or not _matches(fig["final"], expect.final)):
        why.append(f"stuck: still {fig['final']} at the {history.bound_seconds:g}s bound")
    if expect.subflows is not None:
        why += _check_subflows(expect.subflows, history)
    if bool(fig["overlaps"]) != expect.overlap:
        why.append(f"overlapping executions: {fig['overlaps'] or 'none'}, expected {'some' if expect.overlap else 'none'}")
    if fig["flapping"] != expect.flapping:
        why.append(f"flapping (a terminal state overwritten): {fig['flapping']}, expected {expect.flapping}")
    for name, wanted in (("oom_killed", expect.oom_killed), ("exit_code", expect.exit_code)):
        if wanted is None:
            continue
        if fig[name] is None:
            why.append(f"{name}: the backend gave no evidence, expected {wanted}")
        elif not _matches(fig[name], wanted):
            why.append(f"{name}: {fig[name]}, expected {wanted}")
    if scenario is not None:
        reruns = history.runs("rerun")
        for i, follow in enumerate(scenario.then):
            why += check_run(follow.expect, reruns[i] if i < len(reruns) else None, f"then[{i}] {follow.action}")
    verdict = Verdict(FAIL if why else PASS, why, fig)
    if scenario is not None and scenario.claim is not None and scenario.claim.predicts is not None:
        predicts = scenario.claim.predicts
        # a storm's claim is about every one of its runs, faulted or not
        mine = _check_every_run(predicts, history) if storm is not None else check_run(predicts, history.main, "main run")
        claim_why = mine + _check_executions(predicts.executions, fig)
        if predicts.subflows is not None:
            claim_why += _check_subflows(predicts.subflows, history)
        verdict.claim = "refuted" if claim_why else "held"
        verdict.claim_reasons = claim_why
    return verdict
