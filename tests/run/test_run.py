"""Arming faults: which runs of a scenario each fault waits on and hits; creating a storm's runs."""

import json
import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from harness.model.scenario import Scenario
from harness.run.case import STORM_CREATORS, _create_runs, arm
from harness.sut.api import APIError, PrefectAPI

from stub_http import JSONHandler, serve


def storm(faults, runs=10, sid="storm"):
    return Scenario.model_validate({"id": sid, "title": "t", "backends": ["local"],
                                    "workload": {"flow": "pipeline", "runs": runs}, "faults": faults,
                                    "expect": {"final": "COMPLETED", "settle_within_seconds": 60}})


KILL = {"kind": "kill", "when": {"task": "step-2", "state": "running"}}


def test_one_run_one_armed_fault_each():
    armed = arm(storm([KILL, {"kind": "kill-worker", "when": {"after_seconds": 1}}], runs=1), ["r0"])
    assert [(a.spec.kind, a.run_id) for a in armed] == [("kill", "r0"), ("kill-worker", "r0")]
    assert "flow_run_id" not in armed[0].record.detail  # a single run needs no naming


def test_a_share_hits_that_many_runs_the_same_ones_every_time():
    ids = [f"r{i}" for i in range(10)]
    first = [a.run_id for a in arm(storm([{**KILL, "share": 0.2}]), ids)]
    again = [a.run_id for a in arm(storm([{**KILL, "share": 0.2}]), [f"x{i}" for i in range(10)])]
    assert len(first) == 2 and [i[1:] for i in first] == [i[1:] for i in again]  # same positions
    other = [a.run_id for a in arm(storm([{**KILL, "share": 0.2}], sid="another-storm"), ids)]
    assert len(other) == 2
    assert all(a.record.detail["flow_run_id"] == a.run_id for a in arm(storm([{**KILL, "share": 0.2}]), ids))


def test_without_a_share_a_run_fault_hits_every_run_and_a_shared_target_once():
    ids = [f"r{i}" for i in range(4)]
    armed = arm(storm([KILL, {"kind": "kill-worker", "when": {"after_seconds": 1}},
                       {"kind": "api-error", "status": 503, "when": {"after_seconds": 1}}], runs=4), ids)
    kinds = [a.spec.kind for a in armed]
    assert kinds.count("kill") == 4 and kinds.count("kill-worker") == 1 and kinds.count("api-error") == 1


class _CreatingServer(JSONHandler):
    """POST /deployments/<id>/create_flow_run, each answered 0.3 s later (a busy server), counting
    how many are in flight at once."""

    lock, in_flight, most = threading.Lock(), 0, 0

    def do_POST(self):
        self.body()
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.most = max(cls.most, cls.in_flight)
        time.sleep(0.3)
        with cls.lock:
            cls.in_flight -= 1
        self.answer({"id": str(uuid.uuid4())}, 201)


def test_a_storms_runs_are_created_many_at_a_time_and_one_run_alone():
    with serve(_CreatingServer) as port:
        api = PrefectAPI(f"http://127.0.0.1:{port}")
        try:
            system, deployed = SimpleNamespace(api=api), SimpleNamespace(deployment_id="d")
            ids = _create_runs(system, deployed, 25, {}, ["chaos"])
            assert len(set(ids)) == 25
            # not one after another: as many at once as the creators (each request takes 0.3 s)
            assert 1 < _CreatingServer.most <= STORM_CREATORS
            _CreatingServer.most = 0
            assert len(_create_runs(system, deployed, 1, {}, ["chaos"])) == 1 and _CreatingServer.most == 1
        finally:
            api.close()


class _ExhaustedServer(JSONHandler):
    """Answers a run's creation 500 twice (a server whose database pool ran out), then makes the
    run, named after its idempotency key; any other POST is answered 500 every time."""

    keys: list[str] = []

    def do_POST(self):
        body = json.loads(self.body())
        if not self.path.endswith("/create_flow_run"):
            self.answer({"exception_message": "Internal Server Error"}, 500)
            return
        type(self).keys.append(body["idempotency_key"])
        if len(self.keys) <= 2:
            self.answer({"exception_message": "Internal Server Error"}, 500)
        else:
            self.answer({"id": f"run-{body['idempotency_key']}"}, 201)


