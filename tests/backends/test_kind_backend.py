"""The kind backend without a cluster: its cluster config, manifests, selectors, interlock and
fault-to-API-call mapping, each checked against the ``kubernetes`` client's own models and API
signatures; then one integration test that needs a real kind cluster and skips, saying why,
where none can start (this machine: kind's node image needs a registry)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from pathlib import Path
from unittest import mock

import pytest
import yaml

kubernetes = pytest.importorskip("kubernetes", reason="the kind extra is not installed")
from kubernetes import client  # noqa: E402

from harness.backends.kind import cluster as kind  # noqa: E402
from harness.backends.kind import kube, manifests
from harness.backends.kind.cluster import Mount  # noqa: E402
from harness.model.matrix import load_matrix
from harness.model.scenario import JobConfig  # noqa: E402
from harness.paths import SCENARIOS_DIR

SESSION, INSTANCE, NS = "ab12cd34", "kill-flow-process-1a2b3c", "chaos-ab12cd34"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
MOUNTS = [Mount(Path("/repo/flows"), True), Mount(Path("/tmp/chaos-harness-x/kind"))]


def roundtrip(manifest: dict, model) -> dict:
    """The manifest as the API would keep it: parsed into the client's model and serialized back.
    A misspelt or misplaced field disappears on the way."""
    return client.ApiClient().sanitize_for_serialization(model.from_dict(manifest))


def dropped(original, kept, path="") -> list[str]:
    """Paths present in ``original`` and missing from ``kept``."""
    if isinstance(original, dict):
        out = []
        for key, value in original.items():
            if not isinstance(kept, dict) or key not in kept:
                out.append(f"{path}/{key}")
            else:
                out += dropped(value, kept[key], f"{path}/{key}")
        return out
    if isinstance(original, list) and isinstance(kept, list):
        return [p for i, (a, b) in enumerate(zip(original, kept)) for p in dropped(a, b, f"{path}/{i}")]
    return []


MODELS = {"Namespace": client.V1Namespace, "ServiceAccount": client.V1ServiceAccount, "Role": client.V1Role,
          "RoleBinding": client.V1RoleBinding, "Service": client.V1Service, "EndpointSlice": client.V1EndpointSlice,
          "Deployment": client.V1Deployment, "Pod": client.V1Pod, "Job": client.V1Job}


def all_labels(manifest: dict) -> list[dict]:
    found = []
    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("labels"), dict):
                found.append(node["labels"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(manifest)
    return found


# -- the cluster ---------------------------------------------------------------------------------
def test_kind_config_has_a_control_plane_two_labelled_workers_and_shared_mounts():
    config = kind.kind_config("chaos-ab12cd34", SESSION, MOUNTS)
    text = yaml.safe_dump(config)
    assert yaml.safe_load(text) == config and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["networking"]["apiServerAddress"] == "127.0.0.1"
    roles = [n["role"] for n in config["nodes"]]
    assert roles == ["control-plane", "worker", "worker"]
    workers = config["nodes"][1:]
    assert {n["labels"][kind.ROLE_LABEL] for n in workers} == {"prefect-worker", "flow-runs"}
    for node in config["nodes"]:
        assert node["labels"][kind.SESSION_LABEL] == SESSION
        assert set(node) <= {"role", "labels", "extraMounts"}
    for node in workers:  # the same path on the host and in the node: the ledger path is one path
        assert [(m["hostPath"], m["containerPath"], m["readOnly"]) for m in node["extraMounts"]] == [
            ("/repo/flows", "/repo/flows", True), ("/tmp/chaos-harness-x/kind", "/tmp/chaos-harness-x/kind", False)]


def test_label_values_are_valid_and_long_ones_stay_distinct():
    import re

    long_a, long_b = "x" * 70 + "-a", "x" * 70 + "-b"
    for text in ("ab12cd34", "kill-flow-process-1a2b3c", long_a, "a/b c", "-lead-"):
        assert re.match(LABEL_VALUE, kind.label_value(text)) and len(kind.label_value(text)) <= 63, text
    assert kind.label_value(long_a) != kind.label_value(long_b)


# -- the interlock -------------------------------------------------------------------------------
def test_the_context_the_harness_created_is_allowed():
    assert kind.check_context(None, [], created="kind-chaos-ab12cd34") == "kind-chaos-ab12cd34"


@pytest.mark.parametrize("requested, allowed", [
    ("kind-prod", []),                     # never allowed
    ("kind-prod", ["kind-*"]),             # a glob allows nothing
    ("kind-prod", ["kind-prod2"]),         # a near miss allows nothing
    ("gke_prod_us-east1_main", ["gke_prod_us-east1_main"]),  # allowed, but not a kind cluster
])
def test_a_context_the_harness_did_not_create_is_refused(requested, allowed):
    with pytest.raises(kind.ContextRefused) as refused:
        kind.check_context(requested, allowed, created=None)
    assert requested in str(refused.value)
    if not allowed or requested not in allowed:
        assert f"--chaos-allow-context {requested}" in str(refused.value)


def test_an_existing_context_named_twice_is_allowed():
    assert kind.check_context("kind-dev", ["kind-other", "kind-dev"], created=None) == "kind-dev"


def test_owned_needs_this_sessions_label():
    assert kind.owned({kind.SESSION_LABEL: SESSION}, SESSION)
    assert not kind.owned({kind.SESSION_LABEL: "other"}, SESSION)
    assert not kind.owned(None, SESSION)


def test_only_harness_named_clusters_are_ever_deleted():
    with pytest.raises(ValueError):
        kind.delete_cluster("kind")
    with pytest.raises(ValueError):
        kind.delete_cluster("prod")


# -- manifests -----------------------------------------------------------------------------------
def session_manifests() -> list[dict]:
    env = {"PREFECT_API_URL": manifests.server_url(NS)}
    return [manifests.namespace(NS, SESSION), *manifests.worker_rbac(NS, SESSION),
            *manifests.server_service(NS, SESSION, "172.18.0.5"),
            manifests.worker_deployment(NS, SESSION, INSTANCE, f"chaos-{INSTANCE}", "chaos-harness/prefect:3.8.8-x", env, MOUNTS),
            manifests.probe_pod(NS, SESSION, "chaos-harness/prefect:3.8.8-x", "/tmp/chaos-harness-x/kind/probe", MOUNTS)]


@pytest.mark.parametrize("manifest", session_manifests(), ids=lambda m: m["kind"])
def test_every_manifest_is_fully_understood_by_the_kubernetes_models(manifest):
    assert dropped(manifest, roundtrip(manifest, MODELS[manifest["kind"]])) == []


@pytest.mark.parametrize("manifest", session_manifests(), ids=lambda m: m["kind"])
def test_every_object_and_pod_template_carries_the_session_label(manifest):
    labels = all_labels(manifest)
    assert labels and all(kind.owned(ls, SESSION) or "kubernetes.io/service-name" in ls for ls in labels)
    assert kind.owned(manifest["metadata"]["labels"], SESSION)


def test_the_worker_deployment_selects_its_own_pods_and_stays_off_the_flow_run_node():
    d = manifests.worker_deployment(NS, SESSION, INSTANCE, "chaos-x", "img", {}, MOUNTS)
    spec = d["spec"]
    assert spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
    pod = spec["template"]["spec"]
    assert pod["nodeSelector"] == {kind.ROLE_LABEL: "prefect-worker"}
    assert pod["containers"][0]["imagePullPolicy"] == "Never"
    assert pod["containers"][0]["args"][:3] == ["prefect", "worker", "start"]
    assert "--type" in pod["containers"][0]["args"] and "kubernetes" in pod["containers"][0]["args"]


def render_job(template: dict, values: dict) -> dict:
    """prefect-kubernetes' own rendering: the Job its worker would submit for a flow run."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    async def render():
        async with PrefectClient("http://127.0.0.1:9/api") as unused:  # nothing in the template needs the API
            return await KubernetesWorkerJobConfiguration.from_template_and_values(template, values, client=unused)

    configuration = asyncio.run(render())
    configuration.prepare_for_flow_run(FlowRun(id=uuid.uuid4(), name="fr", flow_id=uuid.uuid4()))
    return configuration.job_manifest


