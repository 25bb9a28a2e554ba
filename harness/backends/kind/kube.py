"""Kubernetes objects and faults of the ``kind`` backend, through the ``kubernetes`` Python client.

Manifests are plain dicts built by pure functions (unit-tested against the client's own models:
a field the API does not know is a test failure, not a silently dropped setting).  Faults are
the catalogue's kind mechanisms: delete a pod (grace 0, or a grace period), the Eviction API,
drain (cordon + evict everything of the session on a node), pause a pod's container through the
node's containerd, and pause or stop a kind node's container.  Every object is selected by the
session's label, and every delete checks that label on the object first (``harness.backends.kind.cluster.owned``).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from harness.backends.kind.cluster import CORDONED_BY, KIND_ROLE_LABEL, ROLE_LABEL, KindCluster, label_value, owned
from harness.backends.kind.manifests import CONTAINER, FLOW_RUN_LABEL, job_name_of, selector, session_labels


def flow_run_pods(core, batch, ns: str, session: str, instance: str, flow_run_id: str,
                  live_only: bool = True) -> list:
    """The pods of one flow run's Jobs, all carrying this session's and instance's labels."""
    scope = session_labels(session, instance)
    jobs = batch.list_namespaced_job(ns, label_selector=selector({**scope, FLOW_RUN_LABEL: flow_run_id})).items
    names = {j.metadata.name for j in jobs}
    pods = core.list_namespaced_pod(ns, label_selector=selector({**scope, ROLE_LABEL: "flow-run"})).items
    found = [p for p in pods if job_name_of(p) in names and owned(p.metadata.labels, session)]
    if live_only:
        found = [p for p in found if p.status.phase in ("Pending", "Running") and p.metadata.deletion_timestamp is None]
    return found


def worker_pods(core, ns: str, session: str, instance: str) -> list:
    pods = core.list_namespaced_pod(ns, label_selector=selector(session_labels(session, instance, "worker"))).items
    return [p for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == "Running"]


def _container_id(pod, name: str | None = None) -> str:
    for status in pod.status.container_statuses or []:
        if (name is None or status.name == name) and status.container_id:
            return status.container_id.split("://", 1)[-1]
    raise LookupError(f"pod {pod.metadata.name} has no running container to pause")


# -- faults --------------------------------------------------------------------------------------
class PodFault:
    """kill (delete, grace 0) / terminate (delete with a grace period) / evict (Eviction API)."""

    def __init__(self, kind: str, core, resolve: Callable[[], list], grace: float, session: str):
        self.kind, self.core, self.resolve, self.grace, self.session = kind, core, resolve, grace, session

    def inject(self) -> dict[str, Any]:
        from kubernetes import client

        pods = self.resolve()
        if not pods:
            raise LookupError("no live pod of this scenario to " + self.kind)
        grace = 0 if self.kind == "kill" else int(self.grace)
        for pod in pods:
            meta = pod.metadata
            if not owned(meta.labels, self.session):
                raise PermissionError(f"pod {meta.name} does not carry this session's label; not touched")
            options = client.V1DeleteOptions(grace_period_seconds=grace)
            if self.kind == "evict":
                self.core.create_namespaced_pod_eviction(meta.name, meta.namespace, client.V1Eviction(
                    metadata=client.V1ObjectMeta(name=meta.name, namespace=meta.namespace), delete_options=options))
            else:
                self.core.delete_namespaced_pod(meta.name, meta.namespace, body=options)
        return {"pods": [p.metadata.name for p in pods], "nodes": sorted({p.spec.node_name for p in pods if p.spec.node_name}),
                "api": "eviction" if self.kind == "evict" else "delete", "grace_seconds": grace}

    def heal(self) -> dict[str, Any]:
        return {}

    def close(self) -> dict[str, Any]:
        return {}


def cordon(core, node: str, session: str) -> None:
    core.patch_node(node, {"spec": {"unschedulable": True},
                           "metadata": {"annotations": {CORDONED_BY: label_value(session)}}})


def uncordon(core, node: str, session: str) -> bool:
    """Uncordon a node only if this session cordoned it (the annotation says so)."""
    current = core.read_node(node)
    if (current.metadata.annotations or {}).get(CORDONED_BY) != label_value(session):
        return False
    core.patch_node(node, {"spec": {"unschedulable": False}, "metadata": {"annotations": {CORDONED_BY: None}}})
    return True


class DrainFault:
    """``kubectl drain``, limited to the session: cordon the flow run's node, evict the session's pods on it."""

    def __init__(self, core, resolve: Callable[[], list], ns: str, session: str, grace: float):
        self.core, self.resolve, self.ns, self.session, self.grace = core, resolve, ns, session, grace
        self.node: str | None = None

    def inject(self) -> dict[str, Any]:
        pods = self.resolve()
        nodes = sorted({p.spec.node_name for p in pods if p.spec.node_name})
        if not nodes:
            raise LookupError("the flow run has no scheduled pod, so no node to drain")
        self.node = nodes[0]
        cordon(self.core, self.node, self.session)
        on_node = self.core.list_namespaced_pod(self.ns, label_selector=selector(session_labels(self.session)),
                                                field_selector=f"spec.nodeName={self.node}").items
        evict = PodFault("evict", self.core, lambda: [p for p in on_node if p.metadata.deletion_timestamp is None],
                         self.grace, self.session)
        detail = evict.inject() if on_node else {"pods": []}
        return {"node": self.node, "cordoned": True, "evicted": detail["pods"]}

    def heal(self) -> dict[str, Any]:
        return {"uncordoned": uncordon(self.core, self.node, self.session)} if self.node else {}

    def close(self) -> dict[str, Any]:
        return self.heal()  # never leave a node cordoned


