"""The pytest plugin, through pytester: validation before anything runs, ids, selection."""

import shutil

import pytest

pytest_plugins = ["pytester"]

ROW = """
- id: {id}
  title: t
  backends: [local, docker]
  workload: {{flow: pipeline}}
  expect: {{final: COMPLETED, settle_within_seconds: 30}}
"""


@pytest.fixture
def project(pytester, repo_root):
    shutil.copy(repo_root / "tests" / "test_chaos_matrix.py", pytester.path / "test_matrix_copy.py")
    (pytester.path / "scenarios").mkdir()
    (pytester.path / "scenarios" / "a.yaml").write_text(ROW.format(id="kill-one") + ROW.format(id="kill-two")
                                                        + ROW.format(id="freeze-one"))
    return pytester


def test_cases_have_readable_ids_and_the_chaos_marker(project):
    result = project.runpytest("--collect-only", "-q", "-m", "chaos")
    result.stdout.fnmatch_lines(["*test_scenario?kill-one@local?", "*test_scenario?kill-two@local?",
                                 "*test_scenario?freeze-one@local?", "3 tests collected*"])


def test_selection_by_glob_and_backend(project):
    result = project.runpytest("--collect-only", "-q", "--chaos-scenario", "kill-*",
                               "--chaos-backend", "local", "--chaos-backend", "docker")
    # one at a time, each backend's cases together (a system is retired after its last case)
    result.stdout.fnmatch_lines(["*kill-one@local*", "*kill-two@local*", "*kill-one@docker*",
                                 "*kill-two@docker*", "4 tests collected*"])
    assert "freeze-one" not in result.stdout.str()


def test_a_scenario_pattern_that_selects_nothing_is_a_usage_error(project):
    result = project.runpytest("--collect-only", "-q", "--chaos-scenario", "kill-*", "--chaos-scenario", "kil-one")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--chaos-scenario 'kil-one' matches no scenario of *scenarios"])
    (project.path / "scenarios" / "b.yaml").write_text(ROW.format(id="pod-one").replace("[local, docker]", "[kind]"))
    result = project.runpytest("--collect-only", "-q", "--chaos-scenario", "pod-*")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'pod-[*]' matches no scenario of *scenarios on local (it does on kind: add --chaos-backend)"])


def test_not_chaos_deselects_the_matrix(project):
    result = project.runpytest("--collect-only", "-q", "-m", "not chaos")
    assert "3 deselected" in result.stdout.str()


def test_invalid_matrix_stops_pytest_before_anything_runs(project):
    bad = project.path / "scenarios" / "b.yaml"
    bad.write_text(ROW.format(id="bad-one").replace("final: COMPLETED", "final: EXPLODED"))
    result = project.runpytest("-m", "chaos")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*b.yaml: scenario 'bad-one': expect.final: Input should be*"])
    assert "passed" not in result.stdout.str() and "failed" not in result.stdout.str()


def test_unknown_backend_option_is_refused(project):
    result = project.runpytest("--chaos-backend", "moon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_the_interlock_stops_pytest_before_anything_runs(pytester):
    """--chaos-kube-context without --chaos-allow-context naming it: a usage error, no test runs."""
    pytester.makepyfile(test_x="def test_x():\n    raise AssertionError('ran')\n")
    result = pytester.runpytest("--chaos-kube-context", "kind-prod", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*refusing Kubernetes context 'kind-prod'*--chaos-allow-context kind-prod*"])
    assert "ran" not in result.stdout.str()


def test_concurrency_orders_cases_longest_first(project):
    (project.path / "scenarios" / "b.yaml").write_text(ROW.format(id="long-one").replace(
        "settle_within_seconds: 30", "settle_within_seconds: 300"))
    result = project.runpytest("--collect-only", "-q", "--chaos-concurrency", "4")
    lines = [l for l in result.stdout.lines if "test_scenario[" in l]
    assert "long-one@local" in lines[0], lines


@pytest.mark.parametrize("args, words", [
    (["--chaos-concurrency", "0"], "--chaos-concurrency must be at least 1"),
    (["--chaos-concurrency", "2", "-n", "2"], "use one or the other"),
])
def test_bad_concurrency_is_refused_before_anything_runs(project, args, words):
    result = project.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{words}*"])


def test_a_matrix_of_your_own_runs_as_tests_without_a_file_of_the_harness(pytester):
    """A project with its own flow and matrix, no test file: --chaos-matrix collects the test that
    ships with the plugin, once, even beside a file that imports it."""
    (pytester.path / "pipelines").mkdir()
    (pytester.path / "pipelines" / "nightly.py").write_text(
        "from prefect import flow\n\n@flow\ndef nightly():\n    return 1\n")
    (pytester.path / "chaos").mkdir()
    (pytester.path / "chaos" / "rows.yaml").write_text(
        ROW.format(id="nightly-kill").replace("{flow: pipeline}", '{flow: "../pipelines/nightly.py:nightly"}'))
    result = pytester.runpytest("--collect-only", "-q", "--chaos-matrix", "chaos", "-m", "chaos")
    result.stdout.fnmatch_lines(["*::test_scenario?nightly-kill@local?", "1 test collected*"])
    (pytester.path / "test_also.py").write_text("from harness.matrix_test import pytestmark, test_scenario\n")
    result = pytester.runpytest("--collect-only", "-q", "--chaos-matrix", "chaos", "-m", "chaos", "test_also.py")
    result.stdout.fnmatch_lines(["test_also.py::test_scenario?nightly-kill@local?", "1/2 tests collected (1 deselected)*"])
