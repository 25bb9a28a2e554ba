"""The Chaos Toolkit extension: exported experiments mean what the matrix means, bad input is
refused naming the field, and one real ``chaos run`` plays kill-flow-process end to end."""

import json
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness.backends import Deployed
from harness.ctk import actions, find_scenario, probes, state
from harness.ctk.export import ExportRefused, experiment, export, refusals, tolerance
from harness.model.matrix import load_matrix
from harness.model.scenario import Scenario
from harness.paths import SCENARIOS_DIR
from harness.sut import procs
from harness.sut.net import port_open


def by_name(activities):
    return {a["name"]: a for a in activities}


def runs_by_name(journal_runs):
    return {r["activity"]["name"]: r for r in journal_runs}


def args(activity):
    return activity["provider"]["arguments"]


def row(**overrides):
    base = {"id": "made-up", "title": "t", "backends": ["local"], "workload": {"flow": "pipeline"},
            "expect": {"final": "COMPLETED", "settle_within_seconds": 60}}
    return Scenario.model_validate({**base, **overrides})


# -- export ------------------------------------------------------------------------------------

def test_kill_flow_process_exports_its_local_expectation_as_the_hypothesis():
    exp = export("kill-flow-process")
    assert exp["runtime"] == {"hypothesis": {"strategy": "after-method-only"}, "rollbacks": {"strategy": "always"}}
    assert "scenario:kill-flow-process" in exp["tags"] and "fault:kill" in exp["tags"]
    assert "a Crashed run's message tells" in exp["description"]  # the claim
    probes_ = exp["steady-state-hypothesis"]["probes"]
    assert [p["name"] for p in probes_] == [
        "faults-injected", "final-state", "run-count", "executions-step-1", "executions-step-2",
        "executions-step-3", "time-to-detect", "overlapping-executions", "flapping"]
    p = by_name(probes_)
    assert p["faults-injected"]["tolerance"] == 1
    assert p["final-state"]["tolerance"] == "CRASHED"
    assert args(p["final-state"]) == {"wait_seconds": 60, "quiet_seconds": 3}  # the settle bound
    assert p["run-count"]["tolerance"] == 1
    assert [p[f"executions-step-{i}"]["tolerance"] for i in (1, 2, 3)] == [1, 1, 0]
    assert args(p["executions-step-3"]) == {"task": "step-3"}
    assert p["time-to-detect"]["tolerance"]["provider"] == {
        "type": "python", "module": "harness.ctk.tolerances", "func": "at_most", "arguments": {"limit": 5}}
    assert p["overlapping-executions"]["tolerance"] is False and p["flapping"]["tolerance"] is False
    start, inject = exp["method"]
    assert args(start) == {"scenario": "kill-flow-process", "backend": "local"}
    assert inject["provider"]["func"] == "inject_fault"
    assert args(inject) == {"kind": "kill", "target": "flow-run", "when": {"task": "step-2", "state": "RUNNING"},
                            "timeout": 60}
    assert [r["provider"]["func"] for r in exp["rollbacks"]] == ["heal_faults", "stop_system"]


def test_backend_overrides_message_and_infrastructure_figures():
    p = by_name(export("kill-flow-process", backend="docker")["steady-state-hypothesis"]["probes"])
    assert p["final-state-message"]["tolerance"] == {"type": "regex",
                                                    "pattern": "status code 137.*likely due to an out-of-memory"}
    assert p["exit-code"]["tolerance"] == 137 and p["oom-killed"]["tolerance"] is False


def test_the_expectation_exported_is_the_installed_prefects():
    from harness.run.session import prefect_version

    made = row(expect={"final": "COMPLETED", "settle_within_seconds": 60,
                       "prefect": {"<3": {"final": "FAILED"}, ">=3": {"final": "CANCELLED"}}})
    exp = experiment(made)
    assert by_name(exp["steady-state-hypothesis"]["probes"])["final-state"]["tolerance"] == "CANCELLED"
    [ext] = exp["extensions"]
    assert ext["prefect_version"] == prefect_version() and ext["expectation"]["final"] == "CANCELLED"


def test_a_healing_fault_is_injected_then_healed_after_its_time():
    exp = export("api-503-brief")
    start, inject, heal = exp["method"]
    assert args(inject) == {"kind": "api-error", "target": "api", "when": {"task": "step-2", "state": "RUNNING"},
                            "timeout": 90, "status": 503, "heal_after_seconds": 10}
    assert heal["provider"]["func"] == "heal_faults" and args(heal) == {"index": 0}
    assert heal["pauses"] == {"before": 10}
    assert by_name(exp["steady-state-hypothesis"]["probes"])["final-state"]["tolerance"] == "COMPLETED"


