"""One scenario, end to end.

``run_scenario`` is the whole pipeline (the matrix was loaded and validated before it is called):
deploy the workload with the scenario's config (``prepare``) -> start a flow run -> wait for each fault's
trigger -> inject -> heal when due -> wait until the run is terminal, every fault healed and a
quiet period passed, or the bound -> follow-ups (rerun) -> collect the history -> check ->
write the journal line (``execute``) -> clean up what this scenario created (``Prepared.close``:
``System.deploy`` exits).
"""

from __future__ import annotations

import random
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from harness import __version__
from harness.backends import Deployed, System
from harness.model import faults
from harness.model.check import check
from harness.model.journal import Journal
from harness.model.scenario import FaultSpec, Scenario
from harness.run import observe, progress
from harness.sut import caselogs, procs

POLL = 0.25  # while a trigger is awaited or a heal is near: faults land on time
# once every fault has fired and no heal is near, the run is only awaited: its states carry the
# server's own timestamps (time to detect and settle are read from them), so polling faster only
# costs the server CPU (each poll is one to three requests) and moves the end of the watch by less
# than this
IDLE_POLL = 1.0


def poll_interval(armed: list["Armed"], now: float) -> float:
    """How long to wait before the next poll: ``POLL`` while a fault waits for its trigger, up to
    ``IDLE_POLL`` otherwise, never past an open fault's heal time."""
    if any(a.fault is None and not a.skipped for a in armed):
        return POLL
    heals = [a.heal_at - now for a in armed if a.open]
    return max(POLL, min([IDLE_POLL, *heals]))


@dataclass
class Armed:
    spec: FaultSpec
    record: faults.FaultRecord
    run_id: str = ""  # the flow run this fault waits on and hits
    fault: Any = None
    heal_at: float | None = None
    skipped: bool = False  # a storm's run settled before this fault's trigger: it never will fire
    seen_at: float | None = None  # when its trigger's state was first seen (a delayed trigger counts from it)

    @property
    def open(self) -> bool:
        """Injected, due to heal, not healed yet."""
        return self.fault is not None and self.heal_at is not None and self.record.healed_at is None


def arm(scenario: Scenario, run_ids: list[str]) -> list[Armed]:
    """One armed fault per (fault, run it hits).  A fault with a ``share`` hits that share of a
    storm's runs, chosen with a seed from the scenario id (the same runs' positions every time)."""
    armed = []
    for spec in scenario.faults:
        hit = run_ids
        if spec.target in faults.RUN_SHARED_TARGETS:  # hit once, on the first run's trigger
            hit = run_ids[:1]
        elif spec.share is not None:
            positions = random.Random(zlib.crc32(f"{scenario.id}/{spec.kind}".encode())).sample(
                range(len(run_ids)), max(1, round(spec.share * len(run_ids))))
            hit = [run_ids[i] for i in sorted(positions)]
        for run_id in hit:
            record = faults.FaultRecord(spec.kind, spec.target, detail={
                "trigger": spec.when.describe(), **({"task": spec.when.task} if spec.when.task is not None else {})})
            if len(run_ids) > 1:
                record.detail["flow_run_id"] = run_id
            armed.append(Armed(spec, record, run_id))
    return armed


