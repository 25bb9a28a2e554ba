"""Seeded regressions: the catalogue applies to the installed Prefect, a mutant lives in a
throwaway environment of its own, and the environment under test is never touched."""

import subprocess
from pathlib import Path

import prefect
import pytest

from harness.model.matrix import load_matrix
from harness.paths import SCENARIOS_DIR
from harness.run import mutate as mutants

PREFECT = Path(prefect.__file__).parent


def test_every_mutant_applies_to_the_installed_prefect_once_or_says_it_does_not(tmp_path):
    rows = {s.id for s in load_matrix(SCENARIOS_DIR)}
    for m in mutants.CATALOGUE:
        assert set(m.rows) <= rows, (m.id, set(m.rows) - rows)
        copy = tmp_path / m.id
        (copy / m.file).parent.mkdir(parents=True)
        (copy / m.file).write_text((PREFECT / m.file).read_text() if (PREFECT / m.file).is_file() else "")
        try:
            changed = mutants.apply(m, copy)
        except mutants.DoesNotApply:
            assert not prefect.__version__.startswith("3.9"), f"{m.id} was written from 3.9.1's source"
            continue
        assert changed == 1 or m.every
        assert (copy / m.file).read_text() != (PREFECT / m.file).read_text()


def test_a_patch_that_is_not_there_does_not_apply(tmp_path):
    (tmp_path / "flow_engine.py").write_text("nothing of the kind\n")
    m = mutants.Mutant("x", "x", "flow_engine.py", "heartbeat_seconds = engine.heartbeat_seconds", "", ("kill-flow-process",))
    with pytest.raises(mutants.DoesNotApply, match="found 0 times"):
        mutants.apply(m, tmp_path)
    with pytest.raises(mutants.DoesNotApply, match="not in Prefect"):
        mutants.apply(mutants.Mutant("y", "y", "gone.py", "a", "b", ()), tmp_path)


@pytest.mark.integration
def test_a_mutant_runs_in_its_own_environment_and_the_one_under_test_is_untouched(tmp_path):
    m = next(m for m in mutants.CATALOGUE if m.id == "retry-after-crash")
    before = (PREFECT / m.file).read_text()
    python = mutants.environment(tmp_path, m)
    probe = ("import prefect, harness, pathlib; p = pathlib.Path(prefect.__file__).parent; "
             "print(p); print('StateType.CRASHED}' in (p / 'server/orchestration/core_policy.py').read_text()); "
             "print(harness.__file__)")
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert Path(out[0]).is_relative_to(tmp_path) and out[1] == "True"  # the patched copy
    assert Path(out[2]).resolve().parent.parent == Path(__file__).resolve().parents[2]  # this checkout's harness
    assert (PREFECT / m.file).read_text() == before


def test_judging_a_mutant():
    real = mutants.CATALOGUE[0]
    equivalent = next(m for m in mutants.CATALOGUE if m.equivalent)
    assert mutants.judge(real, {"a@local": "fail", "b@local": "pass"}) == "caught"
    assert mutants.judge(real, {"a@local": "pass"}) == "survived"
    assert mutants.judge(real, {"a@local": "unknown"}) == "not judged"
    assert mutants.judge(equivalent, {"a@local": "pass"}) == "quiet"
    assert mutants.judge(equivalent, {"a@local": "fail"}) == "false alarm"
    assert mutants.judge(real, {}) == mutants.judge(equivalent, {}) == "not judged"  # no row finished
