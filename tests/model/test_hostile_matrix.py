"""Validation never raises and never hangs, whatever the bytes: an error line naming the file, the
scenario and the field, or rows.  Hand-picked hostile inputs, then Hypothesis mutating real rows."""

import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.model.matrix import MAX_ERROR_CHARS, load_file
from harness.paths import SCENARIOS_DIR

ROW = """- id: probe
  title: a probe
  backends: [local]
  workload: {flow: pipeline, parameters: {steps: 1}}
  faults: [{kind: kill, when: {task: step-1, state: running}}]
  expect: {final: CRASHED, run_count: 1, settle_within_seconds: 60}
"""

BOMB = "- id: bomb\n  title: t\n  backends: [local]\n  workload:\n    flow: pipeline\n    parameters:\n" + \
    "      a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + \
    "".join(f"      a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]\n"
            for i in range(1, 9)) + "  expect: {final: COMPLETED, settle_within_seconds: 60}\n"


def errors_of(tmp_path, content: str | bytes) -> list[str]:
    path = tmp_path / "m.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    started = time.monotonic()
    rows, errors = load_file(path)
    assert time.monotonic() - started < 5, "validation took too long"
    assert all(line.startswith(str(path)) and "\n" not in line and len(line) <= 2 * MAX_ERROR_CHARS + 40
               for line in errors), errors
    return errors


@pytest.mark.parametrize("content, says", [
    (ROW.encode() + b"\x00", "not valid YAML"),
    (b"\xff\xfe" + ROW.encode(), "not UTF-8"),
    ("- " * 5000 + "x", "nested too deeply"),
    (ROW.replace("settle_within_seconds: 60", 'settle_within_seconds: 60, message: "' + "(" * 1000 + '"'), "expect.message"),
    (ROW.replace("run_count: 1,", 'run_count: 1, message: "(unclosed",'), "expect.message: not a regular expression"),
    (ROW.replace("flow: pipeline", "flow: " + "p" * 10_000), "workload.flow"),
    (BOMB, "aliases expand to more than"),
    (ROW.replace("run_count: 1", "run_count: -1"), "expect.run_count"),
    (ROW.replace("run_count: 1", "run_count: []"), "expect.run_count"),
    (ROW.replace("final: CRASHED", "final: []"), "expect.final"),
    (ROW.replace("kind: kill,", "kind: kill, target: '',"), "faults.0.target: empty"),
    (ROW.replace("settle_within_seconds: 60", "settle_within_seconds: .inf"), "expect.settle_within_seconds"),
    (ROW.replace("state: running}", "state: running}, heal_after_seconds: 1e30"), "faults.0"),
    (ROW.replace("settle_within_seconds: 60}", "settle_within_seconds: 60, prefect: {'': {final: FAILED}}}"),
     "expect.prefect"),
    (ROW.replace("id: probe", "id: " + "a" * 500_000), "characters; an id has at most"),
    (ROW.replace("kind: kill", "kind: " + "k" * 100_000), "unknown fault kind"),
    ("", "no scenarios"), ("# only a comment\n", "no scenarios"), ("null\n", "no scenarios"),
])
def test_a_hostile_file_gets_error_lines_not_a_traceback(tmp_path, content, says):
    errors = errors_of(tmp_path, content)
    assert any(says in line for line in errors), errors


def test_the_real_rows_are_accepted(tmp_path):
    assert errors_of(tmp_path, ROW) == []


REAL = [yaml.safe_dump([row], sort_keys=False) for f in sorted(SCENARIOS_DIR.glob("*.yaml"))
        for row in yaml.safe_load(f.read_text())][:40]


def _mutated(draw):
    text = draw(st.sampled_from(REAL))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["delete", "insert", "replace"]))
        piece = draw(st.sampled_from(["-1", "[]", "{}", "''", ".inf", "*x", "&x", ":", "- ", "\x00", "((", "\n  ",
                                      "null", "1e30", '"', "é", "\t", "#", "!!python/object:os.system", "<<: *x"]))
        end = min(len(text), at + draw(st.integers(0, 20)))
        text = (text[:at] + piece + text[at:] if kind == "insert" else
                text[:at] + text[end:] if kind == "delete" else text[:at] + piece + text[end:])
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.composite(_mutated)(), st.binary(max_size=400)))
def test_any_input_ends_in_rows_or_error_lines(tmp_path, content):
    path = tmp_path / "m.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    started = time.monotonic()
    rows, errors = load_file(path)  # never raises
    assert time.monotonic() - started < 5
    assert rows or errors


def test_a_directory_without_matrix_files_is_an_error(tmp_path):
    from harness.model.matrix import MatrixError, load_matrix

    with pytest.raises(MatrixError, match="no \\*.yaml matrix file"):
        load_matrix(tmp_path)
