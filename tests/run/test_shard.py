"""Shards: the split (every case in exactly one shard, balanced on real durations), where each
case's time comes from, the pytest option and the CLI, and the merge of shard journals."""

import json
import time

import pytest

from harness.cli import main
from harness.model.fields import BACKENDS
from harness.model.matrix import load_matrix, select
from harness.paths import ROOT, SCENARIOS_DIR
from harness.report.data import build
from harness.run import shard as shard_mod

from journal_lines import entry, journal

# Real durations: the whole local matrix, one case at a time, as the main job runs it (Prefect
# 3.9.1, this repository's own machine), cut to the fields a split reads.
REAL = ROOT / "tests" / "data" / "durations-local-3.9.1.jsonl"


@pytest.fixture(scope="module")
def cases():
    return select(load_matrix(SCENARIOS_DIR), None, list(BACKENDS))


def line(scenario, backend, seconds, version="3.9.1", at=1000.0):
    return {"scenario": scenario, "backend": backend, "prefect_version": version, "started_at": at,
            "finished_at": at + seconds, "timing": {"turn_started_at": at}}


def write(path, *lines):
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.mark.parametrize("text", ["1/1", "3/8", "8/8"])
def test_a_shard_is_i_of_n(text):
    assert str(shard_mod.parse(text)) == text


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", "-1/2", "", "1/2/3"])
def test_anything_else_is_an_error_that_says_what_is_wanted(text):
    with pytest.raises(ValueError, match="give I/N with 1 <= I <= N"):
        shard_mod.parse(text)


@pytest.mark.parametrize("parts", range(1, 9))
def test_every_case_lands_in_exactly_one_shard(cases, parts):
    for journals in ([], [REAL]):  # at their bounds, and at their measured times
        estimates = shard_mod.estimate(cases, journals, "3.9.1")
        groups = shard_mod.partition({k: e.seconds for k, e in estimates.items()}, parts)
        placed = [k for g in groups for k in g]
        assert len(groups) == parts
        assert sorted(placed) == sorted((s.id, b) for s, b in cases)  # each once, none lost


@pytest.mark.parametrize("parts", range(1, 9))
def test_the_longest_shard_is_within_ten_percent_of_the_ideal_on_real_durations(cases, parts):
    measured = shard_mod.measured([REAL], "3.9.1")
    ran = [c for c in cases if (c[0].id, c[1]) in measured]  # rows added since are at their bounds
    assert len(ran) >= 50
    seconds = {k: e.seconds for k, e in shard_mod.estimate(ran, [REAL], "3.9.1").items()}
    longest = max(shard_mod.loads(shard_mod.partition(seconds, parts), seconds))
    assert longest <= 1.10 * shard_mod.ideal(seconds, parts), (parts, longest, shard_mod.ideal(seconds, parts))


def test_the_split_is_the_same_whatever_order_the_cases_come_in(cases):
    seconds = {k: e.seconds for k, e in shard_mod.estimate(cases, [REAL], "3.9.1").items()}
    shuffled = dict(sorted(seconds.items(), key=lambda kv: hash(kv[0][0][::-1])))
    assert shard_mod.partition(seconds, 4) == shard_mod.partition(shuffled, 4)
    assert shard_mod.fingerprint(shard_mod.partition(seconds, 4)) != shard_mod.fingerprint(shard_mod.partition(seconds, 3))


def test_a_case_takes_its_time_from_the_newest_journal_that_ran_it_else_its_bound(tmp_path, cases):
    old = write(tmp_path / "journal-20260101T000000Z.jsonl", line("kill-flow-process", "local", 50.0),
                line("cancel-flow-run", "local", 40.0))
    new = write(tmp_path / "journal-20260201T000000Z.jsonl", line("kill-flow-process", "local", 20.0),
                line("kill-flow-process", "local", 30.0),  # repeats: their median
                line("cancel-flow-run", "local", 99.0, version="3.8.8"))  # another version: only a fallback
    write(tmp_path / "notes.txt", line("kill-flow-process", "local", 1.0))  # not a journal
    (tmp_path / "journal-20260301T000000Z.jsonl").write_bytes(b"\x00\xff not json\n")  # unreadable: skipped
    found = shard_mod.estimate(cases, shard_mod.journal_files([tmp_path]), "3.9.1")
    assert found[("kill-flow-process", "local")] == shard_mod.Estimate(25.0, str(new))
    assert found[("cancel-flow-run", "local")] == shard_mod.Estimate(40.0, str(old))
    scenario = next(s for s, b in cases if s.id == "freeze-healed")
    assert found[("freeze-healed", "local")] == shard_mod.Estimate(
        scenario.expect.for_backend("local", "3.9.1").settle_within_seconds + scenario.quiet_seconds, "bound")
    assert shard_mod.journal_files([tmp_path], exclude=new)[0].name == "journal-20260301T000000Z.jsonl"


