"""The matrix schema: valid rows load, bad rows are reported with file, scenario and field."""

import textwrap

import pytest

from harness.model.fields import parse_bytes
from harness.model.matrix import MatrixError, load_matrix, select

GOOD = """
- id: kill-it
  title: t
  backends: [local]
  workload: {flow: pipeline, parameters: {steps: 2}}
  faults:
    - {kind: kill, when: {task: step-1, state: running}}
  expect:
    final: crashed
    settle_within_seconds: 30
    backends:
      docker: {final: [CRASHED, FAILED]}
"""


def write(tmp_path, text, name="m.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(tmp_path, text):
    with pytest.raises(MatrixError) as info:
        load_matrix(write(tmp_path, text))
    return info.value.errors


def test_good_row_loads_with_defaults_and_backend_override(tmp_path):
    [s] = load_matrix(write(tmp_path, GOOD))
    assert s.faults[0].target == "flow-run"  # the default target of kill
    assert s.expect.final == "CRASHED"  # state types are case-insensitive
    assert s.expect.for_backend("local").final == "CRASHED"
    assert s.expect.for_backend("docker").final == ["CRASHED", "FAILED"]
    assert s.expect.for_backend("docker").settle_within_seconds == 30


def test_prefect_version_overrides_layer_under_the_backends_own(tmp_path):
    row = GOOD.replace("""    backends:
      docker: {final: [CRASHED, FAILED]}""", """    message: "new words"
    prefect:
      "<3.7": {final: running, message: null}
      ">=3.6,<3.7": {settle_within_seconds: 90}
    backends:
      docker:
        final: [CRASHED, FAILED]
        prefect: {"<3.7": {run_count: 2}}""")
    [s] = load_matrix(write(tmp_path, row))
    local_38, local_36 = s.expect.for_backend("local", "3.8.8"), s.expect.for_backend("local", "3.6.29")
    assert (local_38.final, local_38.message, local_38.settle_within_seconds) == ("CRASHED", "new words", 30)
    assert (local_36.final, local_36.message, local_36.settle_within_seconds) == ("RUNNING", None, 90)
    # a backend's override wins over a version's (as over the row's); its own versions win over it
    docker_36 = s.expect.for_backend("docker", "3.6.29")
    assert (docker_36.final, docker_36.message, docker_36.run_count) == (["CRASHED", "FAILED"], None, 2)
    assert s.expect.for_backend("docker", "3.8.8").run_count is None
    # an unknown version takes no version's override; prereleases count as their version
    assert s.expect.for_backend("local").final == "CRASHED"
    assert s.expect.for_backend("local", "3.6.30rc1").final == "RUNNING"


def test_a_state_trigger_may_count_seconds_from_when_it_was_seen(tmp_path):
    for when, delayed in [("{task: step-1, state: running, after_seconds: 1.5}", True),
                          ("{flow_state: running, after_seconds: 0}", True),
                          ("{after_seconds: 2}", False), ("{flow_state: running}", False)]:
        [s] = load_matrix(write(tmp_path, GOOD.replace("{task: step-1, state: running}", when)))
        assert s.faults[0].when.delayed is delayed, when


@pytest.mark.parametrize("change, field, words", [
    (("kind: kill,", "kind: smash,"), "faults.0.kind", "unknown fault kind 'smash'"),
    (("flow: pipeline", "flow: nope"), "workload.flow", "no workload flows/nope.py"),
    (("final: crashed", "final: exploded"), "expect.final", "Input should be"),
    (("settle_within_seconds: 30", "settle_within_seconds: -1"), "expect.settle_within_seconds", "greater than 0"),
    (("{task: step-1, state: running}", "{task: step-1}"), "faults.0.when", "needs 'state'"),
    (("{task: step-1, state: running}", "{task: step-1, state: running, flow_state: running}"),
     "faults.0.when", "give one of {task, state}, {flow_state} or {after_seconds}"),
    (("{task: step-1, state: running}", "{}"), "faults.0.when", "give one of"),
    (("{task: step-1, state: running}", "{after_seconds: 3, run_count: 2}"), "faults.0.when.run_count",
     "give it with {task, state} or {flow_state}"),
    (("{task: step-1, state: running}", "{flow_state: running, run_count: 0}"), "faults.0.when.run_count",
     "greater than or equal to 1"),
    (("{kind: kill,", "{kind: kill, heal_after_seconds: 3,"), "faults.0.heal_after_seconds", "does not heal"),
    (("{kind: kill,", "{kind: oom, target: server,"), "faults.0.target", "cannot target 'server'"),
    (("backends: [local]", "backends: [moon]"), "backends.0", "Input should be"),
    (("id: kill-it", "id: Kill_It"), "id", "lowercase words"),
    (("title: t", "title: t\n  colour: red"), "colour", "Extra inputs are not permitted"),
    (("docker: {final", "mars: {final"), "expect.backends", "unknown backend 'mars'"),
    # Prefect-version overrides: keyed by a version specifier, of the row or of a backend
    (("    backends:", "    prefect: {'3.x': {final: failed}}\n    backends:"), "expect.prefect",
     "'3.x' is not a Prefect version specifier"),
    (("docker: {final: [CRASHED, FAILED]}", "docker: {prefect: {'<3.7': {colour: red}}}"),
     "expect.backends.docker.prefect.<3.7.colour", "Extra inputs are not permitted"),
    (("docker: {final: [CRASHED, FAILED]}", "docker: {prefect: {'<3.7': {prefect: {}}}}"),
     "expect.backends.docker.prefect.<3.7.prefect", "Extra inputs are not permitted"),
    # API faults: their own fields, on their own kinds only
    (("{kind: kill,", "{kind: api-error,"), "faults.0.status", "needs it"),
    (("{kind: kill,", "{kind: kill, status: 500,"), "faults.0.status", "only api-error has 'status'"),
    (("{kind: kill,", "{kind: api-latency,"), "faults.0.latency_seconds", "needs it"),
    (("{kind: kill,", "{kind: api-down, fraction: 0.5,"), "faults.0.fraction", "no fraction"),
    (("{kind: kill,", "{kind: kill, fraction: 0.5,"), "faults.0.fraction", "only API faults"),
    (("{kind: kill,", "{kind: api-reset, path: '(',"), "faults.0.path", "not a regular expression"),
    (("{kind: kill,", "{kind: api-error, status: 200,"), "faults.0.status", "greater than or equal to 400"),
    # storms
    (("{kind: kill,", "{kind: kill, share: 0.2,"), "faults.0.share", "needs several"),
    (("{steps: 2}}", "{steps: 2}, runs: 0}"), "workload.runs", "greater than or equal to 1"),
])
def test_error_names_file_scenario_and_field(tmp_path, change, field, words):
    [err] = errors_of(tmp_path, GOOD.replace(*change))
    assert err.startswith(f"{tmp_path / 'm.yaml'}: scenario ")
    assert f": {field}: " in err
    assert words in err


def test_all_errors_of_all_files_are_reported_together(tmp_path):
    write(tmp_path, GOOD.replace("kind: kill,", "kind: smash,"), "a.yaml")
    write(tmp_path, GOOD.replace("id: kill-it", "id: other").replace("flow: pipeline", "flow: nope"), "b.yaml")
    with pytest.raises(MatrixError) as info:
        load_matrix(tmp_path)
    assert len(info.value.errors) == 2
    assert "a.yaml: scenario 'kill-it'" in info.value.errors[0]
    assert "b.yaml: scenario 'other'" in info.value.errors[1]


def test_duplicate_ids_across_files(tmp_path):
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD, "b.yaml")
    [err] = errors_of_dir(tmp_path)
    assert "b.yaml: scenario 'kill-it': id: duplicate id" in err