def _watch(system: System, deployed: Deployed, scenario: Scenario, run_ids: list[str], armed: list[Armed],
           bound: float, polls: observe.Polls | None = None) -> tuple[float | None, float | None]:
    """Drive faults while the runs go; return once they settled (or at the bound), with the time
    the harness first saw the first run terminal (the benchmark's observation lag) and when it
    began to watch the settled runs for a late change (the scenario's quiet period; None if they
    never settled).  A heal is the harness's own act: the watch lasts at least the quiet period
    past every heal, bound or not, so a run that starts late (a loaded machine) is still seen
    after its process resumes, not judged by the state it had when the harness looked away.
    ``polls``, if given, keeps the account of how the polls went."""
    started = time.time()
    seen_terminal = None
    deadline = started + bound
    needs_tasks = any(a.spec.when.task is not None for a in armed)
    quiet_until = None
    while True:
        if procs.STOPPING.is_set():
            raise procs.Stopped(f"the session stopped while {scenario.id} ran")
        sent = time.time()
        snaps = observe.snapshots(system.api, run_ids, needs_tasks and any(a.fault is None for a in armed))
        if polls is not None:
            polls.add(sent, time.time(), any(s.flow_state is not None for s in snaps.values()))
        first = snaps[run_ids[0]]
        if first.terminal and seen_terminal is None:  # taken before faults fire: a poll that fires
            seen_terminal = first.at  # one goes round again at once, and what it saw still counts
        for a in armed:  # a delayed trigger's clock starts when its state is seen, turn or not
            if a.fault is None and not a.skipped:
                a.seen_at = observe.first_seen(a.spec.when, snaps[a.run_id], a.seen_at)
        # per run, its faults fire in their order: the next one waits until the previous fired
        fired_any = False
        for run_id in run_ids:
            waiting = next((a for a in armed if a.fault is None and not a.skipped and a.run_id == run_id), None)
            snap = snaps[run_id]
            fires = waiting is not None and observe.fired(waiting.spec.when, snap, started, waiting.seen_at)
            if waiting is not None and len(run_ids) > 1 and snap.terminal and not fires:
                waiting.skipped = True  # the storm's account says so; the run is judged as not faulted
                waiting.record.detail["not_fired"] = f"its run settled ({snap.flow_state}) before the trigger"
                continue
            if fires and snap.flow_state is not None:
                waiting.fault = system.fault(waiting.spec, deployed, run_id)
                faults.inject(waiting.fault, waiting.record)
                if len(run_ids) > 1 and (waiting.record.error or "").startswith("inject failed: LookupError"):
                    # a storm's poll saw the trigger late, and the run's process had already ended
                    waiting.record.detail["not_fired"] = f"no live target when its trigger was seen: {waiting.record.error}"
                    waiting.record.error, waiting.record.injected_at, waiting.skipped = None, None, True
                    continue
                _told("fault", scenario, system, waiting.record, started)
                if waiting.spec.heal_after_seconds is not None and waiting.record.error is None:
                    waiting.heal_at = time.time() + waiting.spec.heal_after_seconds
                    deadline = max(deadline, waiting.heal_at)  # and the quiet period past it, once healed
                fired_any = True
        if fired_any:
            continue
        now = time.time()
        for a in armed:
            if a.open and now >= a.heal_at:
                began = time.time()
                faults.heal(a.fault, a.record)
                _told("heal", scenario, system, a.record, started)
                # The time a heal takes is the harness's own (a server or database it starts
                # again: 12 s alone, 51 s with 2 cases at once on 2 cores): the run's bound does
                # not pay for it, or a loaded machine ends the watch before the run could settle.
                deadline += time.time() - began
                deadline = max(deadline, time.time() + scenario.quiet_seconds)
        if all(s.terminal for s in snaps.values()) and not any(a.open for a in armed):
            quiet_until = quiet_until or now + scenario.quiet_seconds
            if now >= quiet_until:
                return seen_terminal, quiet_until - scenario.quiet_seconds
        elif all(s.flow_state is not None for s in snaps.values()):
            quiet_until = None
        if now >= deadline:
            return seen_terminal, None if quiet_until is None else quiet_until - scenario.quiet_seconds
        ends = [deadline] + ([quiet_until] if quiet_until is not None else [])
        time.sleep(max(0.0, min(poll_interval(armed, now), min(ends) - now)))


def _told(kind: str, scenario: Scenario, system: System, record: Any, started: float) -> None:
    """A fault's inject or heal, on the console (``harness.run.progress``)."""
    at = (record.injected_at if kind == "fault" else record.healed_at) or time.time()
    progress.emit(kind, case=f"{scenario.id}@{system.name}", kind=record.kind, target=record.target,
                  at=at - started, error=record.error)


def add_infrastructure(history: Any, system: System, deployed: Deployed) -> None:
    """The backend's own account of what ran (docker: exit codes and OOMKilled; local: task
    workers), where it keeps one; its failure is a note, never a lost history."""
    account = getattr(system, "infrastructure", None)
    if account is not None:
        try:
            history.infrastructure = account(deployed)
        except Exception as exc:
            history.notes.append(f"infrastructure account unavailable: {type(exc).__name__}: {exc}")


def _heal_all(armed: list[Armed]) -> None:
    """Faults whose heal time is past the bound still heal: a server must come back up."""
    for a in armed:
        if a.open:
            faults.heal(a.fault, a.record)


