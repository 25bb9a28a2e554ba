"""Watching a flow run through the Prefect API: triggers while it runs, the history after.

``Snapshot`` is what one poll sees (the run's state, its tasks' states, subflows included);
``fired`` decides a trigger from a snapshot, and ``first_seen`` keeps when a delayed trigger's
state was first seen across polls; both are pure, as is ``Polls``, the account of how the polls
went.  ``collect`` reads the full state history of every flow run and task run of the scenario
once the run has settled: the API's own record, so a transition too quick for polling is still
in the history.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import ledger
from harness.model.history import TERMINAL, FlowRun, History, State, TaskRun, task_states
from harness.model.scenario import Trigger
from harness.sut import procs
from harness.sut.api import APIError, PrefectAPI


@dataclass
class Snapshot:
    at: float  # when the answer came: what it shows, the harness saw then (a busy server answers late)
    flow_state: str | None = None  # None: the API did not answer
    tasks: dict[str, str] = field(default_factory=dict)  # task run name -> state type (the latest attempt's)
    run_count: int = 0  # the flow run's, as the API counts entries into Running

    @property
    def terminal(self) -> bool:
        return self.flow_state in TERMINAL


@dataclass
class Polls:
    """How one case's polls went: how many, how many the API did not answer, the slowest, and
    ``blind``, the longest the harness went without an answer (from ``started``, when the case
    began to create its runs, to the first answer, between answers, from the last answer to the
    watch's end).  The harness sees nothing in such a gap, so a long one explains a long
    observation lag or a trigger seen too late; a short one does not rule out a slow server,
    whose answer can be as old as the time it took (``slowest``)."""
    started: float
    count: int = 0
    unanswered: int = 0
    slowest: float = 0.0
    blind: float = 0.0
    answered_at: float | None = None

    def add(self, sent: float, done: float, answered: bool) -> None:
        self.count += 1
        self.slowest = max(self.slowest, done - sent)
        if answered:
            self.blind = max(self.blind, done - (self.started if self.answered_at is None else self.answered_at))
            self.answered_at = done
        else:
            self.unanswered += 1

    def as_dict(self, ended: float) -> dict[str, float | int]:
        since = self.started if self.answered_at is None else self.answered_at
        return {"count": self.count, "unanswered": self.unanswered, "slowest": round(self.slowest, 3),
                "blind": round(max(self.blind, ended - since), 3)}


def holds(trigger: Trigger, snap: Snapshot) -> bool:
    """Whether the snapshot shows the state of a state trigger (a task's or the flow run's), at
    the trigger's ``run_count`` or later."""
    if trigger.run_count is not None and snap.run_count < trigger.run_count:
        return False
    if trigger.flow_state is not None:
        return snap.flow_state == trigger.flow_state
    states = task_states(snap.tasks, trigger.task)
    if trigger.nth is not None:  # the nth run, oldest first (the snapshot's tasks are in that order)
        return len(states) >= trigger.nth and states[trigger.nth - 1] == trigger.state
    return trigger.state in states


def oldest_first(task_runs: list[dict]) -> list[dict]:
    """The API's task runs, oldest created first, whatever order the API listed them in: where a
    flow retry (or a replacement pod) ran a task again under the same name, the last of that name
    is the latest (the workloads' task run names are otherwise unique).  The polls, the history
    and so the checker and the Chaos Toolkit probes all pick a name's task run by this order."""
    return sorted(task_runs, key=lambda t: t.get("created") or "")


def task_runs(rows: list[dict], states_of: Callable[[str], list[State]]) -> list[TaskRun]:
    """The history's task runs from the API's rows, oldest first, each with its states."""
    return [TaskRun(id=t["id"], flow_run_id=t["flow_run_id"], name=t["name"], states=states_of(t["id"]),
                    run_count=t.get("run_count", 0)) for t in oldest_first(rows)]


def _tasks(rows: list[dict]) -> dict[str, str]:
    """Task run name -> state type, the latest task run of each name."""
    return {t["name"]: (t.get("state") or {}).get("type") for t in oldest_first(rows)}


def first_seen(trigger: Trigger, snap: Snapshot, seen_at: float | None) -> float | None:
    """When a delayed trigger's state was first seen, given this snapshot and the time kept so
    far (None for any other trigger: only a delayed one counts from its state)."""
    if trigger.delayed and seen_at is None and snap.flow_state is not None and holds(trigger, snap):
        return snap.at
    return seen_at


def fired(trigger: Trigger, snap: Snapshot, started_at: float, seen_at: float | None = None) -> bool:
    """Whether the trigger fires at this snapshot.  A delayed trigger needs ``seen_at``, when its
    state was first seen (``first_seen``, kept by the caller across polls)."""
    if trigger.delayed:
        return seen_at is not None and snap.at - seen_at >= trigger.after_seconds
    if trigger.after_seconds is not None:
        return snap.at - started_at >= trigger.after_seconds
    return holds(trigger, snap)


# A storm's poll waits this long for its answer.  Its server, with 50 flow runs starting on the
# same cores, answered in up to 29.9 s (measured: README): given up at the client's usual 5 s, a
# poll was sent again only to be given up again, and the harness saw nothing for up to 50 s.
# Longer than the server's own wait for a database connection (Prefect's pool_timeout, 30 s by
# default), so its answer, or its HTTP 500 for an exhausted pool, comes first.
STORM_POLL_TIMEOUT = 60.0


def snapshots(api: PrefectAPI, run_ids: list[str], with_tasks: bool) -> dict[str, Snapshot]:
    """One poll of several runs (a storm) in two requests; one run is ``snapshot``."""
    if len(run_ids) == 1:
        return {run_ids[0]: snapshot(api, run_ids[0], with_tasks)}
    snaps = {r: Snapshot(at=time.time()) for r in run_ids}
    try:
        rows, at = api.flow_runs(run_ids, timeout=STORM_POLL_TIMEOUT), time.time()
        for raw in rows:
            snaps[raw["id"]].at = at
            snaps[raw["id"]].flow_state = (raw.get("state") or {}).get("type")
            snaps[raw["id"]].run_count = raw.get("run_count") or 0
        if with_tasks:  # a storm's runs have no subflows: the workload is flat
            by_run: dict[str, list[dict]] = {}
            for t in api.task_runs(run_ids, timeout=STORM_POLL_TIMEOUT):
                by_run.setdefault(t["flow_run_id"], []).append(t)
            for run_id, task_runs in by_run.items():
                snaps[run_id].tasks = _tasks(task_runs)
    except APIError:
        for snap in snaps.values():
            snap.flow_state, snap.tasks, snap.run_count = None, {}, 0
    return snaps


def snapshot(api: PrefectAPI, run_id: str, with_tasks: bool) -> Snapshot:
    snap = Snapshot(at=time.time())
    try:
        raw = api.flow_run(run_id)
        snap.at = time.time()
        snap.flow_state, snap.run_count = (raw.get("state") or {}).get("type"), raw.get("run_count") or 0
        if with_tasks:
            runs = [run_id] + [r["id"] for r in api.subflow_runs([run_id])]
            snap.tasks = _tasks(api.task_runs(runs))
    except APIError:
        pass  # a down server is an observation too: the snapshot says nothing
    return snap


def _flow_run(api: PrefectAPI, raw: dict, role: str, names: dict[str, str]) -> FlowRun:
    return FlowRun(id=raw["id"], flow_name=names.get(raw["flow_id"], raw["flow_id"]), role=role,
                   states=api.flow_run_states(raw["id"]), run_count=raw.get("run_count", 0),
                   parent_id=raw.get("parent_task_run_id"))


def _by_id(api: PrefectAPI, ids: list[str]) -> list[dict]:
    """Runs in the order of ``ids`` (a storm's runs, read in one request)."""
    if not ids:
        return []
    found = {raw["id"]: raw for raw in api.flow_runs(ids)}
    return [found[i] for i in ids if i in found]


def collect(api: PrefectAPI, *, scenario: str, backend: str, started_at: float, bound: float,
            main_id: str, rerun_ids: list[str], faults: list[dict], ledger_path, retry_for: float = 60,
            more_main_ids: list[str] = (), traced: bool = False) -> History:
    """The scenario's whole history; retries while the API is unreachable (a restarting server).
    ``traced``: a flow of the user's own, whose ledger is the tracer's (it keeps none by hand)."""
    history = History(scenario=scenario, backend=backend, started_at=started_at, ended_at=time.time(),
                      bound_seconds=bound, faults=faults)
    history.ledger, torn = ledger.read(ledger_path)
    if torn:
        history.notes.append(f"{torn} torn ledger line(s) (a process killed mid-write)")
    trace, torn = ledger.read(Path(ledger_path).with_name(ledger.TRACE_FILE))
    # keyed by run name, as the harness's workloads key their ledger (a background workload's task
    # is '_work', its runs 'step-N'); a flow of your own is counted by task name, its ledger below
    history.traced = dict(sorted(Counter(line.get("task_run_name") or line.get("task")
                                         for line in trace if line.get("event") == "start").items()))
    if traced:
        history.ledger = trace
    if torn:
        history.notes.append(f"{torn} torn trace line(s) (a process killed mid-write)")
    deadline = time.monotonic() + retry_for
    while True:
        try:
            tops = [(api.flow_run(main_id), "main")] + [(raw, "main") for raw in _by_id(api, list(more_main_ids))]
            tops += [(api.flow_run(r), "rerun") for r in rerun_ids]
            subs, frontier = [], [raw["id"] for raw, _ in tops]
            while frontier:  # subflows of subflows too
                found = api.subflow_runs(frontier)
                subs += found
                frontier = [r["id"] for r in found]
            names = api.flow_names({raw["flow_id"] for raw, _ in tops} | {r["flow_id"] for r in subs})
            history.flow_runs = [_flow_run(api, raw, role, names) for raw, role in tops]
            history.flow_runs += [_flow_run(api, raw, "subflow", names) for raw in subs]
            history.task_runs = task_runs(api.task_runs([r.id for r in history.flow_runs]), api.task_run_states)
            return history
        except APIError as exc:
            if time.monotonic() > deadline or procs.STOPPING.is_set():
                history.notes.append(f"unknown: the API could not be read after {retry_for:g}s: {exc}")
                return history
            time.sleep(1)