def test_a_plan_records_its_shard_and_fingerprint(cases):
    plans = [shard_mod.plan(shard_mod.Shard(i, 3), cases, [REAL], "3.9.1") for i in (1, 2, 3)]
    records = [p.record() for p in plans]
    assert len({r["plan"] for r in records}) == 1
    assert sorted(c for r in records for c in r["cases"]) == sorted(f"{s.id}@{b}" for s, b in cases)
    assert plans[1].describe().startswith(f"shard 2/3: {len(plans[1].mine)} of {len(cases)} cases, about ")


# --- the pytest option and the CLI --------------------------------------------------------------

pytest_plugins = ["pytester"]

ROW = """
- id: {id}
  title: t
  backends: [local]
  workload: {{flow: pipeline}}
  expect: {{final: COMPLETED, settle_within_seconds: {bound}}}
"""


@pytest.fixture
def project(pytester, repo_root):
    pytester.path.joinpath("test_matrix_copy.py").write_text((repo_root / "tests" / "test_chaos_matrix.py").read_text())
    (pytester.path / "scenarios").mkdir()
    (pytester.path / "scenarios" / "a.yaml").write_text(
        "".join(ROW.format(id=f"case-{n}", bound=b) for n, b in enumerate([300, 200, 100, 100, 90, 10])))
    return pytester


def collected(result) -> set[str]:
    return {line.split("[")[1].rstrip("]") for line in result.stdout.lines if "test_scenario[" in line}


def test_the_shards_collect_complementary_cases(project):
    journals = project.path / "journals"
    journals.mkdir()
    parts = []
    for i in (1, 2, 3):
        result = project.runpytest("--collect-only", "-q", "-m", "chaos", "--chaos-shard", f"{i}/3",
                                   "--chaos-durations", str(journals), "-p", "no:cacheprovider")
        assert result.ret == 0
        parts.append(collected(result))
    assert set().union(*parts) == {f"case-{n}@local" for n in range(6)}
    assert sum(map(len, parts)) == 6
    assert parts[0] == {"case-0@local"}  # the longest bound alone: 300 s against 200+10 and 100+100+90


def test_a_shard_with_no_case_is_not_a_failure(project):
    result = project.runpytest("-m", "chaos", "--chaos-shard", "8/8", "--chaos-durations", str(project.path),
                               "-p", "no:cacheprovider")
    assert result.ret == 0
    assert "6 deselected" in result.stdout.str()


def test_a_malformed_shard_is_a_usage_error(project):
    result = project.runpytest("--collect-only", "--chaos-shard", "4/3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--chaos-shard: '4/3' is not a shard: give I/N with 1 <= I <= N*"])


def test_run_refuses_a_malformed_shard_before_pytest_starts(capsys):
    assert main(["run", "--shard", "two/three"]) == 2  # a usage error
    assert "--shard: 'two/three' is not a shard" in capsys.readouterr().err


# --- the merge: the report over the shards' journals --------------------------------------------

def sharded(e, index, of, plan, cases):
    return {**e, "shard": {"index": index, "of": of, "plan": plan, "cases": cases}}


def test_the_shards_journals_make_the_unsharded_matrix(tmp_path):
    every = [entry(scenario=f"s{n}", at=n, outcome="fail" if n == 2 else "pass") for n in range(5)]
    whole = build([journal(tmp_path / "whole.jsonl", *every)])
    split = {1: ["s0@local", "s3@local"], 2: ["s1@local", "s4@local"], 3: ["s2@local"]}
    paths = [journal(tmp_path / f"shard{i}.jsonl", *[sharded(e, i, 3, "p1", cases) for e in every
                                                     if f"{e['scenario']}@local" in cases])
             for i, cases in split.items()]
    merged = build(paths)
    assert merged.problems == []
    assert {k: c.summary for k, c in merged.cells.items()} == {k: c.summary for k, c in whole.cells.items()}
    out = tmp_path / "merged.jsonl"
    assert main(["report", *map(str, paths), "-o", str(tmp_path / "r.html"), "--journal-out", str(out)]) == 0
    assert [json.loads(x)["scenario"] for x in out.read_text().splitlines()] == ["s0", "s1", "s2", "s3", "s4"]