@pytest.mark.parametrize("job, limit", [(JobConfig(), None), (JobConfig(backoff_limit=3), "536870912")])
def test_the_base_job_template_renders_through_prefect_kubernetes_into_a_valid_job(job, limit):
    from harness.backends.kind.system import default_job_template

    template = manifests.base_job_template(default_job_template(), SESSION, INSTANCE, MOUNTS, job, limit)
    values = {"image": "img:1", "image_pull_policy": "Never", "namespace": NS, "env": {"A": "1"},
              "labels": manifests.session_labels(SESSION, INSTANCE)}
    manifest = render_job(template, values)
    # the only fields the API drops are the two the default template misplaces (and requires)
    assert dropped(manifest, roundtrip(manifest, client.V1Job)) == [
        "/spec/template/spec/completions", "/spec/template/spec/parallelism"]
    pod = manifest["spec"]["template"]
    assert kind.owned(pod["metadata"]["labels"], SESSION) and pod["metadata"]["labels"][kind.ROLE_LABEL] == "flow-run"
    assert kind.owned(manifest["metadata"]["labels"], SESSION)
    assert manifest["metadata"]["namespace"] == NS
    assert manifest["spec"]["backoffLimit"] == (job.backoff_limit or 0)
    assert pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    assert [m["mountPath"] for m in container["volumeMounts"]] == [str(m.path) for m in MOUNTS]
    assert {v["hostPath"]["path"] for v in pod["spec"]["volumes"]} == {str(m.path) for m in MOUNTS}
    assert container.get("resources", {}).get("limits", {}).get("memory") == limit
    env = {e["name"]: e.get("value") for e in container["env"]}
    # what prefect-kubernetes itself decides from backoffLimit: the measured rows depend on it
    assert env.get("PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR") == ("reschedule" if not job.backoff_limit else "relinquish")