def test_faults_at_the_same_trigger_are_injected_together_and_healed_after_the_group():
    method = export("api-500-kill-flow-process")["method"]
    assert [m["name"] for m in method] == ["start-run", "inject-api-error-api-0", "inject-kill-flow-run-1",
                                           "heal-api-error-api-0"]
    assert args(method[1])["when"] == args(method[2])["when"] == {"task": "step-1", "state": "RUNNING"}
    assert args(method[3]) == {"index": 0} and method[3]["pauses"] == {"before": 20}
    at = {"task": "step-1", "state": "running"}
    two = row(faults=[{"kind": "api-error", "target": "api", "status": 500, "when": at, "heal_after_seconds": 12},
                      {"kind": "freeze", "when": at, "heal_after_seconds": 5},
                      {"kind": "kill", "when": at}])
    heals = [m for m in experiment(two)["method"] if m["name"].startswith("heal")]
    # each heal at its own time from the group's injection: the freeze at 5 s, the 500 at 12 s
    assert [(args(h)["index"], h["pauses"]["before"]) for h in heals] == [(1, 5), (0, 7)]
    later = row(faults=[{"kind": "freeze", "when": at, "heal_after_seconds": 5},
                        {"kind": "kill", "when": at},
                        {"kind": "kill-worker", "target": "worker", "when": {"task": "step-2", "state": "running"}}])
    [why] = refusals(later, "local")
    assert why.startswith("scenario 'made-up': faults.2: comes after faults.0, which heals after 5s, at another trigger")


def test_several_faults_subflows_and_set_fields():
    method = export("kill-worker-and-flow-process")["method"]
    assert [m["name"] for m in method] == ["start-run", "inject-kill-worker-worker-0", "inject-kill-flow-run-1"]
    assert args(method[2])["when"] == {"after_seconds": 0}
    assert args(export("terminate-flow-process")["method"][1])["grace_seconds"] == 5  # as the matrix says it
    p = by_name(export("kill-subflow-process")["steady-state-hypothesis"]["probes"])
    assert p["subflow-states"]["tolerance"]["provider"]["func"] == "every_one_of"
    assert args(p["subflow-states"]["tolerance"]) == {"allowed": ["RUNNING"]}


def test_task_run_expectations_become_task_probes():
    from harness.model.expectation import Expectation

    if "tasks" not in Expectation.model_fields:
        pytest.skip("this matrix model has no task-run expectations")
    tasks = {"step-1": {"final": "COMPLETED", "run_count": [1, 2]}, "step-2": {"final": ["FAILED", "CRASHED"]}}
    exp = experiment(row(expect={"final": "COMPLETED", "settle_within_seconds": 60, "tasks": tasks}))
    p = by_name(exp["steady-state-hypothesis"]["probes"])
    assert p["task-step-1-state"]["tolerance"] == "COMPLETED" and args(p["task-step-1-state"]) == {"task": "step-1"}
    assert p["task-step-1-run-count"]["tolerance"] == {"type": "range", "range": [1, 2]}
    assert args(p["task-step-2-state"]["tolerance"]) == {"allowed": ["FAILED", "CRASHED"]}
    with pytest.raises(ExportRefused, match="expect.tasks.step-1.message: only a task run's final state"):
        experiment(row(expect={"final": "COMPLETED", "settle_within_seconds": 60,
                               "tasks": {"step-1": {"message": "x"}}}))


def test_lists_of_allowed_values_never_become_chaoslib_ranges():
    assert tolerance("CRASHED") == "CRASHED" and tolerance([2]) == 2
    assert tolerance([1, 2]) == {"type": "range", "range": [1, 2]}
    assert tolerance([0, 1, 2, 1]) == {"type": "range", "range": [0, 2]}
    for allowed in (["CANCELLED", "CRASHED"], [1, 3]):
        assert tolerance(allowed)["provider"]["func"] == "one_of"
    p = by_name(export("kill-flow-pod-backoff-limit", backend="kind")["steady-state-hypothesis"]["probes"])
    assert p["executions-step-1"]["tolerance"] == {"type": "range", "range": [1, 2]}


def test_tolerances_as_chaoslib_applies_them():
    hypothesis = pytest.importorskip("chaoslib.hypothesis", reason="the ctk extra is not installed")
    from harness.ctk.export import _regex

    def within(tol, value):
        return hypothesis.within_tolerance(json.loads(json.dumps(tol)), value)

    states = tolerance(["CANCELLED", "CRASHED"])
    assert within(states, "CRASHED") and not within(states, "COMPLETED") and not within(states, None)
    assert within(tolerance([1, 3]), 3) and not within(tolerance([1, 3]), 2)
    assert within(tolerance([1, 2]), 2) and not within(tolerance([1, 2]), 3)
    at_most = export("kill-flow-process")["steady-state-hypothesis"]["probes"][6]["tolerance"]
    assert within(at_most, 0.5) and not within(at_most, 6.0) and not within(at_most, None)
    assert within(_regex("^a$"), "a") and not within(_regex("^a$"), "ab")  # chaoslib's '$$' -> '$'


