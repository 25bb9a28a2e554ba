"""Randomized fault schedules: a Hypothesis rule-based state machine against a real system.

Each example deploys the exploration workload (a fresh worker, deployment and fault proxy on the
local backend's real server), starts a flow run and, step by step, lets it advance to a task,
injects any fault of the catalogue the backend has, or heals what is open.  After every step the
invariants are checked on what the API and the ledger say:

- no flow run executes in two processes at once (the ledger's per-process spans);
- run_count never exceeds retries + 1 for a run that was not rescheduled;
- no completed task runs again in the same flow run (its result is persisted and cached);

and at teardown, once everything is healed: every run settles within the bound, or is reported
stuck, which fails the example.  Hypothesis shrinks a failing schedule; the shrunk schedule is
printed as a scenario YAML (the same faults at the same triggers, each as many seconds after its
trigger as it came) that ``python -m harness run --matrix FILE`` replays.  Seeded: the same seed
draws the same schedules.
"""

from __future__ import annotations

import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import yaml

from harness.backends import Deployed, System
from harness.model import faults
from harness.model.check import overlaps
from harness.model.history import TERMINAL, History
from harness.model.scenario import FaultSpec, Scenario
from harness.run import observe

STEPS, SLEEP, RETRIES = 3, 2.0, 1
SETTLE = 60.0  # seconds every run gets to settle once everything is healed
# the faults the exploration draws from: (kind, target, extra spec fields)
CATALOGUE: list[tuple[str, str, dict[str, Any]]] = [
    ("kill", "flow-run", {}),
    ("terminate", "flow-run", {"grace_seconds": 2}),
    ("freeze", "flow-run", {}),
    ("kill-worker", "worker", {}),
    ("freeze", "worker", {}),
    ("api-error", "api", {"status": 500}),
    ("api-error", "api", {"status": 503}),
    ("api-reset", "api", {"reset": "after", "fraction": 0.5}),
    ("api-down", "api", {}),
]
HEALS = {"freeze", "api-error", "api-reset", "api-down"}


def base_scenario(sid: str = "explore") -> dict[str, Any]:
    """The exploration's workload and config, as a matrix row without faults."""
    return {
        "id": sid, "title": "a schedule found by python -m harness explore",
        "backends": ["local"],
        "workload": {"flow": "pipeline", "parameters": {"steps": STEPS, "sleep": SLEEP}},
        "config": {"flow_retries": RETRIES, "retry_delay_seconds": 0, "cache_policy": "default"},
        "faults": [],
        # what the invariants say, as an expectation the replay checks
        "expect": {"final": sorted(TERMINAL), "run_count": list(range(RETRIES + 2)), "overlap": False,
                   "executions": {f"step-{i}": list(range(RETRIES + 2)) for i in range(1, STEPS + 1)},
                   "settle_within_seconds": SETTLE + 60},
    }


class ExplorationScenario(Scenario):
    @property
    def api_faults(self) -> bool:  # any fault may be drawn, API faults too: always deploy the proxy
        return True


@dataclass
class Step:
    """One injected fault of a schedule, with the trigger that preceded it."""

    kind: str
    target: str
    extra: dict[str, Any]
    task: int | None  # the step the run had reached (None: right after the run started)
    injected_at: float
    healed_at: float | None = None
    error: str | None = None  # the inject failed: it did nothing, so the replay leaves it out
    seen_at: float | None = None  # when its trigger (step-N, else the run) was seen RUNNING

    def as_spec(self, started: float) -> dict[str, Any]:
        """The step as a fault of the replay: at the trigger the exploration saw before it, and
        as long after that trigger as it came.  Counted from the run's creation instead, how fast
        a worker picks the run up would decide whether it lands before or after RUNNING."""
        if self.seen_at is None:  # the run was not seen RUNNING before this fault
            when: dict[str, Any] = {"after_seconds": round(max(0.0, self.injected_at - started), 1)}
        else:
            when = {"task": f"step-{self.task}", "state": "running"} if self.task else {"flow_state": "running"}
            when["after_seconds"] = round(max(0.0, self.injected_at - self.seen_at), 1)
        spec: dict[str, Any] = {"kind": self.kind, "target": self.target, "when": when, **self.extra}
        if self.healed_at is not None and self.kind in HEALS:
            spec["heal_after_seconds"] = max(1.0, round(self.healed_at - self.injected_at, 1))
        return spec


