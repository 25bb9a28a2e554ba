"""The scheduler: cases concurrently, longest first, shared-target faults alone or on their own system.

The session and the case runner here are stand-ins that record what the scheduler did with them:
the scheduler is plumbing, and what it runs is tested for real by the chaos matrix."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest

from harness.backends import Unavailable
from harness.model.scenario import Scenario
from harness.run.schedule import ExclusiveLock, Scheduler, plan, shares_target
from harness.sut import procs


def scenario(sid: str, settle: float = 10, faults: list | None = None, server_env: dict | None = None,
             runs: int = 1) -> Scenario:
    return Scenario.model_validate({
        "id": sid, "title": sid, "backends": ["local", "docker"] + ([] if server_env else ["kind"]),
        "workload": {"flow": "pipeline", "runs": runs}, "faults": faults or [], "server": {"env": server_env or {}},
        "expect": {"final": "COMPLETED", "settle_within_seconds": settle}})


SERVER_FAULT = [{"kind": "restart-server", "when": {"after_seconds": 1}, "heal_after_seconds": 1}]


class Session:
    def __init__(self, unavailable: set[str] = frozenset()):
        self.unavailable, self.private = unavailable, []

    def system(self, backend, database=None):
        if backend in self.unavailable:
            raise Unavailable(f"no {backend} here")
        return f"shared-{backend}"

    @contextmanager
    def private_system(self, backend, tag, database=None, server_env=None):
        self.private.append(tag)
        self.server_env = server_env
        yield f"private-{tag}"


class Recorder:
    """A case runner that sleeps and records who ran when, on which system."""

    def __init__(self, seconds: float = 0.3):
        self.seconds, self.lock, self.running, self.peak, self.spans = seconds, threading.Lock(), 0, 0, {}

    def __call__(self, scenario, system):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        start = time.monotonic()
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
        self.spans[scenario.id] = (start, time.monotonic(), system)
        return {"scenario": scenario.id, "system": system}


def test_plan_starts_the_longest_bound_first():
    cases = [(scenario("a", 10), "local"), (scenario("b", 300), "local"), (scenario("c", 60), "local")]
    assert [s.id for s, _ in plan(cases)] == ["b", "c", "a"]


def test_plan_keeps_storms_apart_where_other_cases_allow():
    cases = [(scenario(f"storm{i}", 400 - i, runs=5), "local") for i in range(3)] + \
        [(scenario(f"c{i}", 100 - i), "local") for i in range(3)]
    assert [s.id for s, _ in plan(cases)] == ["storm0", "c0", "c1", "storm1", "c2", "storm2"]
    assert [s.id for s, _ in plan(cases, apart=1)] == ["storm0", "c0", "storm1", "c1", "storm2", "c2"]
    only = [(scenario(f"storm{i}", 10, runs=5), "local") for i in range(2)]
    assert [s.id for s, _ in plan(only)] == ["storm0", "storm1"]  # nothing to put between them


def test_storms_never_run_at_once_while_other_cases_do():
    runner = Recorder(0.3)
    sched = Scheduler(Session(), runner, 3)
    cases = [(scenario(f"storm{i}", runs=5), "local") for i in range(2)] + [(scenario("a"), "local")]
    sched.planned = cases
    for case in cases:
        sched.result(case)
    sched.close()
    (s0, e0, _), (s1, e1, _), (sa, ea, _) = (runner.spans[k] for k in ("storm0", "storm1", "a"))
    assert e0 <= s1 or e1 <= s0  # one storm after the other
    assert sa < max(e0, e1) and min(s0, s1) < ea  # the other case beside them


def test_shares_target():
    assert shares_target(scenario("s", faults=SERVER_FAULT))
    assert not shares_target(scenario("k", faults=[{"kind": "kill", "when": {"after_seconds": 1}}]))


def test_limit_one_runs_each_case_when_asked_on_the_shared_system():
    runner = Recorder(0.01)
    sched = Scheduler(Session(), runner, 1)
    assert sched.result((scenario("a"), "local")) == {"scenario": "a", "system": "shared-local"}
    assert runner.peak == 1 and sched.futures == {}


def test_concurrent_cases_overlap_up_to_the_limit():
    runner = Recorder(0.3)
    sched = Scheduler(Session(), runner, 3)
    cases = [(scenario(f"s{i}"), "local") for i in range(6)]
    sched.planned = cases
    start = time.monotonic()
    results = [sched.result(c) for c in cases]
    procs.STOPPING.clear()
    sched.close()
    # closing idle stops no one: the event is the process's, and the pytest session's scheduler
    # may still be running cases beside this one (CI's xdist worker ran both)
    assert not procs.STOPPING.is_set()
    assert [r["scenario"] for r in results] == [f"s{i}" for i in range(6)]
    assert runner.peak == 3
    assert time.monotonic() - start < 6 * 0.3  # not one after another


def test_a_server_fault_case_gets_a_private_system_on_local():
    session, runner = Session(), Recorder(0.05)
    sched = Scheduler(session, runner, 4)
    cases = [(scenario("restart", faults=SERVER_FAULT), "local"), (scenario("plain"), "local")]
    sched.planned = cases
    assert sched.result(cases[0])["system"] == "private-restart"
    assert sched.result(cases[1])["system"] == "shared-local"
    assert session.private == ["restart"]
    sched.close()


POOL = {"PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "1"}


@pytest.mark.parametrize("limit", [1, 3])
def test_a_case_with_server_settings_gets_its_own_system_with_them(limit):
    session, runner = Session(), Recorder(0.05)
    cases = [(scenario("plain"), "local"), (scenario("pool", server_env=POOL), "docker"), (scenario("after"), "local")]
    results, _, failed = run_every(session, runner, cases, limit)
    assert failed == {}
    assert [r["system"] for r in results] == ["shared-local", "private-pool", "shared-local"]
    assert session.private == ["pool"] and session.server_env == POOL


def test_nothing_is_deployed_ahead_for_a_case_with_a_server_of_its_own():
    runner = Staged(0.1)
    cases = [(scenario("a"), "local"), (scenario("pool", server_env=POOL), "local"), (scenario("c"), "local")]
    results, _, failed = run_every(Session(), runner, cases, ahead=2)
    assert failed == {} and runner.live == set()
    assert results[1]["system"] == "private-pool"
    # deployed on its own system in its turn, never on the shared one while a ran
    assert runner.index("prepare", "pool") > runner.index("executed", "a")


def test_a_server_fault_case_runs_alone_where_no_private_system_can_start():
    runner = Recorder(0.3)
    sched = Scheduler(Session(), runner, 4)
    cases = [(scenario(f"p{i}", 20), "kind") for i in range(3)] + [(scenario("restart", 10, SERVER_FAULT), "kind")]
    sched.planned = cases
    for c in cases:
        sched.result(c)
    sched.close()
    r0, r1, _ = runner.spans["restart"]
    for sid in ("p0", "p1", "p2"):
        s0, s1, _ = runner.spans[sid]
        assert s1 <= r0 or s0 >= r1, f"{sid} overlapped the exclusive case"
    assert runner.peak == 3


def test_unavailable_backend_raises_from_result():
    sched = Scheduler(Session(unavailable={"docker"}), Recorder(0.01), 2)
    case = (scenario("x"), "docker")
    sched.planned = [case]
    with pytest.raises(Unavailable, match="no docker here"):
        sched.result(case)
    sched.close()


def test_close_drops_waiting_cases_and_stops_waits():
    procs.STOPPING.clear()
    runner = Recorder(0.5)
    sched = Scheduler(Session(), runner, 1 + 1)
    cases = [(scenario(f"s{i}"), "local") for i in range(6)]
    sched.planned = cases
    sched._submit(cases[0])
    for c in cases:
        sched._submit(c)
    time.sleep(0.1)
    sched.close()
    assert procs.STOPPING.is_set()
    assert len(runner.spans) < 6  # the waiting ones never ran
    with pytest.raises(procs.Stopped):
        procs.wait_for(lambda: False, 5, 0.1, "anything")
    procs.STOPPING.clear()


def test_exclusive_lock_waits_for_every_shared_holder_and_holds_off_new_ones():
    lock, order, release = ExclusiveLock(), [], threading.Event()

    def hold(kind: str) -> None:
        with getattr(lock, kind)():
            order.append(kind)
            release.wait(2)

    with lock.shared():
        x = threading.Thread(target=hold, args=("exclusive",), daemon=True)
        x.start()
        time.sleep(0.1)
        assert order == []  # a shared holder is still there
    x_started = time.monotonic()
    while order != ["exclusive"] and time.monotonic() - x_started < 2:
        time.sleep(0.01)
    s = threading.Thread(target=hold, args=("shared",), daemon=True)
    s.start()
    time.sleep(0.1)
    assert order == ["exclusive"]  # the new shared holder waits for the exclusive one
    release.set()
    x.join(2)
    s.join(2)
    assert order == ["exclusive", "shared"]


def test_plan_puts_cases_that_run_alone_last():
    cases = [(scenario("restart", 500, SERVER_FAULT), "kind"), (scenario("a", 10), "kind"),
             (scenario("restart-local", 500, SERVER_FAULT), "docker")]
    assert [s.id for s, _ in plan(cases)] == ["restart-local", "a", "restart"]


class Staged:
    """A runner in three steps that records when each happened and in which thread."""

    def __init__(self, seconds: float = 0.2, fail_prepare: str = "", fail_cleanup: str = ""):
        self.seconds, self.fail_prepare, self.fail_cleanup = seconds, fail_prepare, fail_cleanup
        self.events: list[tuple[str, str, str]] = []  # (step, scenario, thread)
        self.lock = threading.Lock()
        self.live: set[str] = set()  # prepared and not cleaned up

    def _note(self, step: str, sid: str) -> None:
        with self.lock:
            self.events.append((step, sid, threading.current_thread().name))

    def prepare(self, scenario, system):
        self._note("prepare", scenario.id)
        time.sleep(self.seconds / 2)
        if scenario.id == self.fail_prepare:
            raise RuntimeError(f"worker of {scenario.id} exited")
        self.live.add(scenario.id)
        return scenario.id, system

    def execute(self, prepared, turn):
        self._note("execute", prepared[0])
        time.sleep(self.seconds)
        self._note("executed", prepared[0])
        return {"scenario": prepared[0], "system": prepared[1], "turn": turn}

    def cleanup(self, prepared):
        if prepared[0] not in self.live:
            return  # idempotent, as Prepared.close is
        self._note("cleanup", prepared[0])
        time.sleep(self.seconds / 2)
        self.live.discard(prepared[0])
        if prepared[0] == self.fail_cleanup:
            raise OSError("worker would not stop")

    def steps(self, sid: str) -> list[str]:
        return [step for step, s, _ in self.events if s == sid]

    def index(self, step: str, sid: str) -> int:
        return next(i for i, (st, s, _) in enumerate(self.events) if (st, s) == (step, sid))

    def thread(self, step: str, sid: str) -> str:
        return self.events[self.index(step, sid)][2]


def run_every(session, runner, cases, limit=1, ahead=1):
    """Ask for every case in order on a new scheduler, then close it: (results, scheduler, what
    close() returned)."""
    sched = Scheduler(session, runner, limit, ahead)
    sched.planned = cases
    results = [sched.result(case) for case in cases]
    return results, sched, sched.close()


def test_the_next_case_is_deployed_while_one_runs_and_cleaned_up_after():
    runner = Staged()
    results, sched, failed = run_every(Session(), runner, [(scenario(x), "local") for x in "abc"])
    assert [r["scenario"] for r in results] == ["a", "b", "c"]
    assert failed == {}
    assert runner.live == set()  # every deployment was cleaned up
    for sid in "abc":
        assert runner.steps(sid) == ["prepare", "execute", "executed", "cleanup"]
    # b was deployed in the background while a ran, and a cleaned up in the background after it
    assert runner.index("prepare", "b") < runner.index("executed", "a")
    assert runner.thread("prepare", "b").startswith("chaos-prepare")
    assert runner.thread("cleanup", "a").startswith("chaos-cleanup")
    assert set(sched.cleanup_seconds) == {(x, "local") for x in "abc"}


def test_nothing_waits_deployed_next_to_a_case_that_faults_the_server():
    runner = Staged(0.1)
    cases = [(scenario("a"), "local"), (scenario("srv", faults=SERVER_FAULT), "local"), (scenario("c"), "local")]
    assert run_every(Session(), runner, cases, ahead=2)[2] == {} and runner.live == set()
    # the server case is next: neither it nor anything after it was deployed during a
    assert runner.index("prepare", "srv") > runner.index("executed", "a")
    assert runner.index("prepare", "c") > runner.index("executed", "srv")  # nor during srv


def test_close_cleans_up_what_was_deployed_but_never_ran():
    runner = Staged(0.1)
    sched = Scheduler(Session(), runner, 1, ahead=1)
    sched.planned = [(scenario("a"), "local"), (scenario("b"), "local")]
    sched.result(sched.planned[0])  # b is deployed ahead; its test is then deselected or interrupted
    assert sched.close() == {}
    assert runner.steps("b") == ["prepare", "cleanup"] and runner.live == set()


def test_a_failed_deployment_is_the_case_error_and_a_failed_cleanup_is_reported():
    runner = Staged(0.1, fail_prepare="b", fail_cleanup="a")
    sched = Scheduler(Session(), runner, 1, ahead=1)
    sched.planned = [(scenario("a"), "local"), (scenario("b"), "local")]
    assert sched.result(sched.planned[0])["scenario"] == "a"  # its result stands
    with pytest.raises(RuntimeError, match="worker of b exited"):
        sched.result(sched.planned[1])
    assert sched.close() == {("a", "local"): "OSError: worker would not stop"}


def test_ahead_zero_deploys_each_case_in_its_turn():
    runner = Staged(0.1)
    run_every(Session(), runner, [(scenario("a"), "local"), (scenario("b"), "local")], ahead=0)
    assert runner.index("prepare", "b") > runner.index("executed", "a")
    assert all(t == threading.current_thread().name for st, _, t in runner.events if st == "prepare")


def test_concurrent_cases_take_deployments_prepared_ahead():
    runner = Staged(0.3)
    cases = [(scenario(x, settle=10 - i), "local") for i, x in enumerate("abcd")]
    assert run_every(Session(), runner, cases, limit=2)[2] == {} and runner.live == set()
    assert runner.thread("prepare", "c").startswith("chaos-prepare")  # deployed while a and b ran
    assert all(runner.steps(x).count("prepare") == 1 for x in "abcd")


class FirstStartFails(Session):
    """The first system start times out (a server slow to come up under load); later ones work."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def system(self, backend, database=None):
        self.calls += 1
        if self.calls == 1:
            raise TimeoutError("the Prefect server did not answer")
        return super().system(backend, database)