def test_every_exportable_scenario_is_a_valid_experiment_and_the_rest_are_refused():
    experiment_mod = pytest.importorskip("chaoslib.experiment", reason="the ctk extra is not installed")
    exported, refused = [], {}
    for scenario in load_matrix(SCENARIOS_DIR):
        for backend in scenario.backends:
            try:
                exp = experiment(scenario, backend)
            except ExportRefused as exc:
                refused[(scenario.id, backend)] = exc.errors
                continue
            experiment_mod.ensure_experiment_is_valid(json.loads(json.dumps(exp)))  # imports, signatures
            exported.append((scenario.id, backend))
    local = [s for s, b in exported if b == "local"]
    assert "kill-flow-process" in local and len(local) >= 25, local
    for (sid, _), errors in refused.items():  # only what the export cannot express
        assert all(e.startswith(f"scenario {sid!r}: ") for e in errors)
        assert {e.split(": ")[1] for e in errors} <= {"workload.runs", "then", "server.env"}, errors


def test_refusals_name_the_scenario_and_the_field():
    def errors(scenario, backend="local"):
        with pytest.raises(ExportRefused) as info:
            experiment(scenario, backend)
        return info.value.errors

    storm = find_scenario("storm-kill-a-fifth", None, "test")
    assert errors(storm) == [f"scenario 'storm-kill-a-fifth': workload.runs: a storm of {storm.workload.runs} flow "
                             "runs: the experiment drives and checks one"]
    assert errors(find_scenario("resume-after-crash-cache-inputs", None, "test"))[0].startswith(
        "scenario 'resume-after-crash-cache-inputs': then: ")
    assert errors(row(), "docker") == ["scenario 'made-up': backends: the scenario runs on local, not 'docker'"]
    assert "backend: unknown backend 'nomad'" in errors(row(), "nomad")[0]
    late = row(faults=[{"kind": "freeze", "when": {"task": "step-1", "state": "running"}, "heal_after_seconds": 5},
                       {"kind": "kill", "when": {"task": "step-2", "state": "running"}}])
    [why] = errors(late)
    assert why.startswith("scenario 'made-up': faults.1: comes after faults.0, which heals after 5s")
    sub = row(workload={"flow": "parent"}, expect={"final": "CRASHED", "settle_within_seconds": 60,
                                                   "subflows": {"final": "RUNNING", "run_count": 1}})
    assert errors(sub) == ["scenario 'made-up': expect.subflows.run_count: only the subflows' final state has a probe"]
    assert refusals(find_scenario("kill-flow-process", None, "test"), "local") == []


def test_export_ctk_command(tmp_path):
    def cli(*argv):
        return subprocess.run([sys.executable, "-m", "harness", "export-ctk", *argv], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path)

    out = cli("kill-flow-process")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["title"].startswith("SIGKILL the flow-run process")
    done = cli("api-503-brief", "--backend", "docker", "-o", "exp.json")
    assert done.returncode == 0 and json.loads((tmp_path / "exp.json").read_text())["tags"][3] == "backend:docker"
    missing = cli("kill-flow-proces")
    assert missing.returncode == 2
    assert "argument 'scenario': no scenario 'kill-flow-proces'" in missing.stderr
    assert "did you mean kill-flow-process" in missing.stderr
    storm = cli("storm-kill-a-fifth")
    assert storm.returncode == 2 and "scenario 'storm-kill-a-fifth': workload.runs:" in storm.stderr
    (tmp_path / "m.yaml").write_text((SCENARIOS_DIR / "kill.yaml").read_text())
    mine = json.loads(cli("kill-subflow-process", "--matrix", "m.yaml").stdout)
    assert mine["method"][0]["provider"]["arguments"]["matrix"] == str(tmp_path / "m.yaml")  # absolute


# -- actions and probes: refusals before anything starts --------------------------------------

@pytest.fixture
def made_run():
    """A run as start_run records it, without a system: enough for what is refused before one is used."""
    scenario = find_scenario("kill-flow-process", None, "test")
    deployed = Deployed("kill-flow-process-test", "d", "p", Path("/nonexistent/ledger.jsonl"))
    state.begin(state.Run(scenario, "local", None, deployed, ExitStack(), "run-id", time.time()))
    try:
        yield
    finally:
        state.end_run()