def test_prefect_kubernetes_refuses_any_restart_policy_but_never():
    """Why no scenario varies restartPolicy: the worker's own validation rejects the template."""
    from harness.backends.kind.system import default_job_template

    template = manifests.base_job_template(default_job_template(), SESSION, INSTANCE, MOUNTS, JobConfig(), None)
    template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    with pytest.raises(ValueError, match="restartPolicy must have value 'Never'"):
        render_job(template, {"image": "img:1", "namespace": NS})


# -- selectors and fault mapping against the client's API signatures -----------------------------
def pod(name: str, *, session=SESSION, job="job-a", phase="Running", node="chaos-ab12cd34-worker2",
        deleting=False, terminated: client.V1ContainerStateTerminated | None = None, role="flow-run",
        container_id="containerd://abc123") -> client.V1Pod:
    labels = {kind.SESSION_LABEL: session, kind.INSTANCE_LABEL: INSTANCE, kind.ROLE_LABEL: role,
              "batch.kubernetes.io/job-name": job}
    state = client.V1ContainerState(terminated=terminated) if terminated else client.V1ContainerState(
        running=client.V1ContainerStateRunning())
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, namespace=NS, labels=labels,
                                     creation_timestamp=dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc),
                                     deletion_timestamp=dt.datetime.now(dt.timezone.utc) if deleting else None),
        spec=client.V1PodSpec(node_name=node, containers=[client.V1Container(name=manifests.CONTAINER, image="i")]),
        status=client.V1PodStatus(phase=phase, container_statuses=[client.V1ContainerStatus(
            name=manifests.CONTAINER, image="i", image_id="", ready=True, restart_count=0, state=state,
            container_id=container_id)]))


def apis():
    core = mock.create_autospec(client.CoreV1Api, instance=True)  # a wrong argument is a TypeError
    batch = mock.create_autospec(client.BatchV1Api, instance=True)
    return core, batch


def test_flow_run_pods_are_selected_by_labels_and_filtered_to_this_sessions_live_pods():
    core, batch = apis()
    batch.list_namespaced_job.return_value = client.V1JobList(items=[client.V1Job(metadata=client.V1ObjectMeta(name="job-a"))])
    core.list_namespaced_pod.return_value = client.V1PodList(items=[
        pod("p1"), pod("p2", phase="Failed"), pod("p3", deleting=True), pod("p4", job="job-b"),
        pod("p5", session="someone-else")])
    found = kube.flow_run_pods(core, batch, NS, SESSION, INSTANCE, "run-1")
    assert [p.metadata.name for p in found] == ["p1"]
    job_selector = batch.list_namespaced_job.call_args.kwargs["label_selector"]
    assert set(job_selector.split(",")) == {f"{kind.SESSION_LABEL}={SESSION}", f"{kind.INSTANCE_LABEL}={INSTANCE}",
                                           f"{manifests.FLOW_RUN_LABEL}=run-1"}
    pod_selector = core.list_namespaced_pod.call_args.kwargs["label_selector"]
    assert f"{kind.SESSION_LABEL}={SESSION}" in pod_selector and f"{kind.ROLE_LABEL}=flow-run" in pod_selector


