"""The nightly workflow: valid for GitHub (its published schema), a backend x Prefect version
(x Kubernetes version) matrix of cells, each split into shards and merged into one report, only
the project's own documented commands, and its outputs kept."""

from __future__ import annotations

import configparser
import itertools
import re
import subprocess
import sys

import pytest
import yaml

WORKFLOW = ".github/workflows/nightly.yml"
ALLOWED_ACTIONS = {"actions/checkout", "actions/setup-python", "actions/cache/restore", "actions/cache/save",
                   "actions/upload-artifact", "actions/download-artifact"}


@pytest.fixture
def workflow(repo_root) -> dict:
    return yaml.safe_load((repo_root / WORKFLOW).read_text())


def tox_envs(repo_root) -> set[str]:
    """tox.ini's environments, brace factors expanded (chaos-prefect{36,37} -> two envs)."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(repo_root / "tox.ini")
    envs = set()
    for section in ini.sections():
        if not section.startswith("testenv:"):
            continue
        parts = re.split(r"\{([^}]*)\}", section.removeprefix("testenv:"))
        choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
        envs |= {"".join(c) for c in itertools.product(*choices)}
    return envs


def run_lines(workflow: dict, job: str = "chaos") -> list[str]:
    return [" ".join(step["run"].split()) for step in workflow["jobs"][job]["steps"] if "run" in step]


def cells(workflow: dict, job: str = "chaos") -> list[dict]:
    return workflow["jobs"][job]["strategy"]["matrix"]["cell"]


def test_the_workflow_is_valid_against_githubs_schema(repo_root):
    checked = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                              str(repo_root / WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_it_runs_nightly_and_on_demand(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare 'on' as true
    assert set(triggers) == {"schedule", "workflow_dispatch"}
    assert re.fullmatch(r"\d+ \d+ \* \* \*", triggers["schedule"][0]["cron"])


def test_the_matrix_is_backend_by_prefect_version_and_kubernetes_version_for_kind(workflow, repo_root):
    strategy = workflow["jobs"]["chaos"]["strategy"]
    assert strategy["fail-fast"] is False  # one broken cell must not hide the others
    every = cells(workflow)
    assert {c["backend"] for c in every} == {"local", "docker", "kind"}
    versions = {c["prefect"] for c in every if c["backend"] == "local"}
    assert len(versions) >= 3
    assert {c["prefect"] for c in every if c["backend"] == "docker"} == versions
    kind_cells = [c for c in every if c["backend"] == "kind"]
    assert len({c["kube"] for c in kind_cells}) >= 2 and all(re.fullmatch(r"v1\.\d+\.\d+", c["kube"]) for c in kind_cells)
    assert len({tuple(sorted(c.items())) for c in every}) == len(every)
    envs = tox_envs(repo_root)
    for c in every:  # each cell's Prefect version is a tox environment of the project
        assert f"chaos-prefect{c['prefect']}" in envs, c


def test_each_cell_runs_as_shards_that_cover_the_split(workflow):
    shards = workflow["jobs"]["chaos"]["strategy"]["matrix"]["shard"]
    count = int(workflow["env"]["SHARDS"])
    assert count >= 2 and shards == list(range(1, count + 1))  # every shard of the split, each once
    chaos = next(line for line in run_lines(workflow) if "tox -e" in line)
    assert "--shard ${{ matrix.shard }}/${{ env.SHARDS }}" in chaos
    # every shard takes the durations from the same restored journals, and journals apart from them
    assert "--durations reports" in chaos
    assert re.search(r"--journal reports/shard/journal-shard\$\{\{ matrix.shard }}\.jsonl", chaos)
    upload = next(s for s in workflow["jobs"]["chaos"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/shard/"
    assert upload["with"]["name"] == "chaos-shard-${{ env.CELL }}-${{ matrix.shard }}"


def test_a_merge_job_per_cell_makes_the_one_report_from_every_shard(workflow):
    merge = workflow["jobs"]["report"]
    # a failed shard still gets its report; the weekly mutate run has no shards to merge
    assert merge["needs"] == "chaos" and merge["if"] == "always() && github.event.schedule != '47 3 * * 0'"
    assert cells(workflow, "report") == cells(workflow)
    assert merge["env"]["CELL"] == workflow["jobs"]["chaos"]["env"]["CELL"]
    steps = merge["steps"]
    download = next(s for s in steps if s.get("uses", "").startswith("actions/download-artifact"))
    assert download["with"]["pattern"] == "chaos-shard-${{ env.CELL }}-*" and download["with"]["merge-multiple"] is True
    shards_dir = download["with"]["path"].rstrip("/")
    (line,) = [x for x in run_lines(workflow, "report") if "tox -e" in x]
    assert line.startswith(f"tox -e report -- {shards_dir} -o reports/report-")
    assert "--previous reports" in line and "--journal-out reports" in line and "--keep-journals" in line
    names = [s.get("uses", s.get("run", "")) for s in steps]
    at = next(i for i, n in enumerate(names) if "tox -e report" in n)
    assert names.index(download["uses"]) < at


def test_it_uses_only_the_projects_documented_commands(workflow, repo_root):
    # the README or the reference it points to (docs/report.md has the nightly)
    readme = "\n".join(p.read_text() for p in [repo_root / "README.md", *sorted((repo_root / "docs").glob("*.md"))])
    lines = run_lines(workflow) + run_lines(workflow, "report") + run_lines(workflow, "mutate")
    assert lines, "no commands"
    for line in lines:
        # the machine-level wrapper (root, as the matrix was measured) is not a command of its own
        command = re.sub(r'^sudo --preserve-env=[\w,]+ env "PATH=\$PATH" ', "", line)
        assert command.startswith(("pip install tox", "tox -e chaos-prefect", "tox -e report", "tox -e mutate",
                                   "tox -e kind-tests")), line
    chaos = next(line for line in run_lines(workflow) if "tox -e" in line)
    assert "tox -e chaos-prefect${{ matrix.cell.prefect }} -- --backend ${{ matrix.cell.backend }}" in chaos
    for documented in ("pip install tox", "tox -e chaos-prefect39", "--backend kind", "--chaos-kube-version",
                       "--keep-journals", "CHAOS_REQUIRE_BACKENDS", "--shard", "tox -e report", "--journal-out",
                       "tox -e mutate", "tox -e kind-tests"):
        assert documented in readme, f"neither README nor docs/ documents {documented!r}"
    assert "--chaos-kube-version {0}', matrix.cell.kube" in chaos  # kind cells pass their Kubernetes version


def test_only_official_actions_pinned_to_a_major_version(workflow):
    for step in workflow["jobs"]["chaos"]["steps"] + workflow["jobs"]["report"]["steps"]:
        if "uses" in step:
            action, _, ref = step["uses"].partition("@")
            assert action in ALLOWED_ACTIONS and re.fullmatch(r"v\d+", ref), step["uses"]


def test_a_skipped_backend_fails_the_cell(workflow):
    env = workflow["jobs"]["chaos"]["env"]
    assert env["CHAOS_REQUIRE_BACKENDS"] == "${{ matrix.cell.backend }}"
    chaos = next(line for line in run_lines(workflow) if "tox -e" in line)
    assert re.search(r"--preserve-env=\S*CHAOS_REQUIRE_BACKENDS", chaos)  # through sudo


def test_reports_and_journals_are_uploaded_and_journals_kept_for_the_trend(workflow):
    shard_steps, steps = workflow["jobs"]["chaos"]["steps"], workflow["jobs"]["report"]["steps"]
    by_action = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    upload = by_action["actions/upload-artifact"]
    assert upload["if"] == "always()"
    assert "reports/report-*.html" in upload["with"]["path"] and "reports/journal-*.jsonl" in upload["with"]["path"]
    assert "reports/shards/logs/" in upload["with"]["path"]  # a failed case's logs, linked from the report
    restore, save = by_action["actions/cache/restore"], by_action["actions/cache/save"]
    assert restore["with"]["path"] == save["with"]["path"] == "reports/journal-*.jsonl"
    assert save["if"] == "always()" and save["with"]["key"] == restore["with"]["key"]
    assert restore["with"]["restore-keys"] and save["with"]["key"].startswith(restore["with"]["restore-keys"])
    names = [s.get("uses", s.get("run", "")) for s in steps]
    run_at = next(i for i, n in enumerate(names) if "tox -e" in n)
    assert names.index(restore["uses"]) < run_at < names.index(save["uses"])  # restored before, saved after
    # the shards restore the same entry (the split's durations) and never save it: the merge does
    shard_restore = next(s for s in shard_steps if s.get("uses", "").startswith("actions/cache/restore"))
    assert shard_restore["with"] == restore["with"]
    assert not any(s.get("uses", "").startswith("actions/cache/save") for s in shard_steps)


def test_once_a_week_the_seeded_regressions_run_and_nothing_else(workflow, repo_root):
    triggers = workflow.get("on", workflow.get(True))
    weekly = [t["cron"] for t in triggers["schedule"] if re.fullmatch(r"\d+ \d+ \* \* [0-6]", t["cron"])]
    assert len(weekly) == 1
    mutate, chaos = workflow["jobs"]["mutate"], workflow["jobs"]["chaos"]
    assert mutate["if"] == f"github.event.schedule == '{weekly[0]}' || github.event_name == 'workflow_dispatch'"
    assert chaos["if"] == f"github.event.schedule != '{weekly[0]}'"
    assert weekly[0] in workflow["jobs"]["report"]["if"]
    (line,) = [x for x in run_lines(workflow, "mutate") if "tox -e" in x]
    assert line.endswith("tox -e mutate") and "mutate" in tox_envs(repo_root)
    upload = next(s for s in mutate["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/mutate-*.json"


def test_the_kind_cells_run_the_kind_backends_own_tests_once_per_kubernetes_version(workflow, repo_root):
    """The tests marked kind (a flow of your own on a real cluster among them) skip in the default
    test command here; a kind cell runs them where a cluster can start, failing if none can."""
    (step,) = [s for s in workflow["jobs"]["chaos"]["steps"] if "kind-tests" in s.get("run", "")]
    assert "matrix.cell.backend == 'kind'" in step["if"] and "matrix.shard == 1" in step["if"]
    assert re.search(r"--preserve-env=\S*CHAOS_REQUIRE_BACKENDS", step["run"])
    assert "--chaos-kube-version ${{ matrix.cell.kube }}" in step["run"]
    assert "kind-tests" in tox_envs(repo_root)
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(repo_root / "tox.ini")
    command = ini["testenv:kind-tests"]["commands"]
    assert "-m kind" in command and "tests/backends/test_kind_backend.py" in command
    kube = {c["kube"] for c in cells(workflow) if c["backend"] == "kind" and c["prefect"] == "39"}
    assert len(kube) >= 2  # each Kubernetes version of the newest Prefect
