"""The local backend against a real Prefect server: worker shutdown, OOM evidence, targeting."""

import time

import psutil
import pytest

from harness import ledger
from harness.backends.local import cgroups
from harness.model.journal import Journal
from harness.model.journal import read as read_journal
from harness.model.matrix import load_matrix
from harness.model.scenario import Scenario
from harness.run.case import run_scenario
from harness.sut import procs

pytestmark = pytest.mark.integration


def scenario(**overrides) -> Scenario:
    row = {
        "id": "oom-probe", "title": "OOM evidence", "backends": ["local"],
        "workload": {"flow": "memory_hog", "parameters": {"mb": 256, "prepare_seconds": 2}},
        "config": {"job": {"mem_limit": "64Mi"}},
        "faults": [{"kind": "oom", "when": {"task": "prepare", "state": "running"}}],
        "expect": {"final": "CRASHED", "settle_within_seconds": 90},
    }
    row.update(overrides)
    return Scenario.model_validate(row)


WORKER_FAULT = [{"kind": "kill-worker", "when": {"task": "prepare", "state": "running"}}]


def test_worker_shutdown_is_certain_and_touches_nothing_else(local):
    bystander = psutil.Popen(["sleep", "60"])  # not the harness's: must survive every cleanup
    try:
        with local.deploy(scenario(faults=WORKER_FAULT), "probe-worker") as deployed:
            worker = deployed.extra["worker"]
            assert worker.running() and not deployed.extra["shared_worker"]
        assert not procs.alive(worker.pid)
        assert procs.find(local.session, CHAOS_INSTANCE="probe-worker") == []
        assert bystander.is_running()
    finally:
        bystander.kill()


def test_a_scenarios_worker_settings_reach_its_worker_and_no_other(local):
    mine = {"PREFECT_CLIENT_RETRY_EXTRA_CODES": "500", "PREFECT_WORKER_QUERY_SECONDS": "2"}
    with local.deploy(scenario(faults=[], worker={"env": mine}), "probe-settings") as deployed, \
            local.deploy(scenario(faults=[]), "probe-plain") as plain:
        assert not deployed.extra["shared_worker"] and plain.extra["shared_worker"]
        env = psutil.Process(deployed.extra["worker"].pid).environ()
        assert {k: env.get(k) for k in mine} == mine
        assert env["PREFECT_API_URL"] == local.server.api_url  # still the harness's
        other = psutil.Process(plain.extra["worker"].pid).environ()
        assert "PREFECT_CLIENT_RETRY_EXTRA_CODES" not in other and other["PREFECT_WORKER_QUERY_SECONDS"] == "1"


def test_cases_whose_rows_spare_the_worker_share_one_that_outlives_them(local):
    """Rows whose faults never reach a worker run on one shared worker, each case in a queue of
    its own: both runs complete on the same worker process, which outlives both cases; a case's
    flow-run processes carry its instance (for its cleanup) although the worker does not."""
    quick = {"workload": {"flow": "pipeline", "parameters": {"steps": 1, "sleep": 0}}, "config": {}, "faults": [],
             "expect": {"final": "COMPLETED", "settle_within_seconds": 60}}
    first = run_scenario(scenario(id="shared-a", title="a", **quick), local)
    worker = local.shared_worker.worker
    second = run_scenario(scenario(id="shared-b", title="b", **quick), local)
    assert [e["verdict"]["figures"]["final"] for e in (first, second)] == ["COMPLETED", "COMPLETED"]
    assert local.shared_worker.worker is worker and worker.running() and local.shared_worker.starts == 1
    assert [w["name"] for w in local.api.workers(local.shared_worker.pool)] == [f"{local.shared_worker.pool}-worker"]
    queues = local.api._call("POST", f"/work_pools/{local.shared_worker.pool}/queues/filter", json={})
    assert {q["name"] for q in queues} <= {"default"}  # each case's queue went with it
    for entry in (first, second):
        assert entry["history"]["flow_runs"][0]["id"] in local.shared_worker.log.read_text()
    with local.deploy(scenario(id="shared-c", title="c", **{**quick, "workload": {
            "flow": "pipeline", "parameters": {"steps": 1, "sleep": 60}}}), "probe-shared-orphan") as deployed:
        run_id = local.api.create_flow_run(deployed.deployment_id, {"steps": 1, "sleep": 60}, ["chaos"])
        found = procs.find(local.session, PREFECT__FLOW_RUN_ID=run_id)
        deadline = time.monotonic() + 60
        while not found and time.monotonic() < deadline:
            time.sleep(0.5)
            found = procs.find(local.session, PREFECT__FLOW_RUN_ID=run_id)
        assert found and all(p.environ()["CHAOS_INSTANCE"] == "probe-shared-orphan" for p in found)
    assert procs.find(local.session, CHAOS_INSTANCE="probe-shared-orphan") == []  # the case's cleanup ended it
    assert worker.running()  # and left the shared worker alone