@pytest.mark.parametrize("fault, grace", [("kill", 0), ("terminate", 7)])
def test_kill_and_terminate_delete_the_pod_with_their_grace(fault, grace):
    core, _ = apis()
    detail = kube.PodFault(fault, core, lambda: [pod("p1")], 7, SESSION).inject()
    core.delete_namespaced_pod.assert_called_once()
    args, kwargs = core.delete_namespaced_pod.call_args
    assert args == ("p1", NS) and isinstance(kwargs["body"], client.V1DeleteOptions)
    assert kwargs["body"].grace_period_seconds == grace and detail["grace_seconds"] == grace
    core.create_namespaced_pod_eviction.assert_not_called()


def test_evict_goes_through_the_eviction_api():
    core, _ = apis()
    kube.PodFault("evict", core, lambda: [pod("p1")], 5, SESSION).inject()
    core.delete_namespaced_pod.assert_not_called()
    name, namespace, body = core.create_namespaced_pod_eviction.call_args.args
    assert (name, namespace) == ("p1", NS) and isinstance(body, client.V1Eviction)
    assert body.metadata.name == "p1" and body.delete_options.grace_period_seconds == 5
    assert dropped(client.ApiClient().sanitize_for_serialization(body), roundtrip(
        client.ApiClient().sanitize_for_serialization(body), client.V1Eviction)) == []


def test_a_pod_without_this_sessions_label_is_never_touched():
    core, _ = apis()
    with pytest.raises(PermissionError):
        kube.PodFault("kill", core, lambda: [pod("intruder", session="other")], 0, SESSION).inject()
    core.delete_namespaced_pod.assert_not_called()


def test_drain_cordons_the_node_evicts_the_sessions_pods_there_and_uncordons_only_its_own():
    core, _ = apis()
    node = "chaos-ab12cd34-worker2"
    core.list_namespaced_pod.return_value = client.V1PodList(items=[pod("p1"), pod("w1", role="worker")])
    drain = kube.DrainFault(core, lambda: [pod("p1")], NS, SESSION, 5)
    detail = drain.inject()
    assert detail == {"node": node, "cordoned": True, "evicted": ["p1", "w1"]}
    patched_node, patch = core.patch_node.call_args.args
    assert patched_node == node and patch["spec"] == {"unschedulable": True}
    assert patch["metadata"]["annotations"] == {kind.CORDONED_BY: SESSION}
    kwargs = core.list_namespaced_pod.call_args.kwargs
    assert kwargs["field_selector"] == f"spec.nodeName={node}" and f"{kind.SESSION_LABEL}={SESSION}" in kwargs["label_selector"]
    assert core.create_namespaced_pod_eviction.call_count == 2
    # heal: uncordon, but only a node whose annotation says this session cordoned it
    core.read_node.return_value = client.V1Node(metadata=client.V1ObjectMeta(name=node, annotations={kind.CORDONED_BY: SESSION}))
    assert drain.heal() == {"uncordoned": True}
    assert core.patch_node.call_args.args[1]["spec"] == {"unschedulable": False}
    core.reset_mock()
    core.read_node.return_value = client.V1Node(metadata=client.V1ObjectMeta(name=node, annotations={kind.CORDONED_BY: "other"}))
    assert kube.uncordon(core, node, SESSION) is False
    core.patch_node.assert_not_called()


class NodeContainer:
    def __init__(self, name, cluster, role="worker"):
        self.name, self.status = name, "running"
        self.labels = {kind.KIND_CLUSTER_LABEL: cluster, kind.KIND_ROLE_LABEL: role}
        self.calls = []

    def exec_run(self, argv):
        self.calls.append(argv)
        return 0, b""

    def pause(self):
        self.calls.append("pause"); self.status = "paused"

    def unpause(self):
        self.calls.append("unpause"); self.status = "running"

    def stop(self, timeout):
        self.calls.append("stop"); self.status = "exited"

    def start(self):
        self.calls.append("start"); self.status = "running"

    def reload(self):
        pass


