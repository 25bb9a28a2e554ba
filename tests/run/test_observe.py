"""Triggers decided from snapshots (pure), and how the polls that take snapshots are accounted."""

import json
import time

import pytest

from harness.model.scenario import Trigger
from harness.run.observe import Polls, Snapshot, fired, first_seen, snapshot, snapshots
from harness.sut.api import PrefectAPI

from stub_http import JSONHandler, serve


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


def test_a_delayed_trigger_counts_from_the_poll_that_first_saw_its_state():
    t = Trigger(flow_state="running", after_seconds=2)
    seen = None
    for at, state in [(1, "PENDING"), (2, None), (3, "RUNNING"), (4, "RUNNING"), (5, "RUNNING")]:
        snap = Snapshot(at=at, flow_state=state)
        seen = first_seen(t, snap, seen)
        assert fired(t, snap, 0, seen) == (at >= 5), at  # 2 s after RUNNING was seen at 3
    assert seen == 3
    # once seen, the clock runs even if the state is gone by the fault's turn (an earlier fault
    # of the row was still waiting), and a later sighting does not restart it
    assert first_seen(t, Snapshot(at=9, flow_state="RUNNING"), 3) == 3
    assert fired(t, Snapshot(at=9, flow_state="COMPLETED"), 0, 3)
    assert not fired(t, Snapshot(at=9, flow_state="RUNNING"), 0, None)  # never seen: never fires


def test_a_delayed_task_trigger_and_the_descriptions():
    t = Trigger(task="step-2", state="running", after_seconds=1.5)
    assert first_seen(t, Snapshot(at=4, flow_state="RUNNING", tasks={"step-1": "RUNNING"}), None) is None
    assert first_seen(t, Snapshot(at=6, flow_state="RUNNING", tasks={"step-2": "RUNNING"}), None) == 6
    undelayed = Trigger(task="step-2", state="running")  # a condition: no clock is kept for it
    assert first_seen(undelayed, Snapshot(at=6, flow_state="RUNNING", tasks={"step-2": "RUNNING"}), None) is None
    assert not fired(t, Snapshot(at=7, flow_state="RUNNING"), 0, 6)
    assert fired(t, Snapshot(at=7.5, flow_state="RUNNING"), 0, 6)
    assert t.describe() == "1.5s after task step-2 RUNNING was first seen"
    assert Trigger(flow_state="running", after_seconds=0).describe() == "0s after flow run RUNNING was first seen"
    assert Trigger(flow_state="running").describe() == "flow run RUNNING"
    assert Trigger(after_seconds=3).describe() == "3s after the run starts"
    # an undelayed state trigger is a condition: it holds or not at its turn (no clock kept)
    assert fired(Trigger(flow_state="running"), Snapshot(at=1, flow_state="RUNNING"), 0, None)


def test_a_run_count_trigger_waits_for_that_attempt():
    t = Trigger(flow_state="running", run_count=2)
    assert not fired(t, Snapshot(at=1, flow_state="RUNNING", run_count=1), 0)  # the first attempt
    assert not fired(t, Snapshot(at=2, flow_state="SCHEDULED", run_count=1), 0)  # AwaitingRetry
    assert fired(t, Snapshot(at=3, flow_state="RUNNING", run_count=2), 0)
    assert fired(t, Snapshot(at=9, flow_state="RUNNING", run_count=3), 0)  # "at least"
    delayed = Trigger(task="step-1", state="running", run_count=2, after_seconds=5)
    first = Snapshot(at=1, flow_state="RUNNING", tasks={"step-1": "RUNNING"}, run_count=1)
    assert first_seen(delayed, first, None) is None  # step-1 of the first attempt does not start the clock
    seen = first_seen(delayed, Snapshot(at=20, flow_state="RUNNING", tasks={"step-1": "RUNNING"}, run_count=2), None)
    assert seen == 20 and fired(delayed, Snapshot(at=25, flow_state="RUNNING", run_count=2), 0, seen)
    assert delayed.describe() == "5s after task step-1 RUNNING at run_count >= 2 was first seen"


def test_a_snapshot_shows_the_latest_attempt_of_a_task_run_again_under_its_name():
    from harness.run.observe import _tasks

    runs = [{"name": "step-1", "created": "2026-11-24T06:00:09.000000Z", "state": {"type": "RUNNING"}},
            {"name": "step-1", "created": "2026-11-24T06:00:01.000000Z", "state": {"type": "COMPLETED"}},
            {"name": "step-2", "created": "2026-11-24T06:00:05.000000Z", "state": {"type": "COMPLETED"}}]
    assert _tasks(runs) == {"step-1": "RUNNING", "step-2": "COMPLETED"}
    assert _tasks(runs[::-1]) == {"step-1": "RUNNING", "step-2": "COMPLETED"}  # whatever the API's order