def test_creating_a_run_retries_a_500_with_the_same_idempotency_key_and_nothing_else_does():
    with serve(_ExhaustedServer) as port:
        api = PrefectAPI(f"http://127.0.0.1:{port}")
        try:
            run_id = api.create_flow_run("d", {}, ["chaos"], retry_for=10)
            keys = _ExhaustedServer.keys
            assert len(keys) == 3 and len(set(keys)) == 1 and run_id == f"run-{keys[0]}"
            started = time.monotonic()
            with pytest.raises(APIError, match="POST .*/flows/: HTTP 500"):
                api.create_deployment(flow_name="f", name="n", pool="p", entrypoint="e", directory="/",
                                      parameters={}, job_variables={}, tags=[])
            assert time.monotonic() - started < 2  # not retried for the setup calls' 30 s
        finally:
            api.close()


def test_polls_are_quick_while_a_trigger_is_awaited_or_a_heal_is_near_and_slower_otherwise():
    from harness.run.case import IDLE_POLL, POLL, poll_interval

    freeze = {"kind": "freeze", "when": {"task": "step-2", "state": "running"}, "heal_after_seconds": 10}
    [armed] = arm(storm([freeze], runs=1), ["r0"])
    assert poll_interval([armed], 100.0) == POLL  # its trigger is awaited
    armed.fault, armed.heal_at = object(), 100.6  # injected, healing in 0.6 s
    assert poll_interval([armed], 100.0) == pytest.approx(0.6)
    assert poll_interval([armed], 100.5) == POLL  # never less than the quick poll
    armed.heal_at = 130.0
    assert poll_interval([armed], 100.0) == IDLE_POLL
    armed.record.healed_at = 130.1  # healed: only the run is awaited
    assert poll_interval([armed], 131.0) == IDLE_POLL
    skipped = arm(storm([KILL], runs=2), ["r0", "r1"])
    for a in skipped:
        a.skipped = True  # a storm's runs that settled before their trigger
    assert poll_interval(skipped, 0.0) == IDLE_POLL == poll_interval([], 0.0)


class _SlowHeal:
    """A fault whose heal takes as long as a server restart on a loaded machine."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def inject(self):
        return {}

    def heal(self):
        time.sleep(self.seconds)
        return {}

    def close(self):
        return {}


def test_the_time_a_heal_takes_does_not_count_against_the_bound(monkeypatch):
    """A restart-server heal blocks until the server answers (12 s alone, 51 s with 2 cases at once
    on 2 cores): the run's bound moves by that time, so a run that settles as soon after the heal
    as it would alone is seen settled, not stuck at the bound."""
    from harness.run import observe
    from harness.run.case import _watch
    from harness.run.observe import Snapshot

    heal_takes, settle_after_heal = 1.5, 1.5
    row = Scenario.model_validate({
        "id": "slow-heal", "title": "t", "backends": ["local"], "workload": {"flow": "pipeline"},
        "faults": [{"kind": "restart-server", "when": {"after_seconds": 0}, "heal_after_seconds": 0.5}],
        "quiet_seconds": 0.2, "expect": {"final": "CRASHED", "settle_within_seconds": 2.5}})
    healed: list[float] = []

    def snapshots(api, run_ids, with_tasks):
        now = time.time()
        done = bool(healed) and now >= healed[0] + settle_after_heal
        return {run_ids[0]: Snapshot(now, "CRASHED" if done else "RUNNING")}

    fault = _SlowHeal(heal_takes)
    original_heal = fault.heal
    fault.heal = lambda: (original_heal(), healed.append(time.time()))[0]
    monkeypatch.setattr(observe, "snapshots", snapshots)
    system = SimpleNamespace(name="local", api=None, fault=lambda spec, deployed, run_id: fault)
    armed = arm(row, ["r0"])
    # heal at 0.5 s + 1.5 s of healing, settled 1.5 s later: 3.5 s, past the 2.5 s bound but within
    # the bound moved by the heal's 1.5 s
    seen_terminal, quiet_from = _watch(system, SimpleNamespace(), row, ["r0"], armed, bound=2.5)
    assert armed[0].record.healed_at is not None
    assert seen_terminal is not None and quiet_from is not None  # settled within the moved bound