class Docker:
    def __init__(self, *nodes):
        self.nodes = {n.name: n for n in nodes}
        self.containers = self

    def get(self, name):
        return self.nodes[name]


def cluster() -> kind.KindCluster:
    return kind.KindCluster("chaos-ab12cd34", None, "kind-chaos-ab12cd34", True, "kind")


def test_freeze_pauses_the_pods_container_through_the_nodes_containerd_and_resumes_it():
    node = NodeContainer("chaos-ab12cd34-worker2", "chaos-ab12cd34")
    freeze = kube.ContainerFreeze(cluster(), Docker(node), lambda: [pod("p1")], manifests.CONTAINER)
    assert freeze.inject()["containerd_tasks"] == ["abc123"]
    assert freeze.heal() == {"resumed": ["abc123"]}
    assert node.calls == [["ctr", "--namespace", "k8s.io", "tasks", "pause", "abc123"],
                          ["ctr", "--namespace", "k8s.io", "tasks", "resume", "abc123"]]


def test_cpu_starve_sets_and_lifts_the_quota_of_the_pods_container_in_its_node():
    node = NodeContainer("chaos-ab12cd34-worker2", "chaos-ab12cd34")
    starve = kube.ContainerCpuStarve(cluster(), Docker(node), lambda: [pod("p1")], manifests.CONTAINER, 0.05)
    detail = starve.inject()
    assert (detail["quota_us"], detail["period_us"], detail["pods"]) == (5000, 100_000, ["p1"])
    assert starve.heal() == {"lifted": ["abc123"]}
    (inject, heal) = node.calls
    assert inject[:2] == heal[:2] == ["sh", "-c"]
    assert inject[2] == kube.cpu_quota_script("abc123", 5000, 100_000)
    assert heal[2] == kube.cpu_quota_script("abc123", None, 100_000)
    assert starve.close() == {}  # lifted already: nothing left to do


def test_a_container_that_is_not_a_node_of_the_harness_cluster_is_refused():
    stranger = NodeContainer("chaos-ab12cd34-worker2", "someone-elses-cluster")
    with pytest.raises(LookupError):
        kube.ContainerFreeze(cluster(), Docker(stranger), lambda: [pod("p1")], manifests.CONTAINER).inject()
    assert stranger.calls == []


@pytest.mark.parametrize("how, injected, healed", [("pause", ["pause"], ["unpause"]), ("stop", ["stop"], ["start"])])
def test_node_loss_pauses_or_stops_the_node_container_and_brings_it_back(how, injected, healed):
    node = NodeContainer("chaos-ab12cd34-worker2", "chaos-ab12cd34")
    loss = kube.NodeLoss(cluster(), Docker(node), lambda: [pod("p1")], how)
    assert loss.inject() == {"node": node.name, "how": how}
    assert node.calls == injected
    loss.heal()
    assert node.calls == injected + healed


def test_node_loss_never_takes_the_control_plane():
    plane = NodeContainer("chaos-ab12cd34-control-plane", "chaos-ab12cd34", role="control-plane")
    with pytest.raises(PermissionError):
        kube.NodeLoss(cluster(), Docker(plane), lambda: [pod("p1", node=plane.name)], "pause").inject()
    assert plane.calls == []


# -- evidence --------------------------------------------------------------------------------------
def test_pod_evidence_reports_oomkilled_exit_codes_and_evictions():
    oom = pod("p1", phase="Failed", terminated=client.V1ContainerStateTerminated(exit_code=137, reason="OOMKilled"))
    e = kube.pod_evidence(oom, {"job-a": "run-1"})
    assert (e["flow_run_id"], e["status"], e["exit_code"], e["oom_killed"], e["container_reason"]) == (
        "run-1", "Failed", 137, True, "OOMKilled")
    evicted = pod("p2", phase="Failed", terminated=client.V1ContainerStateTerminated(exit_code=0, reason="Completed"))
    evicted.status.reason = "Evicted"
    e = kube.pod_evidence(evicted, {})
    assert (e["reason"], e["oom_killed"], e["exit_code"], e["flow_run_id"]) == ("Evicted", False, 0, None)
    running = kube.pod_evidence(pod("p3", deleting=True), {})
    assert running["oom_killed"] is None and running["exit_code"] is None and running["deleted"] is True


