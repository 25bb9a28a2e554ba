"""Arming faults: which runs of a scenario each fault waits on and hits."""

from harness.run import arm
from harness.scenario import Scenario


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