class ContainerFreeze:
    """Pause the pod's container through the node's containerd (``ctr tasks pause``); heal resumes."""

    def __init__(self, cluster: KindCluster, docker_client, resolve: Callable[[], list], container: str | None):
        self.cluster, self.docker, self.resolve, self.container = cluster, docker_client, resolve, container
        self.paused: list[tuple[Any, str]] = []

    def _ctr(self, node, verb: str, cid: str) -> None:
        code, out = node.exec_run(["ctr", "--namespace", "k8s.io", "tasks", verb, cid])
        if code != 0:
            raise RuntimeError(f"ctr tasks {verb} {cid} on {node.name}: exit {code}: {out.decode(errors='replace')[-300:]}")

    def inject(self) -> dict[str, Any]:
        pods = self.resolve()
        if not pods:
            raise LookupError("no running pod of this scenario to freeze")
        for pod in pods:
            node = self.cluster.node_container(self.docker, pod.spec.node_name)
            cid = _container_id(pod, self.container)
            self._ctr(node, "pause", cid)
            self.paused.append((node, cid))
        return {"pods": [p.metadata.name for p in pods], "containerd_tasks": [c for _, c in self.paused],
                "mechanism": "ctr tasks pause"}

    def heal(self) -> dict[str, Any]:
        resumed = []
        for node, cid in self.paused:
            try:
                self._ctr(node, "resume", cid)
                resumed.append(cid)
            except RuntimeError:
                pass  # the task is gone (its pod was deleted meanwhile): nothing left to resume
        self.paused = []
        return {"resumed": resumed}

    def close(self) -> dict[str, Any]:
        return self.heal() if self.paused else {}


def cpu_quota_script(cid: str, quota_us: int | None, period_us: int) -> str:
    """A shell script for the node that sets (or, with None, lifts) the CFS quota of the cgroup of
    containerd task ``cid``: its pid from ``ctr tasks ls``, its cgroup from /proc, the file
    by the node's cgroup version (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``)."""
    v2 = f"{quota_us} {period_us}" if quota_us is not None else f"max {period_us}"
    v1 = str(quota_us) if quota_us is not None else "-1"
    return (
        "set -eu\n"
        f"pid=$(ctr --namespace k8s.io tasks ls | awk '$1 == \"{cid}\" {{print $2}}')\n"
        f'[ -n "$pid" ] || {{ echo "no containerd task {cid}" >&2; exit 3; }}\n'
        "if [ -f /sys/fs/cgroup/cgroup.controllers ]; then\n"
        "  dir=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/$pid/cgroup)\n"
        f'  echo "{v2}" > "$dir/cpu.max"\n'
        "else\n"
        "  dir=/sys/fs/cgroup/cpu$(awk -F: '{n = split($2, c, \",\"); for (i = 1; i <= n; i++) if (c[i] == \"cpu\") "
        "print $3}' /proc/$pid/cgroup | head -n 1)\n"
        f'  echo {period_us} > "$dir/cpu.cfs_period_us"\n'
        f'  echo {v1} > "$dir/cpu.cfs_quota_us"\n'
        "fi\n"
        'echo "$dir"\n'
    )


class ContainerCpuStarve:
    """``cpu-starve`` of a pod's container: the CFS quota of its own cgroup, set inside its node
    (``cpu_quota_script``), live; heal lifts it.  Kubernetes itself can change a running pod's
    CPU limit only through in-place resize, which not every version has."""

    def __init__(self, cluster: KindCluster, docker_client, resolve: Callable[[], list], container: str | None,
                 cpus: float):
        self.cluster, self.docker, self.resolve, self.container, self.cpus = cluster, docker_client, resolve, container, cpus
        self.starved: list[tuple[Any, str]] = []

    def _set(self, node, cid: str, quota_us: int | None, period_us: int) -> str:
        code, out = node.exec_run(["sh", "-c", cpu_quota_script(cid, quota_us, period_us)])
        text = out.decode(errors="replace")
        if code != 0:
            raise RuntimeError(f"cpu quota of {cid} on {node.name}: exit {code}: {text[-300:]}")
        return text.strip()

    def inject(self) -> dict[str, Any]:
        from harness.backends.local.cgroups import quota

        pods = self.resolve()
        if not pods:
            raise LookupError("no running pod of this scenario to starve")
        quota_us, self.period_us = quota(self.cpus)
        cgroups = []
        for pod in pods:
            node = self.cluster.node_container(self.docker, pod.spec.node_name)
            cid = _container_id(pod, self.container)
            cgroups.append(self._set(node, cid, quota_us, self.period_us))
            self.starved.append((node, cid))
        return {"pods": [p.metadata.name for p in pods], "cpus": self.cpus, "quota_us": quota_us,
                "period_us": self.period_us, "cgroups": cgroups, "mechanism": "the container's cgroup in its node"}

    def heal(self) -> dict[str, Any]:
        lifted = []
        for node, cid in self.starved:
            try:
                self._set(node, cid, None, self.period_us)
                lifted.append(cid)
            except RuntimeError:
                pass  # the task is gone (its pod was deleted meanwhile)
        self.starved = []
        return {"lifted": lifted}

    def close(self) -> dict[str, Any]:
        return self.heal() if self.starved else {}


