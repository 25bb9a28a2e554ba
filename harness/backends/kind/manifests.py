"""The kind backend's Kubernetes objects: the session's namespace and labels, the worker's RBAC and
Deployment, the Service in front of the server, the probe pod and the flow runs' Job template."""

from __future__ import annotations

from typing import Any

from harness.backends.kind.cluster import INSTANCE_LABEL, ROLE_LABEL, SESSION_LABEL, Mount, label_value
from harness.model.scenario import JobConfig

FLOW_RUN_LABEL = "prefect.io/flow-run-id"  # prefect-kubernetes' label on the Jobs it creates


JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")  # the Job controller's label on its pods


SERVER_SERVICE = "prefect-server"


SERVER_PORT = 4200


WORKER_ACCOUNT = "chaos-prefect-worker"


CONTAINER = "prefect-job"  # prefect-kubernetes' name for the flow-run container


def selector(labels: dict[str, str]) -> str:
    """A label selector matching every key=value (equality only; values made label-valid)."""
    return ",".join(f"{k}={label_value(v)}" for k, v in sorted(labels.items()))


def session_labels(session: str, instance: str | None = None, role: str | None = None) -> dict[str, str]:
    labels = {SESSION_LABEL: label_value(session)}
    if instance is not None:
        labels[INSTANCE_LABEL] = label_value(instance)
    if role is not None:
        labels[ROLE_LABEL] = role
    return labels


def _meta(name: str, namespace: str | None, labels: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


# -- manifests ---------------------------------------------------------------------------------
def namespace(name: str, session: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name, None, session_labels(session))}


def worker_rbac(ns: str, session: str) -> list[dict[str, Any]]:
    """What a prefect-kubernetes worker (and its observer) needs, in its own namespace only: the
    rules of Prefect's Helm chart (charts/prefect-worker role.yaml), without secrets (unused)."""
    labels = session_labels(session)
    rules = [
        {"apiGroups": ["batch"], "resources": ["jobs"],
         "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["pods", "pods/log", "pods/status"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
    ]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(WORKER_ACCOUNT, ns, labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _meta(WORKER_ACCOUNT, ns, labels), "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(WORKER_ACCOUNT, ns, labels),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": WORKER_ACCOUNT},
         "subjects": [{"kind": "ServiceAccount", "name": WORKER_ACCOUNT, "namespace": ns}]},
    ]


def server_service(ns: str, session: str, address: str) -> list[dict[str, Any]]:
    """The Prefect server (a Docker container on kind's network) as a Service pods can resolve.

    A Service without a selector and its EndpointSlice naming the container's address: a server
    restart may change that address, and only the EndpointSlice then changes."""
    labels = session_labels(session)
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(SERVER_SERVICE, ns, labels),
         "spec": {"ports": [{"name": "http", "port": SERVER_PORT, "targetPort": SERVER_PORT, "protocol": "TCP"}]}},
        server_endpoints(ns, session, address),
    ]


def server_endpoints(ns: str, session: str, address: str) -> dict[str, Any]:
    labels = {**session_labels(session), "kubernetes.io/service-name": SERVER_SERVICE,
              "endpointslice.kubernetes.io/managed-by": "chaos-harness.io"}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": _meta(SERVER_SERVICE, ns, labels), "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": SERVER_PORT, "protocol": "TCP"}]}


def server_url(ns: str) -> str:
    return f"http://{SERVER_SERVICE}.{ns}.svc.cluster.local:{SERVER_PORT}/api"


def _host_volumes(mounts: list[Mount]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes, volume_mounts = [], []
    for i, m in enumerate(mounts):
        volumes.append({"name": f"chaos-{i}", "hostPath": {"path": str(m.path), "type": "Directory"}})
        volume_mounts.append({"name": f"chaos-{i}", "mountPath": str(m.path), "readOnly": m.read_only})
    return volumes, volume_mounts


def worker_deployment(ns: str, session: str, instance: str, pool: str, image: str, env: dict[str, str],
                      mounts: list[Mount]) -> dict[str, Any]:
    """One scenario's prefect-kubernetes worker, on the ``prefect-worker`` node.

    A Deployment, as users run it: ``kill-worker`` deletes its pod and a new one takes over."""
    labels = session_labels(session, instance, "worker")
    volumes, volume_mounts = _host_volumes(mounts)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(f"worker-{label_value(instance)}"[:63].rstrip("-"), ns, labels),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # never two workers of one pool at once
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": WORKER_ACCOUNT,
                    "nodeSelector": {ROLE_LABEL: "prefect-worker"},
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "worker",
                        "image": image,
                        "imagePullPolicy": "Never",  # loaded into the nodes by kind load
                        "args": ["prefect", "worker", "start", "--pool", pool, "--type", "kubernetes",
                                 "--name", f"{pool}-worker"],
                        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
                        "volumeMounts": volume_mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }


def probe_pod(ns: str, session: str, image: str, path: str, mounts: list[Mount]) -> dict[str, Any]:
    """A pod on the flow-runs node writing ``path``: proves the shared directory is really shared."""
    volumes, volume_mounts = _host_volumes(mounts)
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": _meta("shared-dir-probe", ns, session_labels(session, role="probe")),
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {ROLE_LABEL: "flow-runs"},
            "containers": [{"name": "probe", "image": image, "imagePullPolicy": "Never",
                            "args": ["python3", "-c", f"open({path!r}, 'w').write('ok')"],
                            "volumeMounts": volume_mounts}],
            "volumes": volumes,
        },
    }


def base_job_template(default: dict[str, Any], session: str, instance: str, mounts: list[Mount],
                      job: JobConfig, mem_limit: str | None) -> dict[str, Any]:
    """The work pool's base job template: prefect-kubernetes' default, with the scenario's Job.

    Changed from the default: the pod carries the session's labels; the shared directories are
    hostPath volumes; the pod prefers the ``flow-runs`` node; ``backoffLimit`` and the memory
    limit come from the scenario.  ``restartPolicy`` stays ``Never``: prefect-kubernetes refuses
    any other value (its job configuration's validation), so no scenario can vary it (request = limit: the container's cgroup is the
    limit the kernel enforces).  The default template puts ``completions`` and ``parallelism`` in
    the pod spec, where the API server drops them as unknown fields (they are Job fields, 1 by
    default); prefect-kubernetes' own validation requires them there, so they stay."""
    import copy

    template = copy.deepcopy(default)
    manifest = template["job_configuration"]["job_manifest"]
    spec = manifest["spec"]
    pod = spec["template"]
    pod.setdefault("metadata", {}).setdefault("labels", {}).update(session_labels(session, instance, "flow-run"))
    pod_spec = pod["spec"]
    if job.backoff_limit is not None:
        spec["backoffLimit"] = job.backoff_limit
    volumes, volume_mounts = _host_volumes(mounts)
    pod_spec["volumes"] = pod_spec.get("volumes", []) + volumes
    pod_spec["affinity"] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [
            {"key": ROLE_LABEL, "operator": "In", "values": ["flow-runs"]}]}}]}}
    container = pod_spec["containers"][0]
    container["volumeMounts"] = container.get("volumeMounts", []) + volume_mounts
    if mem_limit is not None:
        resources = container.setdefault("resources", {})
        resources.setdefault("limits", {})["memory"] = mem_limit
        resources.setdefault("requests", {})["memory"] = mem_limit
    return template


# -- finding what the harness made ---------------------------------------------------------------
def job_name_of(pod) -> str | None:
    labels = pod.metadata.labels or {}
    return next((labels[k] for k in JOB_NAME_LABELS if k in labels), None)
