"""The report's data model and HTML on hand-written journals: matrix, figures, claims, trend, bad input."""

import json
import random
import re

import pytest
from journal_lines import T, entry, journal  # shared with tests/run/test_shard.py

from harness.cli import main
from harness.report import html as htmlreport
from harness.report.data import build


def test_matrix_cells_per_backend_and_version_with_repeats(tmp_path):
    j = journal(tmp_path / "j.jsonl", entry(), entry(at=100), entry(backend="docker"),
                entry(backend="docker", at=50, outcome="fail"), entry(scenario="oom-b", kinds=("oom",), version="3.7.0"))
    r = build([j])
    assert r.columns == [("docker", "3.8.8"), ("local", "3.7.0"), ("local", "3.8.8")]
    assert r.rows == ["kill-a", "oom-b"]
    assert r.cells[("kill-a", ("local", "3.8.8"))].summary == "pass"
    assert len(r.cells[("kill-a", ("local", "3.8.8"))].entries) == 2
    assert r.cells[("kill-a", ("docker", "3.8.8"))].summary == "mixed"
    assert ("oom-b", ("local", "3.8.8")) not in r.cells
    assert r.counts() == {"pass": 2, "mixed": 1}


def test_figures_per_fault_kind_median_and_worst(tmp_path):
    j = journal(tmp_path / "j.jsonl", entry(ttd=0.2), entry(ttd=0.4, at=1), entry(ttd=3.0, at=2, re_executions=2),
                entry(scenario="z", kinds=("freeze",), ttd=None, stuck=True, flapping=True,
                      overlaps=[{"flow_run_id": "r1"}]),
                entry(scenario="two", kinds=("kill-worker", "kill"), ttd=1.0))
    r = build([j])
    kill = r.by_kind["kill"]
    assert (kill["runs"], kill["detect"].median, kill["detect"].worst, kill["re_executions"]) == (4, 0.7, 3.0, 2)
    freeze = r.by_kind["freeze"]
    assert (freeze["detect"].n, freeze["stuck"], freeze["flapping"], freeze["overlaps"]) == (0, 1, 1, 1)
    assert r.totals == {"runs": 5, "re_executions": 2, "stuck": 1, "flapping": 1, "overlaps": 1}


def test_claims_held_refuted_and_not_tested(tmp_path):
    claim = {"text": "retries kick in after a crash", "source": "an answer"}
    j = journal(tmp_path / "j.jsonl", entry(claim=claim, claim_verdict="refuted"),
                entry(backend="docker", claim=claim, claim_verdict="held"),
                entry(scenario="b", claim={"text": "never fired", "source": "s"}, outcome="unknown", claim_verdict="held"))
    r = build([j])
    by = {c.text: c for c in r.claims}
    assert by["retries kick in after a crash"].status == "mixed"
    assert [x["status"] for x in by["retries kick in after a crash"].results] == ["held", "refuted"]
    assert by["never fired"].status == "not tested"  # an unknown verdict tests nothing
    page = htmlreport.render(r)
    assert "run_count 1, expected 2" in page  # the evidence is shown