def errors_of_dir(path):
    with pytest.raises(MatrixError) as info:
        load_matrix(path)
    return info.value.errors


def test_yaml_syntax_and_shape_errors_name_the_file(tmp_path):
    assert "not valid YAML" in errors_of(tmp_path, "- id: [unclosed\n")[0]
    assert "must be a list of scenarios" in errors_of(tmp_path, "id: x\n")[0]


def test_a_key_given_twice_is_an_error_not_the_last_one_silently(tmp_path):
    twice = GOOD.replace("    settle_within_seconds: 30\n", "    settle_within_seconds: 30\n    settle_within_seconds: 300\n")
    twice = twice.replace("docker: {final: [CRASHED, FAILED]}", "docker: {final: CRASHED, final: FAILED}")
    errors = errors_of(tmp_path, twice + GOOD.replace("kill-it", "other-row"))
    assert errors == [
        f"{tmp_path / 'm.yaml'}: scenario 'kill-it': expect.settle_within_seconds: given twice (lines 10 and 11); "
        "YAML would keep only the last",
        f"{tmp_path / 'm.yaml'}: scenario 'kill-it': expect.backends.docker.final: given twice (lines 13 and 13); "
        "YAML would keep only the last"]  # the other row is valid; its own errors would follow
    # a YAML merge key is not a field given twice
    merged = textwrap.dedent(GOOD).replace("- id: kill-it", "- &base\n  id: base-row")
    merged += "- <<: *base\n  id: merged-row\n"
    assert [s.id for s in load_matrix(write(tmp_path, merged))] == ["base-row", "merged-row"]