@dataclass
class Prepared:
    """A scenario deployed and ready for its flow run: ``System.deploy`` entered, not exited.

    The scheduler prepares the next case while the current one runs, and cleans a finished case
    up while the next one runs; ``run_scenario`` does all three in a row."""

    scenario: Scenario
    system: System
    instance: str
    began: float
    ready: float
    deployed: Deployed
    _deployment: Any
    closed: bool = False
    log_marks: dict[str, Any] = field(default_factory=dict)  # where the shared logs stood (caselogs.mark)

    def close(self) -> None:
        """Exit the deployment: faults closed, worker stopped, leftovers ended, deployment removed."""
        if not self.closed:
            self.closed = True
            self._deployment.__exit__(None, None, None)


class Runner:
    """``run_scenario`` in the three steps the scheduler runs apart (``harness.run.schedule``)."""

    def __init__(self, journal: Journal | None = None, prefect_version: str | None = None):
        self.journal, self.prefect_version = journal, prefect_version

    def prepare(self, scenario: Scenario, system: System) -> Prepared:
        return prepare(scenario, system)

    def execute(self, prepared: Prepared, turn: float) -> dict[str, Any]:
        return execute(prepared, self.journal, self.prefect_version, turn)

    def cleanup(self, prepared: Prepared) -> None:
        prepared.close()


def prepare(scenario: Scenario, system: System) -> Prepared:
    """Deploy ``scenario`` on ``system``: its worker, deployment and everything else it needs."""
    instance = f"{scenario.id}-{uuid.uuid4().hex[:6]}"
    began = time.time()
    try:
        marks = caselogs.mark(caselogs.sources(system))
    except Exception:  # a log it cannot look at is no reason not to run
        marks = {"at": began}
    deployment = system.deploy(scenario, instance)
    deployed = deployment.__enter__()
    return Prepared(scenario, system, instance, began, time.time(), deployed, deployment, log_marks=marks)


def keep_logs(prepared: Prepared, journal: Journal | None) -> dict[str, Any] | None:
    """Copy the case's logs beside the journal (a case that did not pass; ``harness.sut.caselogs``)."""
    if journal is None:
        return None
    try:
        found = caselogs.sources(prepared.system, prepared.deployed)
    except Exception as exc:
        found, problem = {}, f"its log sources could not be listed ({type(exc).__name__}: {exc})"
    else:
        problem = None
    kept = caselogs.keep_for_journal(journal.path, prepared.instance, found, prepared.log_marks)
    if problem:
        kept["problems"].insert(0, problem)
    return kept


def run_scenario(scenario: Scenario, system: System, journal: Journal | None = None,
                 prefect_version: str | None = None) -> dict[str, Any]:
    """Run one scenario on one started system; return (and journal) its result line."""
    prepared = prepare(scenario, system)
    try:
        return execute(prepared, journal, prefect_version)
    finally:
        prepared.close()


def execute(prepared: Prepared, journal: Journal | None = None, prefect_version: str | None = None,
            turn: float | None = None) -> dict[str, Any]:
    """Run a prepared scenario: flow run, faults, follow-ups, history, verdict, journal line.

    ``turn`` is when the case's turn began (it may have been prepared long before); the result's
    ``timing`` says where the case's time went.  A case that does not pass, or whose run raises,
    keeps its logs beside the journal first (named in its line, or in the exception's notes)."""
    try:
        return _execute(prepared, journal, prefect_version, turn)
    except procs.Stopped:
        raise  # the session is stopping: nothing to explain
    except Exception as exc:
        kept = keep_logs(prepared, journal)
        if kept is not None:
            exc.add_note(f"the case's logs are kept in {journal.path.parent / kept['dir']}")
        raise


STORM_CREATORS = 10  # a storm's runs are created this many at a time


def _create_runs(system: System, deployed: Deployed, runs: int, params: dict[str, Any], tags: list[str]) -> list[str]:
    """The scenario's flow runs, in the order they were asked for; a storm's ``STORM_CREATORS`` at
    a time.  Created one after another, each waiting for a server already busy starting the first
    runs, the last of 50 came up to 151 s after the first (measured: README): no burst, and
    nothing was watched until the last one existed."""
    if runs == 1:
        return [system.api.create_flow_run(deployed.deployment_id, params, tags)]

    def create(_: int) -> str:  # a storm's server is busy starting the first runs: be patient
        return system.api.create_flow_run(deployed.deployment_id, params, tags, retry_for=180.0, timeout=30.0)

    with ThreadPoolExecutor(max_workers=min(runs, STORM_CREATORS), thread_name_prefix="create-run") as pool:
        return list(pool.map(create, range(runs)))


