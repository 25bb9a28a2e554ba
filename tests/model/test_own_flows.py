"""A row naming a flow of the user's own by its entrypoint: what loads, and the errors that name
the file, the row and the field before anything runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.model.history import task_states
from harness.model.matrix import MatrixError, load_matrix
from harness.model.scenario import FLOWS_DIR, Workload

FLOW = '''
from prefect import flow, task

@task
def load(n: int) -> int:
    return n

@flow
def nightly(n: int = 1) -> int:
    return load(n)
'''


def matrix(tmp_path: Path, flow: str, extra: str = "", backends: str = "[local, docker]") -> Path:
    (tmp_path / "m.yaml").write_text(textwrap.dedent(f"""
        - id: my-flow
          title: my own flow
          backends: {backends}
          workload: {{flow: "{flow}", parameters: {{n: 2}}{extra}}}
          expect: {{final: COMPLETED, settle_within_seconds: 60}}
        """))
    return tmp_path / "m.yaml"


def errors(path: Path) -> str:
    with pytest.raises(MatrixError) as caught:
        load_matrix(path)
    return "\n".join(caught.value.errors)


def test_a_file_entrypoint_is_relative_to_the_matrix_file_and_deploys_from_its_directory(tmp_path):
    code = tmp_path / "project" / "pipelines"
    code.mkdir(parents=True)
    (code / "nightly.py").write_text(FLOW)
    (tmp_path / "project" / "chaos").mkdir()
    path = matrix(tmp_path / "project" / "chaos", "../pipelines/nightly.py:nightly")
    (scenario,) = load_matrix(path)
    w = scenario.workload
    assert w.own and w.flow == f"{code.resolve() / 'nightly.py'}:nightly"
    assert w.entrypoint == "nightly.py:nightly" and w.directory == code.resolve() and w.flow_name == "nightly"
    # once resolved it is absolute: dumped and loaded again anywhere, it is the same row
    assert type(scenario).model_validate(scenario.model_dump()).workload.flow == w.flow


def test_the_harness_workloads_are_named_as_before(tmp_path):
    (scenario,) = load_matrix(matrix(tmp_path, "pipeline"))
    w = scenario.workload
    assert not w.own and w.entrypoint == "pipeline.py:pipeline" and w.directory == FLOWS_DIR


def test_a_module_entrypoint_is_found_without_running_it(tmp_path):
    (scenario,) = load_matrix(matrix(tmp_path, "harness.chaos:Chaos"))  # any importable module:attribute
    assert scenario.workload.entrypoint == "harness.chaos:Chaos"
    assert scenario.workload.directory == Path(__file__).resolve().parents[2]  # where the package is


@pytest.mark.parametrize("flow, says", [
    ("missing.py:nightly", "no file"),
    ("nightly.py:daily", "defines no 'daily' at its top level (it defines: flow, task, load, nightly)"),
    ("no_such_pkg.flows:nightly", "no module no_such_pkg.flows can be imported here"),
    ("nightly.py:", "an entrypoint is path/to/file.py:function or package.module:function"),
    ("not a module:x", "an entrypoint is path/to/file.py:function"),
    ("broken.py:nightly", "cannot be read as Python: SyntaxError"),
])
def test_a_flow_that_cannot_be_found_is_named_with_the_row_and_the_field(tmp_path, flow, says):
    (tmp_path / "nightly.py").write_text(FLOW)
    (tmp_path / "broken.py").write_text("def nightly(:\n")
    text = errors(matrix(tmp_path, flow))
    assert "m.yaml: scenario 'my-flow': workload.flow" in text and says in text, text


def test_an_own_flow_runs_on_every_backend_but_is_refused_with_task_workers(tmp_path):
    (tmp_path / "nightly.py").write_text(FLOW)
    (scenario,) = load_matrix(matrix(tmp_path, "nightly.py:nightly", backends="[local, docker, kind]"))
    assert scenario.backends == ["local", "docker", "kind"]
    assert "workload.task_workers" in errors(matrix(tmp_path, "nightly.py:nightly", ", task_workers: 2"))
    assert "only a flow of your own" in errors(matrix(tmp_path, "pipeline", ", path: ."))


@pytest.mark.parametrize("image, ok", [("my-etl:1.0", True), ("registry.local:5000/team/etl:2024.06-RC1", True),
                                       ("etl@sha256:" + "a" * 64, True), ("My-ETL", False), ("etl 1", False),
                                       ("", False), ("etl:" + "X" * 129, False)])
def test_a_rows_own_image_is_an_image_reference(tmp_path, image, ok):
    (tmp_path / "nightly.py").write_text(FLOW)
    path = matrix(tmp_path, "nightly.py:nightly")
    path.write_text(path.read_text().replace("  expect:", f"  config: {{job: {{image: '{image}'}}}}\n  expect:"))
    if ok:
        (scenario,) = load_matrix(path)
        assert scenario.config.job.image == image
    else:
        assert "scenario 'my-flow': config.job.image" in errors(path) and "not an image reference" in errors(path)


def test_a_relative_entrypoint_needs_a_matrix_file():
    with pytest.raises(ValueError, match="relative to its matrix file's directory"):
        Workload(flow="nightly.py:nightly")


def test_case_parameters_name_the_cases_directory(tmp_path):
    w = Workload(flow="pipeline", parameters={"database": "{case}/w.db", "more": [{"x": "{case}"}], "n": 3})
    assert w.parameters_for(tmp_path) == {"database": f"{tmp_path}/w.db", "more": [{"x": str(tmp_path)}], "n": 3}


def test_a_trigger_names_a_task_by_its_run_name_or_by_prefects_own_run_names():
    tasks = {"step-2": "RUNNING", "load-0": "COMPLETED", "load-1": "RUNNING", "loader-0": "RUNNING", "load-abcd": "X"}
    assert task_states(tasks, "step-2") == ["RUNNING"]
    assert task_states(tasks, "load") == ["COMPLETED", "RUNNING"]  # not loader-0, not a 4-character key
    assert task_states(tasks, "load-1") == ["RUNNING"]
    assert task_states(tasks, "extract") == []


def test_an_nth_trigger_fires_on_that_run_of_the_task_only():
    from harness.model.scenario import Trigger
    from harness.run.observe import Snapshot, holds

    third = Trigger(task="load", state="running", nth=3)
    snap = Snapshot(at=0.0, flow_state="RUNNING", tasks={"load-a1b": "COMPLETED", "load-9f0": "RUNNING"})
    assert not holds(third, snap)  # only two runs of load so far
    snap.tasks["load-c3d"] = "RUNNING"
    assert holds(third, snap) and not holds(Trigger(task="load", state="running", nth=1), snap)
    assert third.describe() == "3rd run of task load RUNNING"
    assert Trigger(task="x", state="running", nth=112).describe().startswith("112th")
    with pytest.raises(ValueError, match="the nth run of a task"):
        Trigger(flow_state="running", nth=2)


def test_a_tests_runs_have_ids_apart_however_long_its_name():
    """A run and its rerun in one test, and two parametrized tests whose names differ only at
    their end, each get an id of their own: the journal and the report key cases by id (a long
    name cut at 60 characters once took the run's number with it, and a run and its rerun were
    shown as two repeats of one case)."""
    from harness.chaos import case_id
    from harness.model.fields import ID_MAX, ID_RE

    long = "test_with_an_inputs_cache_the_rerun_loads_every_order_exactly_once"
    ids = [case_id(long, 1), case_id(long, 2), case_id(long + "[sqlite]", 1), case_id(long + "[postgres]", 1),
           case_id("test_short", 1), case_id("3rd_case", 12)]
    assert len(set(ids)) == len(ids)
    assert all(ID_RE.match(i) and len(i) <= ID_MAX for i in ids), ids
    assert ids[0].endswith("-1") and ids[1].endswith("-2") and ids[0].startswith("test-with-an-inputs-cache")
    assert case_id("test_short", 1) == "test-short-1" and case_id("3rd_case", 12) == "case-3rd-case-12"
    assert case_id(long, 1) == case_id(long, 1)  # the same test, the same id: its trend compares like with like