def test_trend_newly_broke_fixed_flaky_and_latency(tmp_path):
    old = journal(tmp_path / "journal-1.jsonl", entry("a", at=0, ttd=0.5), entry("b", at=0, outcome="fail"),
                  entry("c", at=0), entry("d", at=0))
    mid = journal(tmp_path / "journal-2.jsonl", entry("a", at=100, ttd=0.7), entry("b", at=100, outcome="fail"),
                  entry("c", at=100, outcome="fail"), entry("d", at=100, version="3.9.0"))
    new = journal(tmp_path / "journal-3.jsonl", entry("a", at=200, outcome="fail", ttd=2.0), entry("b", at=200),
                  entry("c", at=200), entry("d", at=200, outcome="fail", expectation={"final": "FAILED"}))
    r = build([new], [old, mid])
    # d broke too, but its expectation changed meanwhile: reported, and said so
    assert [(x["scenario"], x["was"], x["now"], x["same_expectation"]) for x in r.trend.newly_broke] == [
        ("a", "pass", "fail", True), ("d", "pass", "fail", False)]
    assert [(x["scenario"], x["was"]) for x in r.trend.fixed] == [("b", "fail"), ("c", "fail")]
    flaky = {x["scenario"]: x["outcomes"] for x in r.trend.flaky}
    # a and c changed with nothing changed; d's runs differ in version or expectation: not flaky
    assert flaky == {"a": ["pass", "pass", "fail"], "b": ["fail", "fail", "pass"], "c": ["pass", "fail", "pass"]}
    assert [v for _, v in r.trend.latency[("a", "local", "3.8.8")]] == [0.5, 0.7, 2.0]
    page = htmlreport.render(r)
    assert page.count('class="spark"') >= 1 and "Newly broke (2)" in page
    assert "the expectation or a version changed meanwhile" in page and "Fixed (2)" in page


def test_page_is_self_contained_escaped_and_filterable(tmp_path):
    triggered = entry("y")
    triggered["history"]["faults"][0]["detail"] = {"trigger": "task step-2 RUNNING at run_count >= 2 <i>"}
    j = journal(tmp_path / "j.jsonl", entry(), entry("x<script>", outcome="fail", kinds=("oom",)), triggered)
    page = htmlreport.render(build([j]))
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no network request of any kind
    assert "@import" not in page and "<link" not in page
    assert "<script>alert" not in page and "x&lt;script&gt;" in page and "-9 &lt;b&gt;" in page
    assert '<svg class="timeline"' in page and 'data-state="CRASHED"' in page
    assert 'class="execution killed"' in page  # step-2 started and never ended
    assert 'class="inject"' in page and "detected in 0.50s" in page
    assert "→ flow-run at 10.00s on task step-2 RUNNING at run_count &gt;= 2 &lt;i&gt;</title>" in page
    assert 'id="f-verdict"' in page and 'data-verdicts="fail"' in page and 'data-faults="oom"' in page
    assert "@media print" in page and "width=device-width" in page