@dataclass
class Episode:
    """What one example did and saw: enough to check invariants and print a replay."""

    run_id: str | None = None
    started: float | None = None
    running_at: float | None = None  # when the run was seen RUNNING after its start
    reached: int | None = None
    reached_at: float | None = None  # when step-``reached`` was seen RUNNING
    steps: list[Step] = field(default_factory=list)
    open: list[tuple[Step, Any, faults.FaultRecord]] = field(default_factory=list)
    drawn: list[str] = field(default_factory=list)  # the rules drawn, in order: the seed's schedule
    drawn_open: list[tuple[str, str]] = field(default_factory=list)  # faults with a heal drawn since the last

    def replay(self, sid: str) -> str:
        row = base_scenario(sid)
        # a fault that could not be injected did nothing; replayed, it would fail again and leave
        # the verdict unknown instead of showing the misbehaviour
        row["faults"] = [s.as_spec(self.started or 0) for s in self.steps if s.error is None]
        # faults at the same trigger keep their order and their offsets from it
        return yaml.safe_dump([row], sort_keys=False)


def invariant_violations(history: History, rescheduled: bool) -> list[str]:
    """The invariants on what was seen so far (pure: tested on hand-written histories)."""
    why = []
    for o in overlaps(history):
        why.append(f"flow run {o['flow_run_id'][:8]} executed by two processes at once: {o['processes']}")
    for run in history.flow_runs:
        if run.run_count > RETRIES + 1 and not rescheduled:
            why.append(f"flow run {run.id[:8]}: run_count {run.run_count} > retries + 1 = {RETRIES + 1}")
    ended: set[tuple[str, str]] = set()
    for line in sorted(history.ledger, key=lambda l: l["time"]):
        key = (line.get("flow_run_id"), line["task"])
        if line["event"] == "end":
            ended.add(key)
        elif line["event"] == "start" and key in ended:
            why.append(f"task {line['task']} of flow run {str(key[0])[:8]} ran again after it completed "
                       "(its result is persisted and cached)")
    return why


def was_rescheduled(history: History) -> bool:
    return any(s.type == "SCHEDULED" and i > 0 for r in history.flow_runs for i, s in enumerate(r.states))