def test_a_recursive_alias_is_an_error_naming_its_field_not_a_recursion_error(tmp_path):
    recursive = GOOD.replace("- id: kill-it", "- id: kill-it\n  labels: &loop {again: *loop}")
    assert errors_of(tmp_path, recursive) == [
        f"{tmp_path / 'm.yaml'}: scenario 'kill-it': labels.again: refers to itself (a recursive YAML alias, line 3)"]


def test_zombie_automation_needs_heartbeats(tmp_path):
    [err] = errors_of(tmp_path, GOOD.replace("faults:", "config: {zombie_automation_within: 90}\n  faults:"))
    assert "config.zombie_automation_within: needs heartbeat_seconds" in err


def test_oom_needs_a_memory_limit(tmp_path):
    [err] = errors_of(tmp_path, GOOD.replace("{kind: kill,", "{kind: oom,"))
    assert "scenario 'kill-it': faults.0.mem_limit: an oom fault needs a memory limit" in err
    load_matrix(write(tmp_path, GOOD.replace("{kind: kill,", "{kind: oom, mem_limit: 64Mi,")))


def test_api_faults_are_refused_on_kind(tmp_path):
    text = GOOD.replace("backends: [local]", "backends: [local, kind]").replace(
        "{kind: kill,", "{kind: api-error, status: 503,").replace("docker: {final", "kind: {final")
    [err] = errors_of(tmp_path, text)
    assert ": faults.0.kind: backend(s) kind have no 'api-error' fault" in err


def test_storm_fields(tmp_path):
    storm = GOOD.replace("{steps: 2}}", "{steps: 2}, runs: 5}").replace("{kind: kill,", "{kind: kill, share: 0.4,")
    [s] = load_matrix(write(tmp_path, storm.replace("final: crashed", "final: completed\n    faulted: {final: crashed}")))
    assert s.workload.runs == 5 and s.faults[0].share == 0.4 and s.expect.faulted.final == "CRASHED"
    [err] = errors_of(tmp_path, GOOD.replace("final: crashed", "final: completed\n    faulted: {final: crashed}"))
    assert ": expect.faulted: only a storm" in err
    [err] = errors_of(tmp_path, storm.replace("share: 0.4,", "target: worker, share: 0.4,"))
    assert "faults.0.share: kill hits what every run shares" in err