def test_the_merge_names_what_a_split_run_lacks(tmp_path):
    cases1, cases2 = ["a@local", "b@local"], ["c@local"]
    first = journal(tmp_path / "1.jsonl", sharded(entry(scenario="a"), 1, 3, "p1", cases1))  # b never finished
    second = journal(tmp_path / "2.jsonl", sharded(entry(scenario="c"), 2, 3, "p1", cases2),
                     sharded(entry(scenario="a", at=5), 2, 3, "p1", cases2))  # a ran here too
    other = journal(tmp_path / "3.jsonl", sharded(entry(scenario="d"), 3, 3, "p2", ["d@local"]))
    problems = build([first, second, other]).problems
    assert "split run p1: shard(s) 3/3 missing: their cases are not in this report" in problems
    assert "split run p1: 1 planned case(s) did not finish: b@local" in problems
    assert "split run p1: case(s) ran in more than one shard: a@local" in problems
    assert any(p.startswith("shards of 3 from 2 different plans (p1, p2)") for p in problems)


def test_a_shard_journal_counts_only_once_merged_so_shards_run_one_after_another_plan_alike(tmp_path, cases):
    """Shard 2 runs after shard 1 wrote its journal beside the earlier ones: it must plan as shard 1
    did.  Once the shards are merged into one journal, their times count."""
    write(tmp_path / "journal-20260101T000000Z.jsonl", line("kill-flow-process", "local", 50.0))
    first = shard_mod.plan(shard_mod.Shard(1, 2), cases, shard_mod.journal_files([tmp_path]), "3.9.1")
    mark = {"of": 2, "plan": "p", "cases": []}
    write(tmp_path / "journal-20260102T000000Z.jsonl", {**line("kill-flow-process", "local", 5.0),
                                                        "shard": {**mark, "index": 1}})
    second = shard_mod.plan(shard_mod.Shard(2, 2), cases, shard_mod.journal_files([tmp_path]), "3.9.1")
    assert first.groups == second.groups
    write(tmp_path / "journal-20260103T000000Z.jsonl", *[{**line("kill-flow-process", "local", 5.0), "shard": {**mark, "index": i}}
                                                         for i in (1, 2)])
    assert shard_mod.measured(shard_mod.journal_files([tmp_path]), "3.9.1")[("kill-flow-process", "local")].seconds == 5.0


def test_the_merge_takes_directories_and_keeps_the_logs_linked(tmp_path):
    """The nightly's merge: the shards' journals downloaded into a directory, each case's kept logs
    beside its shard's journal; the merged journal, named after the run's start, links them still."""
    shards = tmp_path / "shards"
    (shards / "logs" / "journal-shard2" / "kill-b-123").mkdir(parents=True)
    failed = {**entry(scenario="b", at=10, outcome="fail"), "logs": {"dir": "logs/journal-shard2/kill-b-123",
                                                                     "files": ["worker.log"], "problems": []}}
    journal(shards / "journal-shard1.jsonl", sharded(entry(scenario="a"), 1, 2, "p", ["a@local"]))
    journal(shards / "journal-shard2.jsonl", sharded(failed, 2, 2, "p", ["b@local"]))
    reports = tmp_path / "reports"
    reports.mkdir()
    journal(reports / "journal-20200101T000000Z.jsonl", entry(scenario="a", at=-1e6))  # an earlier night
    assert main(["report", str(shards), "-o", str(reports / "r.html"), "--previous", str(reports),
                 "--journal-out", str(reports), "--keep-journals", "1"]) == 0
    (merged,) = reports.glob("journal-*.jsonl")  # the earlier night's pruned: one kept
    assert merged.name == time.strftime("journal-%Y%m%dT%H%M%SZ.jsonl", time.gmtime(entry()["started_at"]))
    lines = [json.loads(x) for x in merged.read_text().splitlines()]
    logs = next(x["logs"] for x in lines if x["scenario"] == "b")
    assert (reports / logs["dir"]).resolve() == (shards / "logs" / "journal-shard2" / "kill-b-123").resolve()


def test_a_journal_out_ending_in_a_slash_is_a_directory_made_for_it(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    journal(shards / "journal-shard1.jsonl", sharded(entry(scenario="a"), 1, 1, "p", ["a@local"]))
    out = tmp_path / "merged"
    assert main(["report", str(shards), "-o", str(tmp_path / "r.html"), "--journal-out", f"{out}/"]) == 0
    assert out.is_dir() and [p.name.startswith("journal-") for p in out.iterdir()] == [True]
