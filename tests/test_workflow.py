"""The nightly workflow: valid for GitHub (its published schema), a backend x Prefect version
(x Kubernetes version) matrix, only the project's own documented commands, and its outputs kept."""

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
                   "actions/upload-artifact"}


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


def run_lines(workflow: dict) -> list[str]:
    return [" ".join(step["run"].split()) for step in workflow["jobs"]["chaos"]["steps"] if "run" in step]


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
    matrix = strategy["matrix"]
    cells = [{"backend": b, "prefect": p} for b in matrix["backend"] for p in matrix["prefect"]] + matrix["include"]
    assert {c["backend"] for c in cells} == {"local", "docker", "kind"}
    versions = set(matrix["prefect"])
    assert len(versions) >= 3
    for backend in ("local", "docker"):
        assert {c["prefect"] for c in cells if c["backend"] == backend} == versions
    kind_cells = [c for c in cells if c["backend"] == "kind"]
    assert len({c["kube"] for c in kind_cells}) >= 2 and all(re.fullmatch(r"v1\.\d+\.\d+", c["kube"]) for c in kind_cells)
    envs = tox_envs(repo_root)
    for c in cells:  # each cell's Prefect version is a tox environment of the project
        assert f"chaos-prefect{c['prefect']}" in envs, c


def test_it_uses_only_the_projects_documented_commands(workflow, repo_root):
    readme = repo_root.joinpath("README.md").read_text()
    lines = run_lines(workflow)
    assert lines, "no commands"
    for line in lines:
        # the machine-level wrapper (root, as the matrix was measured) is not a command of its own
        command = re.sub(r'^sudo --preserve-env=[\w,]+ env "PATH=\$PATH" ', "", line)
        assert command.startswith(("pip install tox", "tox -e chaos-prefect")), line
    chaos = next(line for line in lines if "tox -e" in line)
    assert "tox -e chaos-prefect${{ matrix.prefect }} -- --backend ${{ matrix.backend }}" in chaos
    for documented in ("pip install tox", "tox -e chaos-prefect39", "--backend kind", "--chaos-kube-version",
                       "--keep-journals", "CHAOS_REQUIRE_BACKENDS"):
        assert documented in readme, f"README does not document {documented!r}"
    assert "--chaos-kube-version {0}', matrix.kube" in chaos  # kind cells pass their Kubernetes version


def test_only_official_actions_pinned_to_a_major_version(workflow):
    for step in workflow["jobs"]["chaos"]["steps"]:
        if "uses" in step:
            action, _, ref = step["uses"].partition("@")
            assert action in ALLOWED_ACTIONS and re.fullmatch(r"v\d+", ref), step["uses"]


def test_a_skipped_backend_fails_the_cell(workflow):
    env = workflow["jobs"]["chaos"]["env"]
    assert env["CHAOS_REQUIRE_BACKENDS"] == "${{ matrix.backend }}"
    chaos = next(line for line in run_lines(workflow) if "tox -e" in line)
    assert re.search(r"--preserve-env=\S*CHAOS_REQUIRE_BACKENDS", chaos)  # through sudo


def test_reports_and_journals_are_uploaded_and_journals_kept_for_the_trend(workflow):
    steps = workflow["jobs"]["chaos"]["steps"]
    by_action = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    upload = by_action["actions/upload-artifact"]
    assert upload["if"] == "always()"
    assert "reports/report-*.html" in upload["with"]["path"] and "reports/journal-*.jsonl" in upload["with"]["path"]
    assert "reports/logs/" in upload["with"]["path"]  # a failed case's logs, linked from the report
    restore, save = by_action["actions/cache/restore"], by_action["actions/cache/save"]
    assert restore["with"]["path"] == save["with"]["path"] == "reports/journal-*.jsonl"
    assert save["if"] == "always()" and save["with"]["key"] == restore["with"]["key"]
    assert restore["with"]["restore-keys"] and save["with"]["key"].startswith(restore["with"]["restore-keys"])
    names = [s.get("uses", s.get("run", "")) for s in steps]
    run_at = next(i for i, n in enumerate(names) if "tox -e" in n)
    assert names.index(restore["uses"]) < run_at < names.index(save["uses"])  # restored before, saved after