def _execute(prepared: Prepared, journal: Journal | None, prefect_version: str | None,
             turn: float | None) -> dict[str, Any]:
    scenario, system, deployed, instance = prepared.scenario, prepared.system, prepared.deployed, prepared.instance
    backend = system.name
    expect = scenario.expect.for_backend(backend, prefect_version)
    params, tags = scenario.workload.parameters_for(deployed.ledger.parent), ["chaos", instance]
    turn = prepared.began if turn is None else turn
    progress.emit("start", case=f"{scenario.id}@{backend}", bound=expect.settle_within_seconds)
    started = time.time()
    run_ids = _create_runs(system, deployed, scenario.workload.runs, params, tags)
    created = time.time()
    run_id = run_ids[0]
    armed = arm(scenario, run_ids)
    polls = observe.Polls(started=started)  # blind while its runs are created too (a storm's 50)
    try:
        seen_terminal, quiet_from = _watch(system, deployed, scenario, run_ids, armed, expect.settle_within_seconds,
                                           polls)
        quiet_to = polled = time.time()
    finally:
        _heal_all(armed)
    for a in armed:
        if a.fault is not None:
            a.record.detail.update(a.fault.close())
    watched = time.time()
    reruns = []
    for follow in scenario.then:  # only 'rerun' exists: a new run, same parameters
        reruns.append(system.api.create_flow_run(deployed.deployment_id, params, tags + ["rerun"]))
        quiet_from = _watch(system, deployed, scenario, reruns[-1:], [], expect.settle_within_seconds)[1]
        quiet_to = time.time()
    followed = time.time()
    # the last quiet period, the one after everything the scenario waits for (an earlier one, before
    # a rerun, lies inside the scenario's own time)
    quiet = (quiet_to - quiet_from) if quiet_from is not None else 0.0
    history = observe.collect(
        system.api, scenario=scenario.id, backend=backend, started_at=started,
        bound=expect.settle_within_seconds, main_id=run_id, rerun_ids=reruns, more_main_ids=run_ids[1:],
        faults=[a.record.as_dict() for a in armed], ledger_path=deployed.ledger, traced=scenario.workload.own)
    history.notes += deployed.notes
    add_infrastructure(history, system, deployed)
    verdict = check(expect, history, scenario)
    # where the case's time went: deploying (before its turn, if it was prepared ahead), waiting
    # for that deployment in its turn, watching (its quiet periods apart), follow-ups, collecting.
    # Cleanup follows the journal line (the scheduler does it while the next case runs).
    timing = {"turn_started_at": round(turn, 3), "deploy": round(prepared.ready - prepared.began, 3),
              "create": round(created - started, 3),  # creating the flow runs (a storm's 50: all of them)
              "deploy_waited": round(max(0.0, prepared.ready - turn), 3),
              "prepared_ahead": prepared.ready <= turn, "watch": round(watched - started, 3),
              "quiet": round(quiet, 3), "quiet_from": quiet_from, "follow_ups": round(followed - watched, 3),
              "collect": round(time.time() - followed, 3), "terminal_seen_at": seen_terminal,
              "polls": polls.as_dict(polled)}
    entry = {
        "scenario": scenario.id, "title": scenario.title, "backend": backend, "instance": instance,
        "prefect_version": prefect_version, "harness_version": __version__,
        "database": getattr(system, "database_kind", None),
        "started_at": started, "finished_at": time.time(),
        "claim": scenario.claim.model_dump() if scenario.claim else None,
        "expectation": expect.model_dump(), "then": [f.model_dump() for f in scenario.then],
        "verdict": verdict.to_dict(), "history": history.to_dict(), "timing": timing,
    }
    kept = keep_logs(prepared, journal) if verdict.outcome != "pass" else None  # before cleanup deletes them
    if kept is not None:
        entry["logs"] = kept
    line = None
    if journal is not None:  # before cleanup: a failing cleanup cannot lose a finished result
        line = journal.write(entry)
    progress.emit("end", case=f"{scenario.id}@{backend}", entry=entry, line=line)
    return entry
