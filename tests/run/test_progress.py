"""The console's progress lines (harness.run.progress) from hand-written events and journal lines."""

from __future__ import annotations

import re

from harness.run import progress


def entry(scenario: str, outcome: str = "pass", claim: str | None = None, stuck: bool = False,
          final: str = "CRASHED", reasons: list[str] | None = None) -> dict:
    return {"scenario": scenario, "backend": "local", "claim": {"text": f"{scenario} claims so"} if claim else None,
            "verdict": {"outcome": outcome, "claim": claim, "reasons": reasons or [],
                        "figures": {"final": final, "stuck": stuck, "time_to_detect": 0.13, "time_to_settle": 6.31}}}


def test_a_case_is_told_from_its_start_through_its_faults_to_its_end_with_the_time_left():
    lines: list[str] = []
    cases = [("a", "local"), ("b", "local"), ("c", "local")]
    console = progress.Console(lines.append, cases, {("a", "local"): 60, ("b", "local"): 120, ("c", "local"): 30},
                               concurrency=1)
    progress.listen(console)
    try:
        progress.emit("start", case="a@local", bound=60)
        progress.emit("fault", case="a@local", kind="kill", target="flow-run", at=6.26, error=None)
        progress.emit("heal", case="a@local", kind="freeze", target="flow-run", at=16.0, error=None)
        progress.emit("fault", case="a@local", kind="oom", target="flow-run", at=1.0, error="inject failed: no cgroup")
        progress.emit("end", case="a@local", entry=entry("a", claim="refuted"), line=7)
    finally:
        progress.unlisten(console)
    progress.emit("start", case="b@local", bound=1)  # no listener any more: nothing
    assert lines[0] == "  start   a@local  (bound 60 s)"
    assert lines[1] == "  fault   a@local  kill -> flow-run at +6.3 s"
    assert lines[2] == "  healed  a@local  freeze -> flow-run at +16.0 s"
    assert lines[3].endswith("oom -> flow-run at +1.0 s  FAILED: inject failed: no cgroup")
    assert lines[4] == ("  end     a@local  PASS, final CRASHED, claim refuted, detected in 0.1 s, settled in 6.3 s "
                        "(journal line 7)")
    assert re.fullmatch(r"\[1/3\] 0:0\d elapsed, about 2:30 left", lines[5])  # b and c's 150 s, one at a time
    assert len(lines) == 6
    assert all(ch.isprintable() for line in lines for ch in line)  # no control characters for a CI log


def test_the_time_left_divides_by_the_cases_at_once_and_ends_with_the_last():
    lines: list[str] = []
    cases = [("a", "local"), ("b", "local"), ("c", "local")]
    console = progress.Console(lines.append, cases, {c: 100.0 for c in cases}, concurrency=2)
    console.ended("a@local", entry("a"), None)
    assert lines[-1].endswith("about 1:40 left")  # 200 s left, 2 at once
    console.ended("b@local", entry("b"), None)
    assert lines[-1].endswith("about 1:40 left")  # 1 left: it runs alone
    console.ended("c@local", entry("c"), None)
    assert re.fullmatch(r"\[3/3\] 0:0\d elapsed", lines[-1])


def test_a_run_of_the_chaos_fixture_has_its_end_line_but_is_not_counted_among_the_cases():
    lines: list[str] = []
    console = progress.Console(lines.append, [("a", "local")], {("a", "local"): 100.0})
    console.ended("test-mine-1@local", entry("test-mine-1"), 4)
    assert lines == [lines[0]] and lines[0].startswith("  end     test-mine-1@local  PASS")
    console.ended("a@local", entry("a"), 5)
    assert re.fullmatch(r"\[1/1\] 0:0\d elapsed", lines[-1])


def test_a_listener_that_fails_never_reaches_the_case():
    def broken(kind, data):
        raise RuntimeError("a closed terminal")

    progress.listen(broken)
    try:
        progress.emit("start", case="x@local", bound=1)
    finally:
        progress.unlisten(broken)


def test_the_final_summary_names_refuted_claims_stuck_runs_and_failed_verdicts_with_their_lines():
    lines = progress.final_summary([
        (1, entry("held-one", claim="held")),
        (2, entry("refuted-one", claim="refuted")),
        (3, entry("stuck-one", outcome="fail", stuck=True, final="RUNNING", reasons=["final state RUNNING, expected CRASHED"])),
    ])
    assert lines[0] == "3 case(s): 2 as the matrix expects, 1 not; claims 1 held, 1 refuted; 1 stuck run(s)"
    assert lines[1:] == [
        "refuted claims:", '  refuted-one@local: "refuted-one claims so" (journal line 2)',
        "stuck runs:", "  stuck-one@local: still RUNNING at its bound (journal line 3)",
        "failed verdicts:", "  stuck-one@local: final state RUNNING, expected CRASHED (journal line 3)"]


def test_clock_and_brief():
    assert progress.clock(5) == "0:05" and progress.clock(3723) == "1:02:03"
    full = {**entry("a"), "history": {"flow_runs": ["..."] * 100}}
    assert "history" not in progress.brief(full) and progress.brief(full)["verdict"]["figures"]["final"] == "CRASHED"


def test_the_time_left_counts_what_a_running_case_has_run_already(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    lines: list[str] = []
    cases = [("a", "local"), ("b", "local")]
    console = progress.Console(lines.append, cases, {("a", "local"): 60.0, ("b", "local"): 90.0}, concurrency=2)
    console("start", {"case": "a@local", "bound": 60})
    console("start", {"case": "b@local", "bound": 90})
    now[0] += 50
    console.ended("a@local", entry("a"), None)
    assert lines[-1] == "[1/2] 0:50 elapsed, about 0:40 left"  # b has run 50 of its 90 s
