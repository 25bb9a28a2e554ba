"""``python -m harness``: validate (exit 0 on a good matrix; errors and non-zero on a bad one), prune,
kind config, and run --repeat's summary."""

import json
import subprocess
import sys

import pytest


def validate(*paths):
    return subprocess.run([sys.executable, "-m", "harness", "validate", *map(str, paths)],
                          capture_output=True, text=True, timeout=60)


def test_validate_the_repository_matrix(repo_root):
    result = validate(repo_root / "scenarios")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")


def test_validate_reports_every_error_and_fails(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "- id: one\n  title: t\n  backends: [local]\n  workload: {flow: pipeline}\n"
        "  faults: [{kind: kill, when: {after_seconds: -1}}]\n"
        "  expect: {final: CRASHED}\n")
    result = validate(tmp_path)
    assert result.returncode == 2  # a matrix error
    lines = result.stderr.splitlines()
    assert any(l.endswith("bad.yaml: scenario 'one': faults.0.when.after_seconds: Input should be greater than or equal to 0") for l in lines), lines
    assert any("scenario 'one': expect.settle_within_seconds: Field required" in l for l in lines), lines
    assert lines[-1] == "2 error(s)"


def test_validate_missing_path(tmp_path):
    result = validate(tmp_path / "nope")
    assert result.returncode == 2 and "no such file or directory" in result.stderr


def test_prune_keeps_the_newest_journals_their_reports_and_logs(tmp_path):
    from harness.command_run import prune_journals

    stamps = ["20261101T000000Z", "20261120T000000Z", "20261121T000000Z", "20261122T000000Z"]
    for s in stamps:
        (tmp_path / f"journal-{s}.jsonl").write_text("{}\n")
        (tmp_path / f"report-{s}.html").write_text("<html>")
        kept = tmp_path / "logs" / f"journal-{s}" / "kill-abc"  # a failed case's logs
        kept.mkdir(parents=True)
        (kept / "worker.log").write_text("w")
    (tmp_path / "notes.txt").write_text("mine")
    removed = prune_journals(tmp_path, 2)
    assert sorted(p.name for p in removed) == ["journal-20261101T000000Z", "journal-20261101T000000Z.jsonl",
                                               "journal-20261120T000000Z", "journal-20261120T000000Z.jsonl",
                                               "report-20261101T000000Z.html", "report-20261120T000000Z.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "journal-20261121T000000Z.jsonl", "journal-20261122T000000Z.jsonl", "logs", "notes.txt",
        "report-20261121T000000Z.html", "report-20261122T000000Z.html"]
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["journal-20261121T000000Z", "journal-20261122T000000Z"]
    assert prune_journals(tmp_path, 0) and (tmp_path / "journal-20261122T000000Z.jsonl").exists()  # never the newest