def test_at_least_counts_a_storms_runs(tmp_path):
    storm = GOOD.replace("parameters: {steps: 2}}", "parameters: {steps: 2}, runs: 4}").replace(
        "{kind: kill,", "{kind: kill, share: 0.5,")
    [s] = load_matrix(write(tmp_path, storm.replace("final: crashed", "final: crashed\n    at_least: {crashed: 2}")))
    assert s.expect.at_least == {"CRASHED": 2}
    [err] = errors_of(tmp_path, storm.replace("final: crashed", "final: crashed\n    at_least: {crashed: 5}"))
    assert "scenario 'kill-it': expect.at_least: 5 runs in all, more than the storm's 4" in err
    [err] = errors_of(tmp_path, GOOD.replace("final: crashed", "final: crashed\n    at_least: {crashed: 1}"))
    assert "scenario 'kill-it': expect.at_least: counts a storm's runs" in err
    [err] = errors_of(tmp_path, storm.replace("final: crashed", "final: crashed\n    at_least: {crashed: 0}"))
    assert "expect.at_least.CRASHED: " in err


def test_restart_database_needs_postgres(tmp_path):
    text = GOOD.replace("{kind: kill,", "{kind: restart-database, heal_after_seconds: 5,")
    [err] = errors_of(tmp_path, text)
    assert ": database: fault 0 restarts the database: say 'database: postgres'" in err
    [s] = load_matrix(write(tmp_path, text.replace("backends: [local]", "backends: [local]\n  database: postgres")))
    assert s.database == "postgres" and s.faults[0].target == "database"