class NodeLoss:
    """The flow run's node disappears: its kind node container paused (a hung node) or stopped."""

    def __init__(self, cluster: KindCluster, docker_client, resolve: Callable[[], list], how: str):
        self.cluster, self.docker, self.resolve, self.how = cluster, docker_client, resolve, how
        self.node = None

    def inject(self) -> dict[str, Any]:
        nodes = sorted({p.spec.node_name for p in self.resolve() if p.spec.node_name})
        if not nodes:
            raise LookupError("the flow run has no scheduled pod, so no node to lose")
        self.node = self.cluster.node_container(self.docker, nodes[0])
        if self.node.labels.get(KIND_ROLE_LABEL) == "control-plane":
            raise PermissionError(f"{nodes[0]} is the control plane: losing it tests kind, not Prefect")
        if self.how == "stop":
            self.node.stop(timeout=0)
        else:
            self.node.pause()
        return {"node": nodes[0], "how": self.how}

    def heal(self) -> dict[str, Any]:
        if self.node is None:
            return {}
        self.node.reload()
        if self.node.status == "paused":
            self.node.unpause()
        elif self.node.status != "running":
            self.node.start()
        return {"node_back": self.node.name}

    def close(self) -> dict[str, Any]:
        return self.heal()  # a node comes back before the scenario ends, healed or not


# -- evidence ------------------------------------------------------------------------------------
def pod_evidence(pod, flow_run_of_job: dict[str, str] | None = None) -> dict[str, Any]:
    """What Kubernetes knows about a flow-run pod (phase, reasons, exit code, OOMKilled, restarts)."""
    status = pod.status
    container = next((c for c in status.container_statuses or [] if c.name == CONTAINER),
                     (status.container_statuses or [None])[0])
    terminated = waiting = None
    restarts = 0
    if container is not None:
        restarts = container.restart_count or 0
        state = container.state
        terminated = state.terminated if state else None
        if terminated is None and container.last_state is not None:
            terminated = container.last_state.terminated
        waiting = state.waiting if state else None
    job = job_name_of(pod)
    return {
        "pod": pod.metadata.name,
        "job": job,
        "flow_run_id": (flow_run_of_job or {}).get(job),
        "node": pod.spec.node_name,
        "status": status.phase,
        "reason": status.reason,  # Evicted, DeadlineExceeded, ...
        "container_reason": terminated.reason if terminated else (waiting.reason if waiting else None),
        "exit_code": terminated.exit_code if terminated else None,
        "oom_killed": (terminated.reason == "OOMKilled") if terminated else None,
        "restarts": restarts,
        "deleted": pod.metadata.deletion_timestamp is not None,
        "created_at": pod.metadata.creation_timestamp.isoformat() if pod.metadata.creation_timestamp else None,
    }


def job_evidence(job) -> dict[str, Any]:
    status = job.status
    return {
        "job": job.metadata.name,
        "flow_run_id": (job.metadata.labels or {}).get(FLOW_RUN_LABEL),
        "backoff_limit": job.spec.backoff_limit,
        "active": status.active or 0, "failed": status.failed or 0, "succeeded": status.succeeded or 0,
        "conditions": [f"{c.type}={c.status}:{c.reason or ''}" for c in status.conditions or []],
    }


class PodRecorder:
    """Watches the session's flow-run pods of one scenario and keeps every pod's last evidence.

    Pods deleted by a fault are gone from the API when the run settles; the watch saw them."""

    def __init__(self, core, ns: str, session: str, instance: str):
        self.core, self.ns = core, ns
        self.label_selector = selector(session_labels(session, instance, "flow-run"))
        self.pods: dict[str, Any] = {}  # name -> last V1Pod seen
        self.events: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pods-{instance}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(self.core.list_namespaced_pod, self.ns, label_selector=self.label_selector,
                                      timeout_seconds=5):
                    pod = event["object"]
                    self.pods[pod.metadata.name] = pod
                    self.events.append({"t": time.time(), "type": event["type"], "pod": pod.metadata.name,
                                        "phase": pod.status.phase, "reason": pod.status.reason})
                    if self._stop.is_set():
                        break
            except Exception:
                time.sleep(1)  # the API server restarts or a node is lost: watch again
            finally:
                w.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