def test_bad_journals_give_a_partial_report_or_a_clear_error(tmp_path, capsys):
    good = journal(tmp_path / "good.jsonl", entry(), torn='{"scenario": "cut')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"scenario": "x"}\nnot json\n[1, 2]\n' + json.dumps({**entry(), "verdict": {"outcome": "maybe"}}) + "\n")
    out = tmp_path / "r.html"
    assert main(["report", str(good), str(bad), str(tmp_path / "missing.jsonl"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    for words in ["good.jsonl:2: skipped, a torn last line", "bad.jsonl:1: skipped, missing field(s) backend",
                  "bad.jsonl:2: skipped, not JSON", "bad.jsonl:3: skipped, not a JSON object",
                  "bad.jsonl:4: skipped, verdict.outcome is 'maybe'", "missing.jsonl: cannot be read"]:
        assert words in err
    page = out.read_text()
    assert "this report is" in page and "partial" in page and "kill-a" in page
    assert main(["report", str(bad), "-o", str(tmp_path / "none.html")]) == 2
    assert "error: no usable scenario results" in capsys.readouterr().err
    assert not (tmp_path / "none.html").exists()


def test_mangled_entries_never_raise(tmp_path):
    """Random damage to a real-shaped entry: every outcome is a report, never a traceback."""
    rng = random.Random(1234)
    junk = [None, "x", -1, 1e308, [], {}, [None], {"a": None}, True]

    def mangle(value, depth=0):
        if isinstance(value, dict) and value:
            value = dict(value)
            key = rng.choice(sorted(value))
            if rng.random() < 0.3:
                del value[key]
            else:
                value[key] = rng.choice(junk) if rng.random() < 0.5 or depth > 4 else mangle(value[key], depth + 1)
        elif isinstance(value, list) and value:
            value = list(value)
            i = rng.randrange(len(value))
            value[i] = rng.choice(junk) if rng.random() < 0.5 else mangle(value[i], depth + 1)
        return value

    lines = [entry(f"s{i}") for i in range(3)]
    lines[1].update(outcome="fail", logs={"dir": "logs/j/s1-abc", "files": ["worker.log"], "problems": ["x: gone"]})
    drawn = flagged = 0
    for trial in range(300):
        damaged = [mangle(mangle(l)) for l in lines]
        path = journal(tmp_path / f"j{trial}.jsonl", *damaged)
        report = build([path])
        page = htmlreport.render(report)  # must not raise
        assert page.startswith("<!DOCTYPE html>")
        drawn += len(report.entries)
        flagged += bool(report.problems)
    assert drawn > 300 and flagged > 50  # both paths were exercised: drawn damage and refused damage


@pytest.mark.parametrize("name,expected", [("journal-20261122T1Z.jsonl", "report-20261122T1Z.html"),
                                           ("mine.jsonl", "mine-report.html")])
def test_report_path_beside_the_journal(tmp_path, name, expected):
    from harness.plugin import report_path

    assert report_path(tmp_path / name) == tmp_path / expected


def test_an_unverified_expectation_is_marked_in_the_matrix_and_the_detail(tmp_path):
    basis = "prefect-kubernetes 0.8.0 source: observer <crash> marking"
    kind_entry = entry(scenario="kill-a", backend="kind", kinds=("kill",),
                       expectation={"final": "CRASHED", "settle_within_seconds": 60, "unverified": basis})
    kind_entry["history"]["infrastructure"] = [
        {"pod": "p1", "node": "chaos-x-worker2", "flow_run_id": "r1", "status": "Failed", "reason": "Evicted",
         "container_reason": "OOMKilled", "exit_code": 137, "oom_killed": True, "restarts": 0}]
    j = journal(tmp_path / "j.jsonl", kind_entry, entry(backend="local"))
    out, _ = htmlreport.write([j], tmp_path / "r.html")
    html = out.read_text()
    cells = re.findall(r'<td class="cell[^>]*>.*?</td>', html)
    assert len(cells) == 2
    marked = [c for c in cells if 'class="unverified"' in c]
    assert len(marked) == 1 and "expectation unverified: prefect-kubernetes 0.8.0 source: observer &lt;crash&gt;" in marked[0]
    assert html.count("unverified-note") == 2  # the style rule and the kind detail, not the local one
    assert "pod <code>p1</code> on <code>chaos-x-worker2</code>: Failed (Evicted, OOMKilled), exit code 137" in html


def test_background_task_workers_and_task_expectations_in_the_detail(tmp_path):
    e = entry(scenario="background-kill", kinds=("kill",), expectation={
        "final": "RUNNING", "settle_within_seconds": 60,
        "tasks": {"step-2": {"final": "RUNNING", "final_name": None, "message": None, "run_count": None}}},
        tasks={"step-2": {"final": "RUNNING", "run_count": 1}},
        executed_by={"step-1": ["task-worker-1"], "step-2": ["task-worker-0", "task-worker-0.1"]})
    e["history"]["infrastructure"] = [{"task_worker": 0, "generation": 0, "pid": 41, "started_at": T, "exit_code": -9},
                                      {"task_worker": 0, "generation": 1, "pid": 42, "started_at": T, "exit_code": None}]
    out, _ = htmlreport.write([journal(tmp_path / "j.jsonl", e)], tmp_path / "r.html")
    html = out.read_text()
    assert "task worker 0 (generation 0, pid 41): exit code -9" in html
    assert "task worker 0 (generation 1, pid 42): running at the end" in html
    assert "<code>step-2</code> task-worker-0, task-worker-0.1" in html
    # the expected column shows only the fields the row sets, the observed one the figures
    assert "<td>tasks</td><td><code>{&quot;step-2&quot;: {&quot;final&quot;: &quot;RUNNING&quot;}}</code>" in html


def test_a_storms_detail_shows_how_all_its_runs_ended(tmp_path):
    counts = {"COMPLETED": 40, "CRASHED": 8, "PENDING": 2}
    e = entry(scenario="storm-pool", outcome="fail", reasons=["at least 3 run(s) PENDING expected, 2 were"],
              expectation={"final": ["COMPLETED", "CRASHED", "PENDING"], "at_least": {"PENDING": 3},
                           "settle_within_seconds": 60},
              storm={"runs": 50, "faulted": 0, "final": counts, "stuck": ["a", "b"], "unaccounted_ledger_runs": []})
    html = htmlreport.write([journal(tmp_path / "j.jsonl", e)], tmp_path / "r.html")[0].read_text()
    observed = "<code>{&quot;COMPLETED&quot;: 40, &quot;CRASHED&quot;: 8, &quot;PENDING&quot;: 2}</code>"
    assert f"<td>at_least</td><td><code>{{&quot;PENDING&quot;: 3}}</code></td><td class=bad>{observed}" in html
    assert f"<td>final</td><td><code>[&quot;COMPLETED&quot;, &quot;CRASHED&quot;, &quot;PENDING&quot;]</code></td><td>{observed}" in html


def test_a_storms_detail_shows_every_runs_message_and_run_count(tmp_path):
    e = entry(scenario="storm-pool", outcome="fail", reasons=["1 run(s): an unfaulted run: run_count 0, expected 1"],
              expectation={"final": ["COMPLETED", "CRASHED"], "message": "^$", "run_count": 1, "settle_within_seconds": 60},
              storm={"runs": 3, "faulted": 0, "final": {"COMPLETED": 2, "CRASHED": 1}, "stuck": [], "unaccounted_ledger_runs": []})
    first = e["history"]["flow_runs"][0]
    first["states"][-1] = {"type": "COMPLETED", "name": "Completed", "timestamp": T + 20, "message": None}
    long = "Failed to submit flow run to infrastructure: " + "x" * 200
    e["history"]["flow_runs"] += [
        {**first, "id": "r2"},
        {**first, "id": "r3", "run_count": 0,
         "states": [{"type": "CRASHED", "name": "Crashed", "timestamp": T + 21, "message": long}]}]
    html = htmlreport.write([journal(tmp_path / "j.jsonl", e)], tmp_path / "r.html")[0].read_text()
    assert "<td>run_count</td><td><code>1</code></td><td class=bad><code>{&quot;0&quot;: 1, &quot;1&quot;: 2}</code>" in html
    cut = long[:htmlreport.STORM_MESSAGE_CHARS - 1] + "…"
    assert f"<td>message</td><td><code>^$</code></td><td><code>{{&quot;(none)&quot;: 2, &quot;{cut}&quot;: 1}}</code>" in html


def test_a_foreign_replica_is_named_in_the_detail(tmp_path):
    e = entry(scenario="background-foreign", kinds=(), executed_by={"step-1": ["task-worker-0"]})
    e["history"]["infrastructure"] = [{"task_worker": 0, "generation": 0, "pid": 40, "started_at": T, "exit_code": None,
                                       "foreign": True},
                                      {"task_worker": 0, "generation": 0, "pid": 41, "started_at": T, "exit_code": None}]
    out, _ = htmlreport.write([journal(tmp_path / "j.jsonl", e)], tmp_path / "r.html")
    html = out.read_text()
    assert "<li>foreign task worker 0 (generation 0, pid 40): running at the end" in html
    assert "<li>task worker 0 (generation 0, pid 41): running at the end" in html


def test_kept_logs_are_linked_relative_to_the_report_and_named_in_the_text(tmp_path):
    from harness.report.text import describe

    failed = {**entry(outcome="fail"), "logs": {"dir": "logs/journal-x/kill-a-1", "files": ["worker.log", "foreign/t 0.log"],
                                                "problems": ["server.log: <gone>"]}}
    j = journal(tmp_path / "journal-x.jsonl", failed, entry("passed"))
    out, report = htmlreport.write([j], tmp_path / "out" / "r.html")
    html = out.read_text()
    assert report.problems == []
    assert "Kept in <a href='../logs/journal-x/kill-a-1'><code>../logs/journal-x/kill-a-1</code></a>" in html
    assert "<a href='../logs/journal-x/kill-a-1/foreign/t%200.log'><code>foreign/t 0.log</code></a>" in html
    assert "server.log: &lt;gone&gt;" in html and html.count("<h3>Logs</h3>") == 1  # the passed case kept none
    text = describe(failed, timeline=False, journal=j)
    assert f"logs kept in {tmp_path / 'logs/journal-x/kill-a-1'}: worker.log, foreign/t 0.log" in text
    assert "could not keep server.log: <gone>" in text
    assert "logs kept" not in describe(entry(), timeline=False)


def test_a_logs_field_that_is_not_an_object_with_a_dir_is_refused(tmp_path):
    j = journal(tmp_path / "j.jsonl", {**entry(), "logs": "somewhere"}, {**entry("b"), "logs": {"dir": "d", "files": 3}})
    report = build([j])
    assert report.entries == []
    assert [p.split(": ", 1)[1] for p in report.problems[:2]] == ["skipped, logs is not an object with a dir",
                                                                  "skipped, logs.files is not a list"]


def test_the_detail_shows_the_path_and_who_reported_the_end(tmp_path):
    path = ["RUNNING/Running", "SCHEDULED/AwaitingRetry", "CRASHED/Crashed"]
    expected = entry(scenario="crash-retries", outcome="fail", path=path, reported_by="worker",
                     detected_as="SCHEDULED/AwaitingRetry", reasons=[
                         "main run: entered SCHEDULED/AwaitingRetry after the fault, expected never AwaitingRetry",
                         "main run: final state reported by worker ('...'), expected runner"],
                     expectation={"final": "CRASHED", "settle_within_seconds": 60, "never": ["AwaitingRetry"],
                                  "reported_by": "runner"})
    plain = entry(scenario="crash-plain", path=path[::2])  # no path expected: shown all the same
    html = htmlreport.write([journal(tmp_path / "j.jsonl", expected, plain)], tmp_path / "r.html")[0].read_text()
    never_row = re.search(r"<tr><td>never</td>.*?</tr>", html).group(0)
    assert "AwaitingRetry" in never_row and "class=bad" in never_row
    assert re.search(r"<tr><td>reported_by</td><td><code>runner</code></td><td class=bad><code>worker</code>", html)
    assert re.search(r"<tr><td>path</td><td><code>—</code></td><td><code>\[&quot;RUNNING/Running&quot;, "
                     r"&quot;CRASHED/Crashed&quot;\]</code>", html)


def test_the_report_can_show_a_mutate_runs_table(tmp_path, capsys):
    figures = {"prefect_version": "3.9.1", "results": [
        {"mutant": "retry-after-crash", "what": "a retry after <Crashed>", "rows": ["kill-a"], "equivalent": False,
         "status": "caught", "verdicts": {"kill-a@local": "fail"}, "reasons": {"kill-a@local": ["entered AwaitingRetry"]},
         "seconds": 30.0, "note": ""},
        {"mutant": "gone", "what": "x", "rows": ["kill-a"], "equivalent": False, "status": "does not apply",
         "verdicts": {}, "reasons": {}, "seconds": 0.1, "note": "flow_engine.py: the text is found 0 times"}]}
    (tmp_path / "m.json").write_text(json.dumps(figures))
    j = journal(tmp_path / "j.jsonl", entry())
    assert main(["report", str(j), "-o", str(tmp_path / "r.html"), "--mutants", str(tmp_path / "m.json")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "<h2>Seeded regressions</h2>" in html and "a retry after &lt;Crashed&gt;" in html
    assert "<td class='t-pass'>caught</td>" in html and "the text is found 0 times" in html
    (tmp_path / "bad.json").write_text("[]")
    assert main(["report", str(j), "-o", str(tmp_path / "r2.html"), "--mutants", str(tmp_path / "bad.json")]) == 2
    assert "not a mutate run's figures" in capsys.readouterr().err
    assert "Seeded regressions" not in htmlreport.write([j], tmp_path / "r3.html")[0].read_text()


def test_a_cell_says_what_its_claim_did_and_how_fast_prefect_detected_and_a_zero_is_neutral(tmp_path):
    j = journal(tmp_path / "j.jsonl", entry(ttd=0.13, claim={"text": "retries kick in", "source": "docs"},
                                           claim_verdict="refuted"),
                entry(scenario="oom-b", kinds=("oom",), ttd=None))
    page = htmlreport.render(build([j]))
    cells = re.findall(r'<td class="cell v-pass".*?</td>', page)
    assert len(cells) == 2
    assert "claim <b>refuted</b>" in cells[0] and "detected 0.1 s" in cells[0]
    assert "claim" not in cells[1] and "detected" not in cells[1]  # no claim, nothing detected: nothing said
    assert '<span class="v-zero">0 FAIL</span>' in page and '<span class="v-pass">2 pass</span>' in page


def test_the_page_opens_with_what_the_run_found_and_a_refuting_case_is_open(tmp_path):
    j = journal(tmp_path / "j.jsonl", entry(claim={"text": "retries kick in", "source": "docs"}, claim_verdict="refuted"),
                entry(scenario="oom-b", kinds=("oom",), outcome="fail"), entry(scenario="quiet-c"))
    page = htmlreport.render(build([j]))
    found = page[page.index("What this run found"):page.index("id='matrix-h'")]
    assert "<strong>Refuted</strong>: “retries kick in”" in found and "href='#" in found
    assert "main run: run_count 1, expected 2" in found  # why, in a word
    assert "oom-b on local</a> (FAIL)" in found and "quiet-c" not in found
    opened = re.findall(r'<details class="scenario" id="([^"]+)"[^>]*\bopen>', page)
    assert any("kill-a" in i for i in opened) and any("oom-b" in i for i in opened)
    assert not any("quiet-c" in i for i in opened)
    assert "What this run found" not in htmlreport.render(build([journal(tmp_path / "k.jsonl", entry())]))


# -- the timeline --------------------------------------------------------------------------------
def _late_fault(kinds=("kill",), at=40.0, heal=None, target="flow-run", **extra):
    """A case whose fault comes late (at 40 s of about 50): most of it is start-up."""
    e = entry(kinds=kinds, **extra)
    for f in e["history"]["faults"]:
        f.update(injected_at=T + at, healed_at=None if heal is None else T + at + heal, target=target)
    e["history"]["flow_runs"][0]["states"][-1]["timestamp"] = T + at + 8
    return e


def _x_of(svg_text, cls):
    return [float(m) for m in re.findall(rf'<line class="{cls}" x1="([0-9.]+)"', svg_text)]


def test_a_late_faults_timeline_folds_the_start_up_and_unfolds_on_click():
    from harness.report import svg

    e = _late_fault()
    (case,) = build_entries(e)
    folded, full = svg.timeline_svg(case, folded=True), svg.timeline_svg(case, folded=False)
    assert 'class="timeline folded"' in folded and "data-unfold" in folded and "start-up 37s" in folded
    (inject,) = _x_of(folded, "inject")
    assert inject > svg.LEFT + svg.FOLD_WIDTH  # the fault is in the part drawn at full scale
    assert inject - (svg.LEFT + svg.FOLD_WIDTH) < 0.3 * (svg.RIGHT - svg.LEFT)  # ...a few seconds after its start
    (inject_full,) = _x_of(full, "inject")
    assert inject_full > 0.7 * svg.RIGHT and "data-fold" in full and "data-unfold" not in full
    page = svg.timeline_html(case)
    assert page.index("timeline folded") < page.index('<div class="tl-full" hidden>')
    # an early fault has nothing worth folding: one drawing, at full scale
    (early,) = build_entries(_late_fault(at=4.0))
    assert svg.fold_point(early) is None and svg.timeline_html(early).startswith("<svg")


def test_fault_windows_are_spans_in_their_targets_lane_and_instant_faults_marks():
    from harness.report import svg

    (restart,) = build_entries(_late_fault(("restart-server",), heal=30, target="server"))
    (api,) = build_entries(_late_fault(("api-error",), target="api"))
    (db,) = build_entries(_late_fault(("restart-database",), heal=5, target="database"))
    (kill,) = build_entries(_late_fault())
    drawn = {name: svg.timeline_svg(c) for name, c in
             (("restart", restart), ("api", api), ("db", db), ("kill", kill))}
    lanes = {name: re.findall(r'class="lane-label" x="4" y="([0-9.]+)">([^<]+)<', s) for name, s in drawn.items()}
    assert [label for _, label in lanes["kill"]] == ["flow main r1", "task step-1", "task step-2", "worker", "server"]
    assert [label for _, label in lanes["db"]][-1] == "database"
    for name, lane, label in (("restart", "server", "restart-server 30s"), ("api", "server", "api-error"),
                              ("db", "database", "restart-database 5s")):
        y = float(dict((lbl, yy) for yy, lbl in lanes[name])[lane]) - 14
        window = re.search(r'<rect class="fault-window" data-kind="[^"]+" x="([0-9.]+)" y="([0-9.]+)" '
                           r'width="([0-9.]+)"', drawn[name])
        assert window and float(window[2]) == y + 1, name  # in its target's lane
        assert f">{label}</text>" in drawn[name]
    width = lambda s: float(re.search(r'class="fault-window"[^>]* width="([0-9.]+)"', s)[1])  # noqa: E731
    assert width(drawn["api"]) > width(drawn["db"])  # unhealed: to the end of the case
    assert "fault-window" not in drawn["kill"] and ">kill</text>" in drawn["kill"]


@pytest.mark.parametrize("x", [150.0, 600.0, 960.0, 985.0])
def test_a_label_stays_inside_the_drawing_wherever_its_point_is(x):
    from harness.report import svg

    for text in ("detected in 0.13s", "restart-database 120s", "a" * 200):
        out = svg.placed(x, 20, text)
        at = float(re.search(r'x="([0-9.]+)"', out)[1])
        anchor_ = re.search(r'text-anchor="(\w+)"', out)[1]
        shown = re.search(r">([^<]*)</text>", out)[1]
        left, right = (at, at + svg.text_width(shown)) if anchor_ == "start" else (at - svg.text_width(shown), at)
        assert svg.LEFT <= left and right <= svg.RIGHT + 20, (x, text, out)


def test_lanes_for_task_workers_and_a_long_task_name_is_clipped_with_its_title():
    from harness.report import svg

    e = _late_fault()
    e["history"]["infrastructure"] = [{"task_worker": "replica-1", "exit_code": None}]
    e["history"]["ledger"][0]["task"] = "load-the-warehouse-table-from-the-staging-area"
    (case,) = build_entries(e)
    drawn = svg.timeline_svg(case)
    assert ">task workers<" in drawn and "…<title>executions of task load-the-warehouse-table" in drawn


def build_entries(*lines):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        report = build([journal(Path(d) / "j.jsonl", *lines)])
    assert not report.problems, report.problems
    return report.entries