def test_server_settings_are_the_servers_own_and_need_a_server_per_case(tmp_path):
    def with_server(env: str, backends: str = "[local]") -> str:
        return GOOD.replace("backends: [local]", f"backends: {backends}\n  server: {{env: {env}}}")

    [s] = load_matrix(write(tmp_path, with_server("{PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE: '1'}")))
    assert s.own_server and s.server.env == {"PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "1"}
    [plain] = load_matrix(write(tmp_path, GOOD))
    assert not plain.own_server and plain.server.env == {}
    [err] = errors_of(tmp_path, with_server("{PREFECT_CLIENT_MAX_RETRIES: '1'}"))
    assert "m.yaml: scenario 'kill-it': server.env: " in err
    assert "'PREFECT_CLIENT_MAX_RETRIES': only the server's own settings, PREFECT_SERVER_*" in err
    [err] = errors_of(tmp_path, with_server("{PREFECT_SERVER_API_PORT: '4200'}"))
    assert "server.env: " in err and "the harness sets it on every server it starts" in err
    [err] = errors_of(tmp_path, with_server("{PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE: '1'}", "[local, kind]"))
    assert "scenario 'kill-it': server.env: " in err and "not on kind" in err


def test_worker_settings_are_prefect_settings_the_harness_does_not_set(tmp_path):
    def with_worker(env: str) -> str:
        return GOOD.replace("backends: [local]", f"backends: [local]\n  worker: {{env: {env}}}")

    [s] = load_matrix(write(tmp_path, with_worker("{PREFECT_CLIENT_RETRY_EXTRA_CODES: '500'}")))
    assert s.worker.env == {"PREFECT_CLIENT_RETRY_EXTRA_CODES": "500"} and not s.own_server
    [err] = errors_of(tmp_path, with_worker("{HTTP_PROXY: x, PREFECT_API_URL: y}"))
    assert "scenario 'kill-it': worker.env: 'HTTP_PROXY': only Prefect settings, PREFECT_*; 'PREFECT_API_URL': " \
           "the harness sets it" in err


def test_restart_server_needs_heal_time(tmp_path):
    [err] = errors_of(tmp_path, GOOD.replace("{kind: kill,", "{kind: restart-server,"))
    assert "faults.0.heal_after_seconds: fault 'restart-server' needs it" in err


def test_a_cancel_is_of_the_flow_run_on_every_backend_and_never_heals(tmp_path):
    cancel = GOOD.replace("{kind: kill,", "{kind: cancel,").replace("backends: [local]", "backends: [local, docker, kind]")
    [s] = load_matrix(write(tmp_path, cancel))
    assert s.faults[0].target == "flow-run"
    [err] = errors_of(tmp_path, cancel.replace("{kind: cancel,", "{kind: cancel, target: worker,"))
    assert "faults.0.target: fault 'cancel' cannot target 'worker' (allowed: flow-run)" in err
    [err] = errors_of(tmp_path, cancel.replace("{kind: cancel,", "{kind: cancel, heal_after_seconds: 5,"))
    assert "faults.0.heal_after_seconds: fault 'cancel'" in err


def test_cpu_starve_needs_a_share_of_cpus_hits_a_flow_run_worker_or_server_and_may_heal(tmp_path):
    starve = GOOD.replace("{kind: kill,", "{kind: cpu-starve, cpus: 0.05,").replace(
        "backends: [local]", "backends: [local, docker, kind]")
    [s] = load_matrix(write(tmp_path, starve))
    assert (s.faults[0].target, s.faults[0].cpus) == ("flow-run", 0.05)
    for target in ("worker", "server"):
        healed = starve.replace("cpus: 0.05,", f"cpus: 0.05, target: {target}, heal_after_seconds: 30,")
        [s] = load_matrix(write(tmp_path, healed))
        assert (s.faults[0].target, s.faults[0].heal_after_seconds) == (target, 30)
    [err] = errors_of(tmp_path, starve.replace("cpus: 0.05,", ""))
    assert "faults.0.cpus: fault 'cpu-starve' needs it" in err
    [err] = errors_of(tmp_path, starve.replace("cpus: 0.05,", "cpus: 0,"))
    assert "faults.0.cpus:" in err and "greater than or equal to 0.001" in err
    [err] = errors_of(tmp_path, starve.replace("cpus: 0.05,", "cpus: 0.05, target: database,"))
    assert "faults.0.target: fault 'cpu-starve' cannot target 'database' (allowed: flow-run, server, worker)" in err
    [err] = errors_of(tmp_path, GOOD.replace("{kind: kill,", "{kind: kill, cpus: 1,"))
    assert "faults.0.cpus: only cpu-starve has 'cpus', not 'kill'" in err


BACKGROUND = GOOD.replace("{flow: pipeline, parameters: {steps: 2}}", "{flow: background, task_workers: 2}").replace(
    "{kind: kill, when", "{kind: kill, target: task-worker, when")


def test_task_workers_and_their_faults(tmp_path):
    [s] = load_matrix(write(tmp_path, BACKGROUND))
    assert s.workload.task_workers == 2 and s.faults[0].target == "task-worker" and s.faults[0].replicas == "running"
    # a killed replica may be started again (heal), which no other kill does
    [s] = load_matrix(write(tmp_path, BACKGROUND.replace("when:", "heal_after_seconds: 5, replicas: all, when:")))
    assert s.faults[0].heal_after_seconds == 5 and s.faults[0].replicas == "all"
    [s] = load_matrix(write(tmp_path, BACKGROUND.replace("task_workers: 2", "task_workers: 2, foreign_task_workers: 1")))
    assert s.workload.foreign_task_workers == 1
    # only another service's replicas serve the task: the scenario's own are down
    [s] = load_matrix(write(tmp_path, BACKGROUND.replace("task_workers: 2", "foreign_task_workers: 1")
                            .replace("target: task-worker", "target: flow-run")))
    assert (s.workload.task_workers, s.workload.foreign_task_workers) == (0, 1)
    cases = [
        (BACKGROUND.replace("backends: [local]", "backends: [local, docker]"),
         ": workload.task_workers: only the local backend starts task workers"),
        (BACKGROUND.replace("task_workers: 2", "task_workers: 0"),
         ": workload.task_workers: the background workload's tasks need task workers"),
        (GOOD.replace("{kind: kill, when", "{kind: kill, target: task-worker, when"),
         ": faults.0.target: no task workers to hit"),
        (GOOD.replace("{kind: kill, when", "{kind: kill, replicas: all, when"),
         ": faults.0.replicas: only a task-worker target has replicas, not 'flow-run'"),
        (BACKGROUND.replace("when: {task: step-1, state: running}", "when: {after_seconds: 3}"),
         ": faults.0.replicas: 'running' finds the replica by the trigger's task"),
        (GOOD.replace("{kind: kill, when", "{kind: kill, heal_after_seconds: 5, when"),
         ": faults.0.heal_after_seconds: fault 'kill' does not heal"),
        (GOOD.replace("{steps: 2}}", "{steps: 2}, task_worker_limit: 1}"),
         ": workload.task_worker_limit: there are no task workers"),
        (GOOD.replace("{steps: 2}}", "{steps: 2}, foreign_task_workers: 1}"),
         ": workload.foreign_task_workers: only the background workload's tasks are served by task workers"),
        (BACKGROUND.replace("task_workers: 2", "foreign_task_workers: 1").replace("backends: [local]", "backends: [docker]"),
         ": workload.foreign_task_workers: only the local backend starts task workers"),
        (BACKGROUND.replace("task_workers: 2", "task_workers: 2, foreign_task_workers: 9"),
         ": workload.foreign_task_workers: Input should be less than or equal to 8"),
    ]
    for text, words in cases:
        [err] = errors_of(tmp_path, text)
        assert words in err and "scenario 'kill-it'" in err, (words, err)


def test_select_by_glob_and_backend(tmp_path):
    scenarios = load_matrix(write(tmp_path, GOOD.replace("[local]", "[local, docker]")))
    assert [(s.id, b) for s, b in select(scenarios, ["kill-*"], ["local"])] == [("kill-it", "local")]
    assert select(scenarios, ["other"], ["local", "docker"]) == []
    assert len(select(scenarios, None, ["local", "docker"])) == 2


@pytest.mark.parametrize("text, value", [("256Mi", 256 * 2**20), ("1Gi", 2**30), ("512m", 512 * 2**20),
                                         ("500M", 500 * 10**6), ("1024", 1024)])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


def test_the_repository_matrix_is_valid(repo_root):
    assert len(load_matrix(repo_root / "scenarios")) >= 12


def test_the_quick_tier_tries_every_fault_kind_on_every_backend_with_no_row_to_spare(repo_root):
    """``run --tier quick``: for each backend, the quick rows together inject every fault kind it
    has, and each quick row is the only quick one for some (backend, kind): one row per fault kind
    per backend, the few minutes' way to try the harness."""
    from harness.model.faults import BACKEND_FAULTS

    scenarios = load_matrix(repo_root / "scenarios")
    quick = [s for s in scenarios if s.tier == "quick"]
    covers = {s.id: {(b, f.kind) for b in s.backends for f in s.faults} for s in quick}
    for backend, kinds in BACKEND_FAULTS.items():
        tried = {kind for cover in covers.values() for b, kind in cover if b == backend}
        assert tried == set(kinds), (backend, sorted(set(kinds) - tried))
    for sid, cover in covers.items():
        others = set().union(*(c for other, c in covers.items() if other != sid))
        assert cover - others, f"{sid} adds no (backend, fault kind) the other quick rows lack"
    assert {(s.id, b) for s, b in select(scenarios, None, list(BACKEND_FAULTS), tier="quick")} == \
        {(s.id, b) for s in quick for b in s.backends}
    assert len(select(scenarios, None, ["local"], tier="full")) == sum("local" in s.backends for s in scenarios)


def test_the_path_is_one_runs_not_a_storms():
    from harness.model.scenario import Scenario

    row = {"id": "storm-path", "title": "t", "backends": ["local"], "workload": {"flow": "pipeline", "runs": 5},
           "expect": {"final": "COMPLETED", "settle_within_seconds": 60, "backends": {"local": {"never": ["AwaitingRetry"]}}}}
    with pytest.raises(ValueError, match="expect.never: the path is one run's"):
        Scenario.model_validate(row)
    row["workload"]["runs"] = 1
    assert Scenario.model_validate(row).expect.for_backend("local").never == ["AwaitingRetry"]