def say(text: str) -> None:
    print(f"[explore {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Live:
    """The machine's whole contact with the system under test: deploying, starting the run, looking
    at it, injecting and healing faults, reading its history, and time passing.  ``explore`` uses the
    real one; a unit test of the drawing scripts its own."""

    settle = SETTLE

    def __init__(self, system: System) -> None:
        self.system = system
        self.scenario = ExplorationScenario.model_validate(base_scenario())

    def deploy(self, instance: str) -> AbstractContextManager[Deployed]:
        return self.system.deploy(self.scenario, instance)

    def start(self, deployed: Deployed, instance: str) -> str:
        return self.system.api.create_flow_run(deployed.deployment_id, self.scenario.workload.parameters,
                                               ["chaos", instance])

    def snapshot(self, run_id: str, tasks: bool) -> observe.Snapshot:
        return observe.snapshot(self.system.api, run_id, with_tasks=tasks)

    def inject(self, spec: FaultSpec, deployed: Deployed, run_id: str) -> tuple[Any, faults.FaultRecord]:
        fault = self.system.fault(spec, deployed, run_id)
        record = faults.FaultRecord(spec.kind, spec.target)
        faults.inject(fault, record)
        return fault, record

    def heal(self, fault: Any, record: faults.FaultRecord) -> None:
        faults.heal(fault, record)

    def history(self, deployed: Deployed, run_id: str, started: float, retry_for: float) -> History | None:
        history = observe.collect(self.system.api, scenario="explore", backend=self.system.name,
                                  started_at=started, bound=self.settle, main_id=run_id, rerun_ids=[], faults=[],
                                  ledger_path=deployed.ledger, retry_for=retry_for)
        return None if history.main is None else history

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def make_machine(live: Live, on_failure: list[str]):
    """The state machine class, bound to one started system; ``on_failure`` collects replays.

    Which rules may run next depends only on what the schedule drew so far (a run was started, a
    fault with a heal was drawn), never on what the run did: Hypothesis draws the next rule among
    the ones whose preconditions hold, so a precondition that read the live run would make the same
    seed draw other schedules whenever the run went faster or slower.  A rule that finds the run
    already ended does nothing, and says so."""
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

    class FaultSchedule(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.episode = Episode()
            self.instance = f"explore-{int(time.time() * 1000) % 10**8}"
            self._deploy = live.deploy(self.instance)
            self.deployed: Deployed = self._deploy.__enter__()

        # -- rules ----------------------------------------------------------------------------
        @precondition(lambda self: self.episode.run_id is None)
        @rule()
        def start_run(self) -> None:
            ep = self.episode
            ep.drawn.append("start")
            ep.run_id = live.start(self.deployed, self.instance)
            ep.started = time.time()
            snap = self._until(lambda snap: snap.flow_state in {"RUNNING"} | TERMINAL, 40)
            if snap.flow_state == "RUNNING":
                ep.running_at = snap.at
            say(f"{self.instance}: run {ep.run_id[:8]} started ({snap.flow_state})")

        @precondition(lambda self: self.episode.run_id is not None)
        @rule(task=st.integers(1, STEPS))
        def advance_to(self, task: int) -> None:
            """Let the run go on until task step-N runs (or the run ends): the next fault's trigger."""
            self.episode.drawn.append(f"advance step-{task}")
            if self.episode.reached is not None and task <= self.episode.reached:
                return
            snap = self._until(lambda s: s.tasks.get(f"step-{task}") == "RUNNING" or s.terminal, 30, tasks=True)
            if snap.tasks.get(f"step-{task}") == "RUNNING":
                self.episode.reached, self.episode.reached_at = task, snap.at
                say(f"{self.instance}: advanced to step-{task}: run {snap.flow_state}, tasks {snap.tasks}")
            elif snap.terminal:
                say(f"{self.instance}: not advanced to step-{task}: the run has already ended {snap.flow_state}")
            else:
                say(f"{self.instance}: step-{task} not seen running within 30 s: run {snap.flow_state}, tasks {snap.tasks}")

        @precondition(lambda self: self.episode.run_id is not None)
        @rule(which=st.sampled_from(range(len(CATALOGUE))))
        def inject(self, which: int) -> None:
            kind, target, extra = CATALOGUE[which]
            ep = self.episode
            ep.drawn.append(f"inject {kind}->{target}")
            if (kind, target) in ep.drawn_open:
                return  # already open; drawing it again changes nothing
            if kind in HEALS:
                ep.drawn_open.append((kind, target))
            if self._terminal():
                say(f"{self.instance}: not injected: {kind} -> {target}: the run has already ended")
                return
            spec = FaultSpec.model_validate({"kind": kind, "target": target, "when": {"after_seconds": 0}, **extra})
            fault, record = live.inject(spec, self.deployed, ep.run_id)
            step = Step(kind, target, extra, ep.reached, record.injected_at or time.time(), error=record.error,
                        seen_at=ep.reached_at if ep.reached else ep.running_at)
            ep.steps.append(step)
            say(f"{self.instance}: inject {kind} -> {target} {extra or ''}{' FAILED ' + record.error if record.error else ''}")
            if kind in HEALS and not record.error:
                ep.open.append((step, fault, record))

        @rule(seconds=st.sampled_from([1, 3]))
        def pause(self, seconds: int) -> None:
            """Time passes: a fault window stays open, a run goes on (always possible)."""
            self.episode.drawn.append(f"pause {seconds}s")
            live.sleep(seconds)

        @precondition(lambda self: bool(self.episode.drawn_open))
        @rule()
        def heal(self) -> None:
            self.episode.drawn.append("heal")
            if self.episode.open:
                say(f"{self.instance}: heal {[s.kind for s, _, _ in self.episode.open]}")
            self._heal_all()

        # -- invariants ----------------------------------------------------------------------
        @invariant()
        def safe(self) -> None:
            history = self._history()
            if history is None:
                return
            why = invariant_violations(history, was_rescheduled(history))
            if why:
                self._fail(why)

        def teardown(self) -> None:
            try:
                self._heal_all()
                if self.episode.run_id is not None:
                    snap = self._until(lambda s: s.terminal, live.settle)
                    history = self._history(retry_for=30)
                    why = [] if history is None else invariant_violations(history, was_rescheduled(history))
                    say(f"{self.instance}: teardown: run {snap.flow_state}")
                    if not snap.terminal:
                        why.append(f"stuck: flow run {self.episode.run_id[:8]} still {snap.flow_state} "
                                   f"{live.settle:g}s after every fault was healed")
                    if why:
                        self._fail(why)
            finally:
                self._deploy.__exit__(None, None, None)

        # -- helpers -------------------------------------------------------------------------
        def _fail(self, why: list[str]) -> None:
            text = "; ".join(why)
            notes = "".join(f"# note: {s.kind}->{s.target}: {s.error} (left out of the replay: it did nothing)\n"
                            for s in self.episode.steps if s.error)  # faults that could not be injected
            on_failure.append(self.episode.replay("explore-found") + f"# invariant broken: {text}\n" + notes)
            raise AssertionError(text)

        def _terminal(self) -> bool:
            return live.snapshot(self.episode.run_id, tasks=False).terminal

        def _until(self, done, timeout: float, tasks: bool = False) -> observe.Snapshot:
            end = time.time() + timeout
            while True:
                snap = live.snapshot(self.episode.run_id, tasks)
                if snap.flow_state is not None and done(snap) or time.time() > end:
                    return snap
                live.sleep(0.25)

        def _heal_all(self) -> None:
            for step, fault, record in self.episode.open:
                live.heal(fault, record)
                step.healed_at = record.healed_at or time.time()
            self.episode.open = []
            self.episode.drawn_open = []

        def _history(self, retry_for: float = 0) -> History | None:
            ep = self.episode
            if ep.run_id is None:
                return None
            return live.history(self.deployed, ep.run_id, ep.started, retry_for)

    return FaultSchedule


def explore(system: System, seed: int, examples: int, steps: int) -> tuple[str | None, list[str]]:
    """Run the exploration: (None, []) when every invariant held, else (what Hypothesis said, the
    replay YAML of each failing schedule it ran, the last being the shrunk one)."""
    return run_machine(Live(system), seed, examples, steps)


def run_machine(live: Live, seed: int, examples: int, steps: int,
                schedules: list[list[str]] | None = None) -> tuple[str | None, list[str]]:
    """``explore`` on any ``Live``; ``schedules``, if given, receives what each example drew."""
    from hypothesis import HealthCheck, Phase
    from hypothesis import seed as seed_with
    from hypothesis import settings
    from hypothesis.stateful import get_state_machine_test

    found: list[str] = []
    machine = make_machine(live, found)
    if schedules is not None:
        class Recorded(machine):  # type: ignore[misc, valid-type]
            def teardown(self) -> None:
                schedules.append(self.episode.drawn)
                super().teardown()
        machine = Recorded
    config = settings(max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink],
                      print_blob=False)
    test = seed_with(seed)(get_state_machine_test(machine, settings=config))
    try:
        test()
    except AssertionError as exc:
        return str(exc).splitlines()[0], found
    except Exception as exc:  # Hypothesis' Flaky: the failure did not happen again on replay
        if not found:
            raise
        return f"{type(exc).__name__}: the failure did not reproduce on every replay ({exc})".splitlines()[0], found
    return None, found