def test_kind_config_prints_a_cluster_config_with_the_harness_mounts(tmp_path, repo_root):
    import yaml

    shared = tmp_path / "shared"
    out = subprocess.run([sys.executable, "-m", "harness", "kind", "config", "--name", "dev", "--shared-dir", str(shared)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--chaos-allow-context kind-dev" in out.stdout and shared.is_dir()
    config = yaml.safe_load(out.stdout)
    assert config["name"] == "dev" and "&" not in out.stdout  # no YAML anchors: kind's users read it
    mounts = {m["hostPath"]: m for m in config["nodes"][1]["extraMounts"]}
    assert set(mounts) == {str(repo_root / "flows"), str(repo_root / "harness"), str(shared)}
    assert mounts[str(shared)]["readOnly"] is False and mounts[str(repo_root / "flows")]["readOnly"] is True


def test_repeat_summary_counts_each_case_over_the_rounds_and_marks_disagreement(tmp_path):
    from harness.command_run import repeat_summary

    def line(scenario, outcome, at, backend="local"):
        return json.dumps({"scenario": scenario, "backend": backend, "started_at": at, "verdict": {"outcome": outcome}})

    journal = tmp_path / "j.jsonl"
    journal.write_text("\n".join([
        line("kill-a", "fail", 5),  # an earlier run into the same journal: not one of these rounds
        line("kill-a", "pass", 11), line("kill-b", "pass", 12), line("kill-a", "pass", 21), line("kill-b", "fail", 22),
        line("kill-a", "pass", 31), line("kill-b", "pass", 32), line("kill-b", "unknown", 33, backend="docker"),
    ]) + "\n")
    assert repeat_summary(journal, since=10, rounds=3).splitlines() == [
        f"repeats: 3 round(s) in {journal}",
        "  kill-a@local: 3 of 3 pass",
        "  kill-b@docker: 1 of 1 unknown",
        "  kill-b@local: 2 of 3 pass, 1 of 3 fail  (the rounds disagree)",
    ]


def test_repeat_summary_names_the_rounds_that_disagree(tmp_path):
    from harness.command_run import repeat_summary

    def line(outcome, at, index):
        return json.dumps({"scenario": "kill-a", "backend": "local", "started_at": at,
                           "verdict": {"outcome": outcome}, "round": {"index": index, "of": 5}})

    journal = tmp_path / "j.jsonl"
    journal.write_text("\n".join([line("pass", 11, 1), line("fail", 21, 2), line("pass", 31, 3), line("unknown", 32, 3),
                                   line("fail", 41, 4), line("pass", 51, 5)]) + "\n")  # round 3 ran it twice
    assert repeat_summary(journal, since=10, rounds=5).splitlines()[1] == (
        "  kill-a@local: 3 of 6 pass, 2 of 6 fail, 1 of 6 unknown"
        "  (the rounds disagree: fail in round 2, 4; unknown in round 3)")


def test_a_malformed_repeat_round_is_a_usage_error_before_anything_runs(tmp_path, repo_root):
    import os

    done = subprocess.run([sys.executable, "-m", "harness", "run", "--journal", str(tmp_path / "j.jsonl"),
                           "-p", "no:cacheprovider"], cwd=repo_root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CHAOS_REPEAT_ROUND": "3"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "CHAOS_REPEAT_ROUND='3': expected 'k/N'" in done.stderr
    assert not (tmp_path / "j.jsonl").exists()


def test_repeat_must_be_at_least_one(capsys):
    from harness.cli import main

    assert main(["run", "--repeat", "0"]) == 2
    assert "--repeat must be at least 1, got 0" in capsys.readouterr().err


def test_repeat_stops_at_a_round_with_a_usage_error(tmp_path, repo_root):
    """Exit 2 (a usage error pytest finds in the round, here --chaos-concurrency 0) ends the
    repeats at once, with that status: it does not get better by asking again.  A scenario that
    does not exist is refused before any round starts."""
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--repeat", "3", "--scenario", "kill-flow-process",
                           "--journal", str(tmp_path / "j.jsonl"), "-p", "no:cacheprovider", "--chaos-concurrency", "0"],
                          cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "round 1 of 3" in done.stdout and "round 2 of 3" not in done.stdout
    assert "--chaos-concurrency must be at least 1, got 0" in done.stderr
    early = subprocess.run([sys.executable, "-m", "harness", "run", "--repeat", "3", "--scenario", "no-such-row",
                            "--journal", str(tmp_path / "j.jsonl")], cwd=repo_root, capture_output=True, text=True,
                           timeout=120)
    assert early.returncode == 2 and "round 1" not in early.stdout
    assert "--scenario 'no-such-row' matches no scenario" in early.stderr


SUBCOMMANDS = ["validate", "run", "list", "report", "image", "bench", "explore", "kind", "findings", "mutate",
               "export-ctk"]


def test_every_subcommand_says_what_it_does_what_it_writes_and_its_exit_codes(capsys):
    import pytest

    from harness.cli import main

    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exited:
            main([name, "--help"])
        assert exited.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "Writes:" in text and "exit codes: 0 all held, 1 a verdict failed, 2 a usage or matrix error, " \
                                     "3 infrastructure unavailable" in text, (name, text)


def test_pytest_codes_become_the_clis():
    from harness.command_run import FAILED, INTERRUPTED, OK, UNAVAILABLE, USAGE, exit_code

    assert exit_code(0) == OK and exit_code(1) == FAILED and exit_code(2) == INTERRUPTED
    assert exit_code(4) == USAGE and exit_code(5) == USAGE
    assert exit_code(0, {"docker"}) == UNAVAILABLE  # every case that ran passed, docker's skipped
    assert exit_code(1, {"docker"}) == FAILED  # a failed verdict says more than a missing backend


def test_the_run_command_counts_the_backends_that_could_not_start():
    from types import SimpleNamespace

    from harness.command_run import UnavailableSkips

    skips = UnavailableSkips()
    for skipped, message in [(True, "Skipped: backend kind unavailable: no kind cluster can start here"),
                             (True, "Skipped: some other reason"), (False, "")]:
        skips.pytest_runtest_logreport(SimpleNamespace(skipped=skipped, longrepr=("f.py", 1, message)))
    assert skips.backends == {"kind"}


def test_the_console_script_is_the_same_cli(repo_root):
    """``chaos-harness``, installed beside the interpreter by the package, runs the same CLI."""
    from pathlib import Path

    script = Path(sys.executable).parent / "chaos-harness"
    assert script.is_file(), f"{script}: not installed (pyproject's [project.scripts])"
    done = subprocess.run([str(script), "validate", "scenarios"], cwd=repo_root, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("ok: "), done.stderr
    usage = subprocess.run([str(script), "validate"], cwd=repo_root, capture_output=True, text=True)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: chaos-harness validate")


def test_an_unwritable_journal_is_one_usage_error_before_anything_runs(tmp_path, capsys):
    from harness.cli import main

    blocked = tmp_path / "file"
    blocked.write_text("")
    assert main(["run", "--journal", str(blocked / "journal.jsonl")]) == 2  # its directory is a file
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be written: its directory cannot be made" in err
    assert main(["run", "--journal", str(tmp_path)]) == 2
    assert "it is a directory" in capsys.readouterr().err


def test_what_follows_a_double_dash_goes_to_pytest_as_it_is(tmp_path, capsys):
    """`run --scenario X -- -x` as the README says: -x reaches pytest as an option, not a path."""
    from harness.cli import main

    code = main(["run", "--scenario", "no-such-row", "--journal", str(tmp_path / "j.jsonl"), "--", "-x",
                 "-p", "no:cacheprovider"])
    out = capsys.readouterr()
    assert code == 2 and "file or directory not found" not in out.out + out.err
    assert "'no-such-row' matches no scenario" in out.err


def test_a_mistyped_selection_is_named_in_the_users_words(capsys):
    from harness.cli import main

    assert main(["run", "--scenario", "kill-flow-proces"]) == 2
    err = capsys.readouterr().err
    assert "--scenario 'kill-flow-proces' matches no scenario" in err and "did you mean kill-flow-process" in err
    assert "--chaos-scenario" not in err
    assert main(["list", "--scenario", "evict-flow-pod"]) == 2
    assert "it does on kind: add --backend kind" in capsys.readouterr().err
    assert main(["run", "--tier", "quick", "--scenario", "kill-flow-process"]) == 2
    assert "it is not in the quick tier" in capsys.readouterr().err
    import pytest

    with pytest.raises(SystemExit) as bad:
        main(["run", "--backend", "bogus"])
    err = capsys.readouterr().err
    assert bad.value.code == 2 and "argument --backend: invalid choice: 'bogus'" in err and "did you mean" not in err
    for argv, near in ((["run", "--backend", "dockr"], "'docker'"), (["list", "--tier", "quik"], "'quick'"),
                       (["lst"], "'list'")):
        with pytest.raises(SystemExit) as bad:
            main(argv)
        assert bad.value.code == 2 and f"did you mean {near}?" in capsys.readouterr().err, argv


def test_list_prints_the_cases_a_run_would_run(capsys):
    from harness.cli import main
    from harness.model.matrix import load_matrix, select
    from harness.paths import SCENARIOS_DIR

    assert main(["list", "--tier", "quick", "--backend", "local", "--backend", "docker"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cases = select(load_matrix(SCENARIOS_DIR), None, ["local", "docker"], "quick")
    assert [line.split()[0] for line in lines[1:-1]] == [f"{s.id}@{b}" for s, b in cases]
    assert lines[-1].startswith(f"{len(cases)} case(s)")
    row = next(line for line in lines if line.startswith("oom-container@docker"))
    assert " oom " in f" {row.split()[1]} " and '"Prefect reports an out-of-memory kill as such"' in row


@pytest.mark.integration
def test_a_runs_console_tells_each_case_in_plain_lines_with_no_dots_between(tmp_path, repo_root):
    """A real case through `python -m harness run`, read as a CI log reads it (a pipe): its start,
    its fault and its end, the count, the summary; no pytest dot or file name breaking into them,
    no control character."""
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--scenario", "kill-flow-process",
                           "--journal", str(tmp_path / "j.jsonl"), "--", "-p", "no:cacheprovider"],
                          cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("  start   kill-flow-process@local"))
    fault = next(i for i, l in enumerate(lines) if l.startswith("  fault   kill-flow-process@local  kill -> flow-run at +"))
    end = next(i for i, l in enumerate(lines) if l.startswith("  end     kill-flow-process@local  PASS, final CRASHED"))
    assert start < fault < end and lines[end + 1].startswith("[1/1] ")
    assert "journal line 1" in lines[end]
    assert not [l for l in lines if l.strip() in (".", "F") or l.startswith("harness/matrix_test.py")], done.stdout
    assert "1 passed" in done.stdout and "\x1b" not in done.stdout


def test_every_option_of_every_subcommand_has_help_text(monkeypatch):
    import argparse

    from harness import cli

    built = {}

    def grab(self, args=None, namespace=None):
        built["parser"] = self
        raise SystemExit(0)

    monkeypatch.setattr(cli.Parser, "parse_known_args", grab)
    with pytest.raises(SystemExit):
        cli.main(["list"])
    (subs,) = [a for a in built["parser"]._actions if isinstance(a, argparse._SubParsersAction)]
    assert sorted(subs.choices) == sorted(SUBCOMMANDS)
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, sub in subs.choices.items()
               for a in sub._actions if not a.help]
    assert missing == [], missing