def test_a_shared_worker_that_died_is_started_again_for_the_next_case(local):
    worker = local.shared_worker.ensure()
    starts = local.shared_worker.starts
    worker.stop(grace=0)
    entry = run_scenario(scenario(id="shared-again", title="again", workload={"flow": "pipeline", "parameters": {
        "steps": 1, "sleep": 0}}, config={}, faults=[], expect={"final": "COMPLETED", "settle_within_seconds": 60}),
        local)
    assert entry["verdict"]["figures"]["final"] == "COMPLETED"
    assert local.shared_worker.starts == starts + 1 and local.shared_worker.worker.running()


@pytest.mark.skipif(cgroups.version() is None, reason="no memory cgroup hierarchy mounted")
def test_oom_through_a_memory_cgroup_is_recorded_as_a_kernel_oom_kill(local):
    result = run_scenario(scenario(), local)
    fault = result["history"]["faults"][0]
    if fault["detail"].get("mechanism") == "rss-watchdog":
        pytest.skip(f"no writable memory cgroup here: {fault['detail']['why_not_cgroup']}")
    assert fault["detail"]["mechanism"] in ("cgroup-v1", "cgroup-v2")
    assert fault["detail"]["oom_kills"] >= 1
    assert result["verdict"]["figures"]["final"] == "CRASHED"
    assert cgroups.leftovers(local.session) == []


def test_oom_falls_back_to_an_rss_watchdog_and_says_so(local, monkeypatch):
    monkeypatch.setenv("CHAOS_OOM_MECHANISM", "watchdog")
    result = run_scenario(scenario(), local)
    detail = result["history"]["faults"][0]["detail"]
    assert detail["mechanism"] == "rss-watchdog"
    assert detail["watchdog_killed_at"] is not None
    assert result["verdict"]["figures"]["final"] == "CRASHED"


def test_background_runs_go_only_to_their_own_scenarios_replicas(local, repo_root, tmp_path):
    """Another scenario's replicas, idle on the same server (as when deployed ahead of their turn),
    take none of this scenario's task runs.  The server hands a ``.delay()``-ed run to any replica
    of its task key; before the key carried the scenario instance, the other replicas took the
    baseline's step-3, could not read its parameters (another result storage) and deleted it."""
    rows = {s.id: s for s in load_matrix(repo_root / "scenarios" / "background.yaml")}
    with local.deploy(rows["background-kill-replica-mid-task"], "bystander-replicas") as bystander:
        entry = run_scenario(rows["background-baseline"], local, Journal(tmp_path / "journal-b.jsonl"))
        assert ledger.read(bystander.ledger)[0] == []  # the bystanders executed nothing
    assert entry["verdict"]["outcome"] == "pass", entry["verdict"]
    assert "logs" not in entry and not (tmp_path / "logs").exists()  # a case that passed keeps none


def test_a_heal_past_the_bound_is_watched_for_the_quiet_period_after_it(local, tmp_path):
    """A freeze healed after the settle bound (as when a loaded machine starts the run late): the
    harness watches the resumed process for the quiet period past the heal, and the verdict rests
    on what it did, not on the state it had when the bound came."""
    row = scenario(id="heal-past-bound", title="a heal past the bound",
                   workload={"flow": "pipeline", "parameters": {"steps": 2, "sleep": 2}}, config={},
                   faults=[{"kind": "freeze", "when": {"task": "step-1", "state": "running"}, "heal_after_seconds": 30}],
                   quiet_seconds=5, expect={"final": "COMPLETED", "settle_within_seconds": 25})
    journal = Journal(tmp_path / "journal-h.jsonl")
    entry = run_scenario(row, local, journal)
    fault, history = entry["history"]["faults"][0], entry["history"]
    assert fault["healed_at"] is not None and history["ended_at"] >= fault["healed_at"] + 5
    assert entry["verdict"]["figures"]["final"] == "COMPLETED"  # seen after the heal, before: RUNNING
    assert entry["verdict"]["figures"]["executions"] == {"step-1": 1, "step-2": 1}
    # the watch's polls, each answered by the live server: never long without an answer
    polls = entry["timing"]["polls"]
    assert polls["count"] > 20 and polls["unanswered"] == 0
    assert 0 < polls["slowest"] <= polls["blind"] < entry["timing"]["watch"] / 4
    # the run did settle late, and the verdict says so rather than that it never completed
    assert entry["verdict"]["outcome"] == "fail"
    assert [r for r in entry["verdict"]["reasons"] if not r.startswith("settled after")] == []
    # a case that did not pass keeps its logs beside the journal, before cleanup deletes them: the
    # worker's (the flow run's output too), and the server's since the case began (often empty:
    # Prefect's server logs no request at its default level)
    logs = entry["logs"]
    kept = tmp_path / logs["dir"]
    assert logs["dir"] == f"logs/journal-h/{entry['instance']}" and logs["problems"] == []
    assert sorted(logs["files"]) == ["server.log", "shared-worker.log"]  # its row spares the worker: shared
    run_id = history["flow_runs"][0]["id"]
    assert run_id in (kept / "shared-worker.log").read_text()
    assert (kept / "server.log").is_file()
    assert entry == list(read_journal(journal.path))[0]


