"""The execution tracer (harness/tracer) against the hand-kept ledger, on real runs of the
matrix's own rows: it must count every task-body execution the ledger counts, killed, retried,
cached or on a task worker, without a line of the flow's code knowing about it."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.model.matrix import load_matrix
from harness.run.case import run_scenario

pytestmark = pytest.mark.integration

# a kill mid-task, task retries, a rerun with cache hits, a subflow, a background task on a task worker
ROWS = ["kill-flow-process", "task-retries-ride-out", "resume-after-crash-cache-inputs", "kill-subflow-process",
        "background-kill-replica-mid-task"]


@pytest.mark.parametrize("row", ROWS)
def test_the_tracer_counts_what_the_ledger_counts(local, repo_root, row):
    scenario = next(s for s in load_matrix(repo_root / "scenarios") if s.id == row)
    entry = run_scenario(scenario, local)
    history = entry["history"]
    by_hand = Counter(line["task"] for line in history["ledger"] if line.get("event") == "start")
    assert by_hand, "the row executed nothing: nothing to compare"
    assert history["traced"] == dict(by_hand), (history["traced"], dict(by_hand))