@pytest.mark.parametrize("fault, words", [
    ({"kind": "kil"}, "argument kind: unknown fault kind 'kil'"),
    ({"kind": "kill", "target": "server"}, "argument target: fault 'kill' cannot target 'server'"),
    ({"kind": "kill", "when": {"after_seconds": -1}}, "argument when.after_seconds: Input should be greater"),
    ({"kind": "kill", "when": {"task": "step-2"}}, "argument when: a task trigger needs 'state'"),
    ({"kind": "kill", "heal_after": 3}, "argument heal_after: Extra inputs are not permitted"),
    ({"kind": "restart-server"}, "argument heal_after_seconds: fault 'restart-server' needs it"),
    ({"kind": "oom"}, "argument mem_limit: an oom fault needs a memory limit"),
    ({"kind": "api-error", "status": 503}, "argument kind: api-error needs a fault proxy"),
    ({"kind": "kill", "timeout": "soon"}, "argument 'timeout': a number of seconds"),
])
def test_inject_fault_refuses_bad_input_naming_the_argument(made_run, fault, words):
    with pytest.raises(ValueError) as info:
        actions.inject_fault(**fault)
    assert words in str(info.value) and "scenario 'kill-flow-process'" in str(info.value)


def test_start_run_refuses_before_starting_anything():
    with pytest.raises(ValueError, match="start_run: argument 'scenario': no scenario 'nope'"):
        actions.start_run("nope")
    with pytest.raises(ValueError, match="start_run: argument 'backend': scenario 'api-503-brief' runs on local"):
        actions.start_run("api-503-brief", backend="kind")
    with pytest.raises(ValueError, match="workload.runs is 50: a storm"):
        actions.start_run("storm-kill-a-fifth")
    assert state._session is None  # no system was started


def test_probes_and_heals_without_a_run(made_run):
    with pytest.raises(ValueError, match="heal_faults: argument 'index': 0, but 0 fault"):
        actions.heal_faults(index=0)
    assert probes.executions() == 0 and probes.faults_injected() == 0  # no ledger yet
    with pytest.raises(ValueError, match="executions: argument 'task'"):
        probes.executions(task=3)
    with pytest.raises(ValueError, match="flow_run_state: argument 'wait_seconds'"):
        probes.flow_run_state(wait_seconds=-1)
    state.end_run()
    with pytest.raises(RuntimeError, match="flow_run_count: no flow run in this process: call the start_run"):
        probes.flow_run_count()
    assert actions.heal_faults() == []  # a rollback after a failed start has nothing to heal
    assert actions.stop_system()["stopped"] is False


def test_discover_lists_the_activities():
    pytest.importorskip("chaoslib", reason="the ctk extra is not installed")
    from harness.ctk import discover

    found = {a["name"]: a for a in discover(discover_system=False)["activities"]}
    assert {"start_run", "inject_fault", "heal_faults", "stop_system", "flow_run_state", "executions",
            "one_of"} <= set(found)
    assert found["flow_run_state"]["type"] == "probe" and found["inject_fault"]["type"] == "action"
    assert {"name": "timeout", "default": 120, "type": "number"} in found["inject_fault"]["arguments"]


# -- a real chaos run -------------------------------------------------------------------------

@pytest.mark.integration
def test_chaos_run_plays_kill_flow_process_and_leaves_nothing(tmp_path, repo_root):
    chaos = Path(sys.executable).with_name("chaos")
    if not chaos.exists():
        pytest.skip("no chaos command next to this Python (pip install -e .[ctk])")
    (tmp_path / "exp.json").write_text(json.dumps(export("kill-flow-process")))
    done = subprocess.run([str(chaos), "--no-version-check", "run", "--journal-path", "J.json", "exp.json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    journal = json.loads((tmp_path / "J.json").read_text())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert journal["status"] == "completed" and journal["deviated"] is False
    runs = runs_by_name(journal["run"])
    started = runs["start-run"]["output"]
    assert runs["inject-kill-flow-run"]["output"]["detail"]["signal"] == "SIGKILL"
    after = journal["steady_states"]["after"]
    assert after["steady_state_met"] is True
    out = {p["activity"]["name"]: p["output"] for p in after["probes"]}
    expect = find_scenario("kill-flow-process", None, "test").expect.for_backend("local")
    assert out["final-state"] == expect.final == "CRASHED"
    assert out["run-count"] == expect.run_count
    assert {t: out[f"executions-{t}"] for t in expect.executions} == expect.executions
    assert out["time-to-detect"] <= expect.detect_within_seconds
    rollbacks = runs_by_name(journal["rollbacks"])
    assert rollbacks["stop-system"]["status"] == "succeeded" and rollbacks["stop-system"]["output"]["stopped"]
    # nothing of the run's session is left: processes (by marker), the server's port, the directory
    assert procs.find(started["session"]) == []
    assert not port_open(urlsplit(started["api_url"]).port)
    assert not Path(started["workdir"]).exists()