def test_a_case_that_fails_before_it_runs_does_not_hold_up_preparation():
    runner = Staged(0.1)
    sched = Scheduler(FirstStartFails(), runner, 1, ahead=1)
    sched.planned = [(scenario(x), "local") for x in "abcd"]
    with pytest.raises(TimeoutError):
        sched.result(sched.planned[0])
    for case in sched.planned[1:]:
        sched.result(case)
    assert sched.close() == {}
    assert runner.steps("a") == []  # never deployed: its turn is over
    assert runner.thread("prepare", "c").startswith("chaos-prepare")
    assert runner.thread("prepare", "d").startswith("chaos-prepare")


def test_nothing_is_prepared_on_a_system_that_is_not_up_yet():
    class Lazy(Session):
        def started(self, backend, database=None):
            return backend == "local"

    runner = Staged(0.1)
    run_every(Lazy(), runner, [(scenario("a"), "local"), (scenario("a"), "docker")])
    assert all(t == threading.current_thread().name for st, _, t in runner.events if st == "prepare")


def postgres(sid: str, faults: list | None = None) -> Scenario:
    row = scenario(sid, faults=faults).model_dump()
    return Scenario.model_validate({**row, "database": "postgres"})


def test_one_at_a_time_each_systems_cases_run_together():
    from harness.run.schedule import by_system

    cases = [(scenario("a"), "local"), (postgres("p1"), "local"), (scenario("b"), "docker"), (scenario("c"), "local"),
             (postgres("p2"), "local"), (scenario("d"), "docker")]
    assert [(s.id, b) for s, b in by_system(cases)] == [("a", "local"), ("c", "local"), ("p1", "local"),
                                                        ("p2", "local"), ("b", "docker"), ("d", "docker")]