def test_the_checker_reads_kubernetes_evidence_like_dockers():
    from harness.model.check import figures
    from harness.model.history import FlowRun, History, State

    main = FlowRun(id="run-1", flow_name="pipeline", role="main", run_count=1,
                   states=[State("RUNNING", "Running", 1.0, None), State("CRASHED", "Crashed", 2.0, "No active")])
    history = History(scenario="s", backend="kind", started_at=0.0, ended_at=3.0, bound_seconds=60, flow_runs=[main])
    oom = pod("p1", phase="Failed", terminated=client.V1ContainerStateTerminated(exit_code=137, reason="OOMKilled"))
    history.infrastructure = [kube.pod_evidence(oom, {"job-a": "run-1"})]
    fig = figures(history)
    assert fig["oom_killed"] is True and fig["exit_code"] == 137


# -- the matrix ------------------------------------------------------------------------------------
def test_every_kind_expectation_says_it_is_unverified_until_a_cluster_has_run_it():
    """A tripwire: when the nightly kind job has measured a row, its expectation is rewritten
    from the journal and loses the mark, and this list shrinks with it."""
    matrix = load_matrix(SCENARIOS_DIR)
    kind_rows = [s for s in matrix if "kind" in s.backends]
    assert len(kind_rows) >= 10
    for s in kind_rows:
        assert s.expect.for_backend("kind").unverified, s.id


def test_kind_only_faults_are_refused_on_other_backends(tmp_path):
    from harness.model.matrix import MatrixError

    (tmp_path / "m.yaml").write_text(yaml.safe_dump([{
        "id": "evict-locally", "title": "t", "backends": ["local", "kind"],
        "workload": {"flow": "pipeline"}, "faults": [{"kind": "evict", "when": {"after_seconds": 1}}],
        "expect": {"final": "COMPLETED", "settle_within_seconds": 10}}]))
    with pytest.raises(MatrixError) as err:
        load_matrix(tmp_path)
    assert "scenario 'evict-locally': faults.0.kind: backend(s) local have no 'evict' fault" in str(err.value)


# -- a flow of your own ---------------------------------------------------------------------------
def test_an_own_flows_code_is_copied_where_every_node_looks_without_environments(tmp_path):
    """A node sees only the session's shared directory: the flow's directory goes there, its
    virtualenv, git history and caches left behind; staged once per session."""
    from harness.backends.kind.system import stage_code
    from harness.model.scenario import Workload

    project = tmp_path / "project"
    for rel in ("etl.py", "lib/helpers.py", ".venv/lib/big.py", ".git/HEAD", "lib/__pycache__/h.pyc"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text("def etl(): pass\n" if rel == "etl.py" else "x = 1\n")
    workload = Workload.model_validate({"flow": "etl.py:etl"}, context={"base": project})
    shared = tmp_path / "shared" / "code"
    staged = stage_code(workload, shared)
    assert staged.parent == shared
    assert sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file()) == ["etl.py", "lib/helpers.py"]
    (project / "etl.py").write_text("def etl(): return 2\n")
    assert stage_code(workload, shared) == staged  # once a session: a case does not copy it again


def test_a_module_entrypoint_copies_its_package_only(tmp_path, monkeypatch):
    from harness.backends.kind.system import stage_code
    from harness.model.scenario import Workload

    site = tmp_path / "site-packages"
    (site / "mypipes").mkdir(parents=True)
    (site / "mypipes" / "__init__.py").write_text("")
    (site / "mypipes" / "nightly.py").write_text("def run(): pass\n")
    (site / "otherpkg").mkdir()
    (site / "otherpkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    staged = stage_code(Workload(flow="mypipes.nightly:run"), tmp_path / "code")
    assert sorted(p.name for p in staged.iterdir()) == ["mypipes"]
    assert (staged / "mypipes" / "nightly.py").is_file()


def test_a_code_directory_too_large_to_copy_names_the_field(tmp_path):
    from harness.backends.kind.system import stage_code
    from harness.model.scenario import Workload

    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "flow.py").write_text("def f(): pass\n")
    (tmp_path / "big" / "data.bin").write_bytes(b"x" * 4096)
    workload = Workload.model_validate({"flow": "big/flow.py:f"}, context={"base": tmp_path})
    with pytest.raises(ValueError, match="@workload.path: .*big holds more than"):
        stage_code(workload, tmp_path / "code", limit=1024)
    assert not list((tmp_path / "code").iterdir())  # no half copy left to be taken for a whole one