def test_the_history_and_so_the_checker_and_the_probes_judge_a_re_run_task_by_its_latest_attempt():
    """As the API listed them in kill-flow-process-during-flow-retry: the retry's task run (killed
    Running) before the first attempt's (Failed).  Judged in that order, "the last of the name"
    was the first attempt."""
    from harness.model import check as checker
    from harness.model.expectation import Expectation
    from harness.model.history import FlowRun, History, State
    from harness.run.observe import task_runs

    rows = [{"id": "b", "flow_run_id": "run-1", "name": "work", "run_count": 1, "created": "2026-11-24T06:00:09Z"},
            {"id": "a", "flow_run_id": "run-1", "name": "work", "run_count": 1, "created": "2026-11-24T06:00:01Z"}]
    states = {"a": [State("RUNNING", "Running", 1.0), State("FAILED", "Failed", 4.0)],
              "b": [State("RUNNING", "Running", 9.0)]}
    history = History("s", "local", 0, 60, 60,
                      [FlowRun("run-1", "failing", "main", [State("CRASHED", "Crashed", 12.0)], 2)], [], [], [])
    history.task_runs = task_runs(rows, states.__getitem__)
    assert [t.id for t in history.task_runs] == ["a", "b"]
    want = Expectation(settle_within_seconds=60, tasks={"work": {"final": "RUNNING", "run_count": 1}})
    assert checker._check_tasks(want.tasks, history) == []
    want = Expectation(settle_within_seconds=60, tasks={"work": {"final": "FAILED"}})
    assert checker._check_tasks(want.tasks, history) == ["task work: final state RUNNING (Running), expected FAILED"]


def test_the_poll_account_keeps_the_longest_time_without_an_answer():
    polls = Polls(started=100.0)
    polls.add(100.0, 100.5, answered=True)  # 0.5 s from the watch's start to the first answer
    polls.add(100.7, 105.7, answered=False)  # a poll that timed out: no answer, the clock runs on
    polls.add(105.9, 108.0, answered=True)  # 7.5 s since the last answer, the slowest 5 s
    polls.add(108.2, 108.3, answered=True)
    assert polls.as_dict(ended=109.0) == {"count": 4, "unanswered": 1, "slowest": 5.0, "blind": 7.5}
    # a watch whose last answer came long before its end (a server stopped for good) counts that too
    assert polls.as_dict(ended=130.3)["blind"] == 22.0
    assert Polls(started=5.0).as_dict(ended=65.0) == {"count": 0, "unanswered": 0, "slowest": 0.0, "blind": 60.0}


class _SlowServer(JSONHandler):
    """A Prefect API that takes 0.8 s over each answer, as a server under a storm's load does."""

    states = {"a": "COMPLETED", "b": "RUNNING"}

    def answer(self, data, status=200):
        time.sleep(0.8)
        super().answer(data, status)

    def _run(self, run_id):
        return {"id": run_id, "state": {"type": self.states[run_id]}, "run_count": 1}

    def do_POST(self):  # /flow_runs/filter: the runs asked for
        asked = json.loads(self.body())["flow_runs"]["id"]["any_"]
        self.answer([self._run(r) for r in asked])

    def do_GET(self):  # /flow_runs/<id>
        self.answer(self._run(self.path.rsplit("/", 1)[1]))


@pytest.fixture()
def slow_api():
    with serve(_SlowServer) as port:
        api = PrefectAPI(f"http://127.0.0.1:{port}", timeout=0.3)  # shorter than its answers
        yield api
        api.close()


def test_a_storms_poll_waits_for_a_slow_server_and_is_stamped_when_the_answer_came(slow_api):
    asked = time.time()
    snaps = snapshots(slow_api, ["a", "b"], with_tasks=False)
    assert {r: s.flow_state for r, s in snaps.items()} == {"a": "COMPLETED", "b": "RUNNING"}
    assert all(s.at >= asked + 0.8 for s in snaps.values())  # seen when it came, not when it was asked
    # one run's poll keeps the client's own timeout: an unanswered poll is an observation too
    assert snapshot(slow_api, "a", with_tasks=False).flow_state is None
