"""The findings page: generated from the matrix, compared field by field, never hand-kept."""


import pytest

from harness.cli import main
from harness.model.expectation import Expectation, Prediction
from harness.report import findings as page


def expect(**fields) -> Expectation:
    return Expectation.model_validate({"settle_within_seconds": 60, **fields})


def test_the_committed_page_is_what_the_command_writes():
    assert main(["findings", "--check"]) == 0, "docs/findings.md is stale: run `python -m harness findings`"


@pytest.mark.parametrize("predicted, measured, verdict", [
    ({"final": "COMPLETED"}, {"final": "COMPLETED"}, page.HELD),
    ({"final": "COMPLETED"}, {"final": "CRASHED"}, page.REFUTED),
    ({"final": "COMPLETED"}, {"final": ["CRASHED", "COMPLETED"]}, page.SOMETIMES),
    ({"final": ["CRASHED", "COMPLETED"]}, {"final": "CRASHED"}, page.HELD),
    ({"final": "COMPLETED", "run_count": 2}, {"final": "COMPLETED", "run_count": 1}, page.REFUTED),
    ({"executions": {"step-2": 0}}, {"final": "CANCELLED", "executions": {"step-2": 1}}, page.REFUTED),
    ({"executions": {"step-2": 0}}, {"final": "CANCELLED"}, page.OPEN),  # the row counts no step-2
    ({"message": "(?i)out of memory|OOM"}, {"message": "status code: -9"}, page.REFUTED),
    ({"message": "(?i)out of memory|OOM"}, {"message": "likely due to an out-of-memory|OOM"}, page.HELD),
    ({"message": "OOM"}, {"final": "CRASHED"}, page.OPEN),  # the row pins no message
    ({"subflows": {"final": "COMPLETED"}}, {"subflows": {"final": "FAILED"}}, page.REFUTED),
])
def test_a_prediction_against_the_measured_expectation(predicted, measured, verdict):
    got, why = page.compare(Prediction.model_validate(predicted), expect(**measured))
    assert got == verdict, why


def test_an_unverified_expectation_is_not_a_finding():
    got, why = page.compare(Prediction(final="COMPLETED"), expect(final="COMPLETED", unverified="the docs"))
    assert got == page.UNVERIFIED and "the docs" in why[0]


ROW = """
- id: probe
  title: a probe
  claim: {{text: "runs are retried", source: "the docs", predicts: {{final: COMPLETED}}}}
  backends: [local, docker]
  workload: {{flow: pipeline}}
  expect:
    final: {final}
    settle_within_seconds: 60
    prefect:
      "<3.8": {{final: COMPLETED}}
- id: no-claim
  title: no claim, no finding
  backends: [local]
  workload: {{flow: pipeline}}
  expect: {{final: COMPLETED, settle_within_seconds: 60}}
"""


def test_cells_split_by_version_and_backend_and_link_the_row(tmp_path):
    (tmp_path / "m.yaml").write_text(ROW.format(final="CRASHED"))
    found = page.findings([tmp_path / "m.yaml"])
    assert [f.scenario.id for f in found] == ["probe"]
    cells = [(c.backend, c.versions, c.verdict) for c in found[0].cells]
    assert cells == [("local", ["3.6.29", "3.7.8"], page.HELD), ("local", ["3.8.8", "3.9.1"], page.REFUTED),
                     ("docker", ["3.6.29", "3.7.8"], page.HELD), ("docker", ["3.8.8", "3.9.1"], page.REFUTED)]
    assert found[0].overall == "depends" and found[0].line == 2
    text = page.render(found, tmp_path)
    assert "[probe](../m.yaml#L2)" in text and "| local | 3.8.8, 3.9.1 | **refuted** | final CRASHED |" in text


def test_check_fails_when_a_row_changes_and_the_page_does_not(tmp_path, capsys):
    matrix, out = tmp_path / "m.yaml", tmp_path / "findings.md"
    matrix.write_text(ROW.format(final="CRASHED"))
    assert main(["findings", "--matrix", str(matrix), "-o", str(out)]) == 0
    assert main(["findings", "--matrix", str(matrix), "-o", str(out), "--check"]) == 0
    matrix.write_text(ROW.format(final="COMPLETED"))  # a new measurement: the claim now holds
    assert main(["findings", "--matrix", str(matrix), "-o", str(out), "--check"]) == 1
    assert "rerun it" in capsys.readouterr().err


def test_a_broken_matrix_is_named_and_writes_nothing(tmp_path, capsys):
    matrix, out = tmp_path / "m.yaml", tmp_path / "findings.md"
    matrix.write_text(ROW.format(final="NOT-A-STATE"))
    assert main(["findings", "--matrix", str(matrix), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "m.yaml" in err and "probe" in err and "final" in err and not out.exists()