def test_an_own_flows_job_runs_from_the_copy_in_its_own_image(tmp_path, monkeypatch):
    """The job variables a kind case registers for a flow of its own: its image (loaded into the
    nodes once), the staged code first on the path, then the harness, then the image's own path."""
    from harness.backends.kind.system import KindSystem
    from harness.model.scenario import Scenario

    (tmp_path / "etl.py").write_text("def etl(): pass\n")
    scenario = Scenario.model_validate({
        "id": "mine", "title": "mine", "backends": ["kind"], "workload": {"flow": "etl.py:etl"},
        "config": {"job": {"image": "my-etl:1.0"}}, "expect": {"final": "COMPLETED", "settle_within_seconds": 60}},
        context={"base": tmp_path})
    loads: list[str] = []
    system = KindSystem.__new__(KindSystem)
    system.image, system.loaded, system.ns, system.session = "chaos-harness/prefect:x", {"chaos-harness/prefect:x"}, NS, SESSION
    system.cluster = mock.Mock(load_image=loads.append)

    class Image:
        attrs = {"Config": {"Env": ["PATH=/usr/bin", "PYTHONPATH=/opt/etl-lib"]}}

    system.docker = mock.Mock(images=mock.Mock(get=lambda ref: Image()))
    code = tmp_path / "staged"
    for _ in range(2):
        image = system._image(scenario)
        job = system._job_variables(scenario, INSTANCE, tmp_path / "home", tmp_path / "home" / "ledger.jsonl", code,
                                    image)
    assert job["image"] == "my-etl:1.0" and loads == ["my-etl:1.0"]
    path = job["env"]["PYTHONPATH"].split(os.pathsep)
    assert path[1] == str(code) and path[-1] == "/opt/etl-lib" and path[0].endswith("/tracer")


# -- a real cluster --------------------------------------------------------------------------------
def kind_system(chaos_session):
    """The session's kind system; skips, saying why, where kind cannot start a cluster (no kind
    binary and no download, no Docker, no node image), unless CHAOS_REQUIRE_BACKENDS names kind."""
    from harness.backends import Unavailable

    if os.environ.get("CHAOS_KIND_SKIP"):
        pytest.skip("CHAOS_KIND_SKIP is set")
    try:
        return chaos_session.system("kind")
    except Unavailable as exc:
        if "kind" in os.environ.get("CHAOS_REQUIRE_BACKENDS", "").split(","):
            pytest.fail(f"kind is required but no cluster could start: {exc}", pytrace=False)
        pytest.skip(f"no kind cluster can start here: {exc}")


@pytest.mark.kind
@pytest.mark.integration
def test_a_scenario_runs_on_a_real_kind_cluster(chaos_session, chaos_journal):
    """kill-flow-process on a kind cluster the harness creates."""
    from harness.run.case import run_scenario

    system = kind_system(chaos_session)
    scenario = next(s for s in load_matrix(SCENARIOS_DIR)
                    if s.id == "kill-flow-process")
    result = run_scenario(scenario, system, chaos_journal)
    assert result["history"]["faults"][0]["detail"]["api"] == "delete"
    assert result["verdict"]["outcome"] in ("pass", "fail")  # measured; the matrix says which


@pytest.mark.kind
@pytest.mark.integration
def test_a_flow_of_your_own_runs_on_a_real_kind_cluster(chaos_session, tmp_path):
    """A flow in a directory no node mounts: its code is copied where the pods look, it runs,
    the tracer counts its task, and it writes into its case directory on the host."""
    from harness.chaos import Chaos

    kind_system(chaos_session)
    project = tmp_path / "project"
    project.mkdir()
    (project / "hello.py").write_text(
        "from pathlib import Path\nfrom prefect import flow, task\n\n\n@task\ndef greet(out: str) -> None:\n"
        "    Path(out).write_text('hello from a pod')\n\n\n@flow\ndef hello(out: str) -> None:\n    greet(out)\n")
    with Chaos("kind", session=chaos_session) as chaos:
        result = chaos.run(f"{project / 'hello.py'}:hello", parameters={"out": "{case}/out.txt"}, bound=300)
    assert result.final == "COMPLETED", result.message
    assert result.executions["greet"] == 1
    assert Path(result.parameters["out"]).read_text() == "hello from a pod"
