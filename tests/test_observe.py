"""Triggers decided from snapshots (pure)."""

from harness.observe import Snapshot, fired
from harness.scenario import Trigger


def test_task_trigger():
    t = Trigger(task="step-2", state="running")
    assert fired(t, Snapshot(at=5, flow_state="RUNNING", tasks={"step-2": "RUNNING"}), 0)
    assert not fired(t, Snapshot(at=5, flow_state="RUNNING", tasks={"step-1": "RUNNING"}), 0)
    assert not fired(t, Snapshot(at=5, flow_state="RUNNING", tasks={"step-2": "COMPLETED"}), 0)


def test_time_and_flow_state_triggers():
    assert fired(Trigger(after_seconds=3), Snapshot(at=13, flow_state="RUNNING"), 10)
    assert not fired(Trigger(after_seconds=3), Snapshot(at=12, flow_state="RUNNING"), 10)
    assert fired(Trigger(flow_state="running"), Snapshot(at=1, flow_state="RUNNING"), 0)
    assert not fired(Trigger(flow_state="running"), Snapshot(at=1, flow_state="PENDING"), 0)


def test_snapshot_terminal():
    assert Snapshot(at=0, flow_state="CRASHED").terminal
    assert not Snapshot(at=0, flow_state=None).terminal