class RetiringSession(Session):
    """Records which systems were started and retired, in order."""

    def __init__(self):
        super().__init__()
        self.log: list[str] = []
        self.up: set[tuple[str, str | None]] = set()

    def system(self, backend, database=None):
        if (backend, database) not in self.up:
            self.up.add((backend, database))
            self.log.append(f"start {backend}+{database}")
        return f"shared-{backend}+{database}"

    def started(self, backend, database=None):
        return (backend, database) in self.up

    def retire(self, backend, database=None):
        self.log.append(f"retire {backend}+{database}")
        self.up.discard((backend, database))


def test_a_shared_system_is_retired_after_its_last_case_and_its_cleanup():
    from harness.run.schedule import by_system

    runner = Staged(0.05)
    session = RetiringSession()
    cases = by_system([(scenario("a"), "local"), (postgres("p1"), "local"), (scenario("b"), "local"),
                       (postgres("p2"), "local"), (scenario("own", server_env={"PREFECT_SERVER_X": "1"}), "local")])
    results, sched, failed = run_every(session, runner, cases)
    assert failed == {} and runner.live == set()
    assert [r["scenario"] for r in results] == ["a", "b", "own", "p1", "p2"]
    # the default system goes once its last case (b) is cleaned up (the private case needs none of
    # it); the last system is the session's to close, with the rest
    assert sorted(session.log) == ["retire local+None", "start local+None", "start local+postgres"]
    assert session.log.index("start local+None") < session.log.index("retire local+None")


def test_a_system_is_not_retired_while_a_planned_case_still_needs_it():
    runner = Staged(0.05)
    session = RetiringSession()
    sched = Scheduler(session, runner, 1, ahead=0)
    sched.planned = [(scenario("a"), "local"), (scenario("b"), "local")]
    sched.result(sched.planned[0])
    time.sleep(0.3)  # a's cleanup, behind
    assert session.log == ["start local+None"]  # b still needs it
    sched.result(sched.planned[1])
    sched.close()
    assert session.log == ["start local+None"]  # the session closes it with the rest


def test_a_case_whose_system_cannot_start_does_not_keep_it_from_retiring():
    session = RetiringSession()
    session.system = lambda backend, database=None: (_ for _ in ()).throw(Unavailable("no local here"))
    sched = Scheduler(session, Staged(0.01), 1, ahead=0)
    sched.planned = [(scenario("a"), "local")]
    with pytest.raises(Unavailable):
        sched.result(sched.planned[0])
    assert sched._active == {("local", None): 0} and session.log == ["retire local+None"]
    sched.close()
