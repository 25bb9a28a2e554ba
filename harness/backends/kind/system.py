"""The ``kind`` backend: flow runs as Kubernetes Jobs of a prefect-kubernetes work pool.

Cluster: a kind cluster the session creates (``harness.backends.kind.cluster``), or an existing kind context the
user allows by name.  Everything goes into the session's namespace ``chaos-<session>``, labelled.
Server: the Prefect server in a testcontainers container on kind's Docker network, published on
127.0.0.1 for the harness and reachable from pods as the Service ``prefect-server`` (a selector-less
Service whose EndpointSlice names the container's address, updated when the server restarts).
Per scenario: a ``kubernetes`` work pool whose base job template carries the scenario's Job
(backoffLimit, restartPolicy, memory limit), served by a prefect-kubernetes worker running as a
Deployment on its own node; the image is the harness's own, loaded into the nodes by ``kind load``.
The workload, the ledger module and the scenario's ledger directory are host directories that
every node mounts at the same path (kind ``extraMounts``), so the ledger needs no API.  A flow of
your own is copied into the session's directory (which every node mounts) and runs from there, in
the harness's image or the row's ``job.image`` (``kind load``-ed into the nodes).
"""

from __future__ import annotations

import os
import re
import shutil
import zlib
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from harness.backends import Deployed
from harness.backends.docker import engine
from harness.backends.docker.objects import remove_backend_objects
from harness.backends.docker.server import ServerContainer
from harness.backends.docker.system import HARNESS_PKG, ContainerCpuStarve
from harness.backends.kind import kube, manifests
from harness.backends.kind.cluster import KIND_NETWORK, KindCluster, Mount, owned
from harness.backends.shared import ServerRestart, clean_env, flow_env, scenario_deployment
from harness.model.faults import CancelRun
from harness.model.fields import parse_bytes
from harness.model.scenario import FLOWS_DIR, FaultSpec, Scenario, Workload
from harness.sut import caselogs, procs
from harness.sut.api import APIError

SHARED_DIR_ENV = "CHAOS_KIND_SHARED_DIR"  # an existing cluster's shared directory (see `harness kind config`)
SETTLE_WAIT = 30.0  # a run reported terminal: its pod may still be terminating
# never copied with a flow's code: environments, caches and history, which no flow run imports
NOT_CODE = (".git", ".hg", ".venv", "venv", ".tox", ".nox", "node_modules", "__pycache__", "*.pyc",
            ".mypy_cache", ".pytest_cache", ".ruff_cache", "reports")
MAX_CODE_BYTES = 256 * 2**20