def test_a_delayed_trigger_fires_that_long_after_the_state_was_seen(local):
    """``{flow_state: running, after_seconds: 3}``: the kill lands 3 s into the run (as the API
    timestamps RUNNING), not 3 s after its creation, nor as soon as RUNNING is seen."""
    row = scenario(id="delayed-trigger", title="a delayed trigger",
                   workload={"flow": "pipeline", "parameters": {"steps": 3, "sleep": 2}}, config={},
                   faults=[{"kind": "kill", "when": {"flow_state": "running", "after_seconds": 3}}],
                   expect={"final": "CRASHED", "settle_within_seconds": 60})
    entry = run_scenario(row, local)
    fault, run = entry["history"]["faults"][0], entry["history"]["flow_runs"][0]
    running = [s["timestamp"] for s in run["states"] if s["type"] == "RUNNING"]
    assert fault["error"] is None and running, ("killed before it ran", run["states"])
    running = running[0]
    # seen RUNNING one poll or so after the server's timestamp, then 3 s; the pipeline needs 6 s
    assert 3.0 <= fault["injected_at"] - running < 5.0, fault["injected_at"] - running
    assert entry["verdict"]["figures"]["final"] == "CRASHED"
    assert entry["verdict"]["figures"]["executions"]["step-1"] == 1


def test_a_delayed_triggers_clock_runs_while_an_earlier_fault_waits(local):
    """The second fault's clock starts when the run is first seen RUNNING, not when its turn
    comes: the first fault waits for step-2 (about 2 s in), and by then the second's 1 s has
    passed, so it fires right after the first instead of a second later."""
    row = scenario(id="delayed-clock", title="a delayed trigger's clock",
                   workload={"flow": "pipeline", "parameters": {"steps": 3, "sleep": 2}}, config={},
                   faults=[{"kind": "freeze", "when": {"task": "step-2", "state": "running"}, "heal_after_seconds": 1},
                           {"kind": "kill", "when": {"flow_state": "running", "after_seconds": 1}}],
                   expect={"final": "CRASHED", "settle_within_seconds": 60})
    entry = run_scenario(row, local)
    freeze, kill = entry["history"]["faults"]
    assert freeze["error"] is None and kill["error"] is None, (freeze, kill)
    assert kill["injected_at"] - freeze["injected_at"] < 0.9, kill["injected_at"] - freeze["injected_at"]
    assert entry["verdict"]["figures"]["executions"]["step-2"] == 1


def test_a_cancel_of_a_run_that_already_ended_finds_no_target(local):
    """A cancel whose run ended first is refused by the server (a terminal state is final): that
    is reported as a kill's vanished process is, a LookupError (a storm counts it as not fired),
    not as the server failing the harness."""
    from harness.model.faults import CancelRun

    row = scenario(id="cancel-too-late", title="a cancel after the end",
                   workload={"flow": "pipeline", "parameters": {"steps": 1, "sleep": 0}}, config={},
                   faults=[], expect={"final": "COMPLETED", "settle_within_seconds": 60})
    entry = run_scenario(row, local)
    assert entry["verdict"]["figures"]["final"] == "COMPLETED"
    run_id = entry["history"]["flow_runs"][0]["id"]
    with pytest.raises(LookupError, match=r"already ended \(COMPLETED\); the server answered (REJECT|ABORT)"):
        CancelRun(local.api, run_id).inject()
    assert local.api.flow_run(run_id)["state"]["type"] == "COMPLETED"


def test_a_server_of_its_own_runs_with_the_cases_server_settings(local, tmp_path):
    """What ``private_system`` starts for a row with ``server.env``: its own server, with them."""
    from harness.backends import start

    def pool_size(system) -> int:
        return system.api._call("GET", "/admin/settings")["server"]["database"]["sqlalchemy"]["pool_size"]

    own = start("local", tmp_path, local.session, {"server_env": {"PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "3"}})
    try:
        server = psutil.Process(own.server.proc.popen.pid)
        assert own.server.api_url != local.server.api_url
        assert pool_size(own) == 3
        assert pool_size(local) == 5  # the shared server keeps Prefect's default
    finally:
        own.close()
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
