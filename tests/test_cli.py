"""``python -m harness validate``: exit 0 on a good matrix; errors and non-zero on a bad one."""

import subprocess
import sys


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
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(l.endswith("bad.yaml: scenario 'one': faults.0.when.after_seconds: Input should be greater than or equal to 0") for l in lines), lines
    assert any("scenario 'one': expect.settle_within_seconds: Field required" in l for l in lines), lines
    assert lines[-1] == "2 error(s)"


def test_validate_missing_path(tmp_path):
    result = validate(tmp_path / "nope")
    assert result.returncode == 1 and "no such file or directory" in result.stderr