def stage_code(workload: Workload, into: Path, limit: int = MAX_CODE_BYTES) -> Path:
    """A copy of a flow of your own's code under ``into`` (a directory every node mounts at the
    same path), which its flow runs use as their code directory: a node sees no other host path,
    and a cluster that already exists cannot be given new mounts.  Copied: ``workload.path``, or
    the entrypoint file's directory, or, for a module entrypoint, its top-level package only (its
    directory is usually site-packages); without ``NOT_CODE``, and at most ``limit`` bytes."""
    source, top = workload.directory, workload.package
    staged = into / f"{re.sub(r'[^A-Za-z0-9_.-]', '-', source.name) or 'code'}-{zlib.crc32(str(source).encode()):08x}"
    if staged.is_dir():
        return staged
    ignore = shutil.ignore_patterns(*NOT_CODE)
    total = 0

    def copy(src: str, dst: str) -> str:
        nonlocal total
        total += os.path.getsize(src)
        if total > limit:
            raise ValueError(f"@workload.path: {source} holds more than {limit // 2**20} MiB of files to copy onto "
                             "the kind nodes; name the flow's own code directory in workload.path")
        return shutil.copy2(src, dst)

    part = staged.with_name(staged.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    try:
        if top is None:
            shutil.copytree(source, part, ignore=ignore, copy_function=copy, symlinks=False)
        elif (source / top).is_dir():
            shutil.copytree(source / top, part / top, ignore=ignore, copy_function=copy, symlinks=False)
        else:
            part.mkdir(parents=True)
            copy(str(source / f"{top}.py"), str(part / f"{top}.py"))
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    part.rename(staged)
    return staged


def default_job_template() -> dict[str, Any]:
    from prefect_kubernetes.worker import KubernetesWorker

    return KubernetesWorker.get_default_base_job_template()


def _options_cluster(session: str, workdir: Path, mounts: list[Mount], options: dict[str, Any]) -> KindCluster:
    context = options.get("kube_context")
    if context:
        return KindCluster.existing(context, list(options.get("allow_context") or []))
    return KindCluster.create(session, workdir, mounts, options.get("kube_version"))


class WorkerDeployment:
    """One scenario's prefect-kubernetes worker: a Deployment in the session's namespace."""

    def __init__(self, system: "KindSystem", instance: str, pool: str, settings: dict[str, str] | None = None):
        self.system, self.instance, self.pool = system, instance, pool
        env = {
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_LOGGING_TO_API_ENABLED": "false",
            **(settings or {}),  # the scenario's worker.env; what the worker needs to work here comes after
            "PREFECT_API_URL": manifests.server_url(system.ns),
            # the observer watches this namespace only: no cluster-wide permission needed
            "PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES": system.ns,
            # prefect-kubernetes before 0.8 reads the kube-system namespace's uid otherwise (a
            # cluster-scoped read its namespaced Role does not allow)
            "PREFECT_INTEGRATIONS_KUBERNETES_CLUSTER_UID": system.cluster_uid,
            "CHAOS_INSTANCE": instance,
        }
        self.manifest = manifests.worker_deployment(system.ns, system.session, instance, pool, system.image, env,
                                               system.mounts)
        self.name = self.manifest["metadata"]["name"]
        system.create(self.manifest)
        try:
            procs.wait_for(self._online, 180, 1, f"the prefect-kubernetes worker of pool {pool}", self._why)
        except BaseException:
            self.stop()
            raise

    def _online(self) -> bool:
        for pod in kube.worker_pods(self.system.core, self.system.ns, self.system.session, self.instance):
            for status in pod.status.container_statuses or []:
                waiting = status.state.waiting if status.state else None
                if waiting and waiting.reason in ("ErrImageNeverPull", "CrashLoopBackOff", "CreateContainerError"):
                    raise RuntimeError(f"worker pod {pod.metadata.name}: {waiting.reason}: {waiting.message}\n{self._why()}")
        try:
            return bool(self.system.api.workers(self.pool))
        except APIError:
            return False

    def _why(self) -> str:
        lines = []
        for pod in self.system.core.list_namespaced_pod(self.system.ns, label_selector=manifests.selector(
                manifests.session_labels(self.system.session, self.instance, "worker"))).items:
            lines.append(f"pod {pod.metadata.name}: {pod.status.phase} {pod.status.reason or ''}")
            try:
                lines.append(self.system.core.read_namespaced_pod_log(pod.metadata.name, self.system.ns, tail_lines=20))
            except Exception:
                pass
        return "\n".join(lines)

    def stop(self, grace: float = 5.0) -> None:
        self.system.delete("deployment", self.name, grace=int(grace))


class OomAtCreation:
    """On Kubernetes a memory limit is set when the pod is created (the job template); the
    workload's allocation does the rest.  The fault records which pods ran under which limit."""

    def __init__(self, resolve, limit: int):
        self.resolve, self.limit = resolve, limit

    def inject(self) -> dict[str, Any]:
        pods = self.resolve()
        if not pods:
            raise LookupError("no live flow-run pod of this scenario")
        return {"pods": [p.metadata.name for p in pods], "limit_bytes": self.limit, "mechanism": "pod-memory-limit"}

    def heal(self) -> dict[str, Any]:
        return {}

    def close(self) -> dict[str, Any]:
        return {}


class KindSystem:
    name = "kind"

    def __init__(self, workdir: Path, session: str, options: dict[str, Any] | None = None):
        from kubernetes import client as k8s

        options = options or {}
        self.session = session
        shared = os.environ.get(SHARED_DIR_ENV) if options.get("kube_context") else None
        # an existing cluster shares one directory with the host (it cannot mount each session's)
        self.workdir = Path(shared) / f"session-{session}" if shared else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.mounts = [Mount(FLOWS_DIR, True), Mount(HARNESS_PKG, True), Mount(Path(shared) if shared else workdir)]
        self.ns = f"chaos-{session}"
        self.env = clean_env(workdir / "home", session)  # makes home and its tmp
        self.workers: dict[str, Any] = {}
        self.loaded: set[str] = set()  # images the nodes have
        self.recorders: dict[str, kube.PodRecorder] = {}
        self.cluster: KindCluster | None = None
        self.server: ServerContainer | None = None
        self.api_client = None
        self.docker = engine.ensure_engine()
        try:
            self.image = engine.ensure_image(self.docker)
            self.cluster = _options_cluster(session, workdir, self.mounts, options)
            self.cluster.load_image(self.image)
            self.loaded.add(self.image)
            self.api_client = self.cluster.api_client()
            self.core, self.batch = k8s.CoreV1Api(self.api_client), k8s.BatchV1Api(self.api_client)
            self.apps, self.discovery = k8s.AppsV1Api(self.api_client), k8s.DiscoveryV1Api(self.api_client)
            self.cluster_uid = self.core.read_namespace("kube-system").metadata.uid  # the harness may read it
            self.create(manifests.namespace(self.ns, session))
            for manifest in manifests.worker_rbac(self.ns, session):
                self.create(manifest)
            self.server = ServerContainer(self.docker, self.image, session, self.env, self.name, network=KIND_NETWORK)
            self.server.start()
            for manifest in manifests.server_service(self.ns, session, self.server.internal_address):
                self.create(manifest)
            self._probe_shared_dir()
        except BaseException:
            self.close()
            raise
        self.api = self.server.api

    # -- objects ------------------------------------------------------------------------------
    def create(self, manifest: dict[str, Any]) -> None:
        from kubernetes import utils

        if not owned(manifest["metadata"].get("labels"), self.session):
            raise PermissionError(f"{manifest['kind']} {manifest['metadata']['name']} lacks the session label")
        utils.create_from_dict(self.api_client, manifest, namespace=manifest["metadata"].get("namespace"))

    def delete(self, kind: str, name: str, grace: int = 0) -> None:
        """Delete one namespaced object after checking it carries this session's label."""
        from kubernetes import client as k8s
        from kubernetes.client.exceptions import ApiException

        read, remove = {
            "deployment": (self.apps.read_namespaced_deployment, self.apps.delete_namespaced_deployment),
            "job": (self.batch.read_namespaced_job, self.batch.delete_namespaced_job),
            "pod": (self.core.read_namespaced_pod, self.core.delete_namespaced_pod),
        }[kind]
        try:
            obj = read(name, self.ns)
            if not owned(obj.metadata.labels, self.session):
                raise PermissionError(f"{kind} {name} does not carry this session's label; not deleted")
            remove(name, self.ns, body=k8s.V1DeleteOptions(grace_period_seconds=grace, propagation_policy="Background"))
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _probe_shared_dir(self) -> None:
        """A pod writes into the shared directory; the host must see the file, or ledgers are lost."""
        target = self.workdir / "shared-dir-probe"
        self.create(manifests.probe_pod(self.ns, self.session, self.image, str(target), self.mounts))
        try:
            procs.wait_for(target.exists, 120, 1, f"a pod's write to {target}",
                           f"every kind node must mount {self.mounts[-1].path} at the same path "
                           f"(python -m harness kind config writes such a cluster config)")
        finally:
            self.delete("pod", "shared-dir-probe")

    def _publish_server(self) -> None:
        """After a server restart: its new address into the EndpointSlice pods resolve it by."""
        body = manifests.server_endpoints(self.ns, self.session, self.server.internal_address)
        self.discovery.replace_namespaced_endpoint_slice(manifests.SERVER_SERVICE, self.ns, body)

    # -- deployment ---------------------------------------------------------------------------
    def _mem_limit(self, scenario: Scenario) -> str | None:
        limits = [f.mem_limit for f in scenario.faults if f.kind == "oom" and f.mem_limit]
        limit = limits[0] if limits else scenario.config.job.mem_limit
        return str(parse_bytes(limit)) if limit else None  # bytes: "512m" means millibytes to Kubernetes

    def _image(self, scenario: Scenario) -> str:
        """The flow runs' image: the harness's own, or the row's ``job.image``, loaded into the nodes once."""
        image = engine.flow_image(self.docker, scenario, self.image)
        if image not in self.loaded:
            self.cluster.load_image(image)
            self.loaded.add(image)
        return image

    def _job_variables(self, scenario: Scenario, instance: str, home: Path, ledger: Path, code: Path,
                       image: str) -> dict[str, Any]:
        cfg = scenario.config
        pythonpath = engine.flow_pythonpath(self.docker, image, [str(code), str(HARNESS_PKG.parent)])
        env = {"PREFECT_LOGGING_TO_API_ENABLED": "false",
               **flow_env(scenario, ledger, home / "results", pythonpath, str(HARNESS_PKG))}
        job: dict[str, Any] = {
            "image": image, "image_pull_policy": "Never", "namespace": self.ns, "env": env,
            "labels": manifests.session_labels(self.session, instance),
            "pod_watch_timeout_seconds": 120,
        }
        job.update(cfg.job.model_dump(include={"stream_output", "command"}, exclude_none=True))
        return job

    def deploy(self, scenario: Scenario, instance: str) -> AbstractContextManager[Deployed]:
        mem_limit = self._mem_limit(scenario)
        # flows/ is mounted on every node; a flow of your own is copied where every node looks
        code = stage_code(scenario.workload, self.workdir / "code") if scenario.workload.own else FLOWS_DIR
        image = self._image(scenario)  # an absent one: before any worker starts

        def start_worker(home: Path, pool: str) -> WorkerDeployment:
            template = manifests.base_job_template(default_job_template(), self.session, instance, self.mounts,
                                              scenario.config.job, mem_limit)
            self.api.create_work_pool(pool, "kubernetes", template)
            self.recorders[instance] = kube.PodRecorder(self.core, self.ns, self.session, instance)
            return WorkerDeployment(self, instance, pool, scenario.worker.env)

        def remove_jobs() -> None:
            recorder = self.recorders.pop(instance, None)
            if recorder is not None:
                recorder.stop()
            scope = manifests.selector(manifests.session_labels(self.session, instance))
            for job in self.batch.list_namespaced_job(self.ns, label_selector=scope).items:
                self.delete("job", job.metadata.name)

        return scenario_deployment(
            self, scenario, instance, "kubernetes",
            lambda home, ledger: self._job_variables(scenario, instance, home, ledger, code, image), remove_jobs,
            worker=start_worker, restart_behind_proxy=False, directory=code, mem_limit=mem_limit)

    def log_sources(self, deployed: Deployed | None = None) -> dict[str, caselogs.Source]:
        """The server container's log; with ``deployed``, its case's worker pod's and flow-run
        pods' (those still there: a deleted pod's log went with it)."""
        found: dict[str, caselogs.Source] = self.server.log_sources()
        if deployed is not None:
            scope = manifests.selector(manifests.session_labels(self.session, deployed.instance))
            for pod in self.core.list_namespaced_pod(self.ns, label_selector=scope).items:
                found[f"pod-{pod.metadata.name}.log"] = (
                    lambda since, name=pod.metadata.name: self.core.read_namespaced_pod_log(name, self.ns).encode())
        return found

    def infrastructure(self, deployed: Deployed) -> list[dict[str, Any]]:
        """Kubernetes' account of every flow-run pod of this scenario, deleted ones included."""
        scope = manifests.session_labels(self.session, deployed.instance)
        jobs = self.batch.list_namespaced_job(self.ns, label_selector=manifests.selector(scope)).items
        of_job = {j.metadata.name: (j.metadata.labels or {}).get(manifests.FLOW_RUN_LABEL) for j in jobs}
        job_status = {j.metadata.name: kube.job_evidence(j) for j in jobs}

        def live() -> list:
            return self.core.list_namespaced_pod(self.ns, label_selector=manifests.selector({**scope, kube.ROLE_LABEL: "flow-run"})).items

        try:  # bounded: a pod still terminating gets its exit code and reason once it has stopped
            procs.wait_for(lambda: all(p.status.phase not in ("Running", "Pending") for p in live()), SETTLE_WAIT, 1, "")
        except TimeoutError:
            pass
        recorder = self.recorders.get(deployed.instance)
        pods = dict(recorder.pods) if recorder else {}
        pods.update({p.metadata.name: p for p in live()})
        evidence = [{**kube.pod_evidence(p, of_job), "job_status": job_status.get(manifests.job_name_of(p))}
                    for p in pods.values()]
        return sorted(evidence, key=lambda e: e["created_at"] or "")

    # -- faults ---------------------------------------------------------------------------------
    def fault(self, spec: FaultSpec, deployed: Deployed, flow_run_id: str):
        inst = deployed.instance

        def runs() -> list:
            return kube.flow_run_pods(self.core, self.batch, self.ns, self.session, inst, flow_run_id)

        def workers() -> list:
            return kube.worker_pods(self.core, self.ns, self.session, inst)

        resolve = workers if spec.target == "worker" else runs
        if spec.kind == "cpu-starve" and spec.target == "server":  # a container on kind's network
            made: Any = ContainerCpuStarve(lambda: [self.server.container.get_wrapped_container()], spec.cpus)
        elif spec.kind == "cpu-starve":
            made = kube.ContainerCpuStarve(self.cluster, self.docker, resolve,
                                           "worker" if spec.target == "worker" else manifests.CONTAINER, spec.cpus)
        elif spec.target == "server":
            made = ServerRestart(self.server, self.server.restart, None, spec.heal_after_seconds, self._publish_server)
        elif spec.kind == "cancel":
            made = CancelRun(self.api, flow_run_id)
        elif spec.kind in ("kill", "kill-worker", "terminate", "evict"):
            made = kube.PodFault("kill" if spec.kind == "kill-worker" else spec.kind, self.core, resolve,
                                 spec.grace_seconds, self.session)
        elif spec.kind == "freeze":
            made = kube.ContainerFreeze(self.cluster, self.docker, resolve,
                                        "worker" if spec.target == "worker" else manifests.CONTAINER)
        elif spec.kind == "oom":
            made = OomAtCreation(runs, int(deployed.extra["mem_limit"]))
        elif spec.kind == "drain":
            made = kube.DrainFault(self.core, runs, self.ns, self.session, spec.grace_seconds)
        else:  # node-loss
            made = kube.NodeLoss(self.cluster, self.docker, runs, spec.how or "pause")
        deployed.extra["faults"].append(made)
        return made

    def close(self) -> None:
        for recorder in self.recorders.values():
            recorder.stop()
        for worker in list(self.workers.values()):
            try:
                worker.stop()
            except Exception:
                pass
        try:
            if self.api_client is not None and self.cluster is not None and not self.cluster.created:
                self._remove_namespace()  # a created cluster goes as a whole below
        finally:
            try:
                remove_backend_objects(self.docker, self.server, self.session, self.name)
            finally:
                if self.cluster is not None:
                    self.cluster.delete()
                if os.environ.get(SHARED_DIR_ENV) and self.workdir.name == f"session-{self.session}":
                    shutil.rmtree(self.workdir, ignore_errors=True)
                self.docker.close()

    def _remove_namespace(self) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            ns = self.core.read_namespace(self.ns)
        except ApiException:
            return
        if owned(ns.metadata.labels, self.session):
            self.core.delete_namespace(self.ns)
        for node in self.core.list_node().items:  # a drain whose heal never ran
            kube.uncordon(self.core, node.metadata.name, self.session)

