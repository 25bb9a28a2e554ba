"""Kubernetes clusters for the ``kind`` backend, and the interlock that keeps faults off any other.

By default the harness creates its own kind cluster for the session (``chaos-<session>``: a
control plane and two workers, from a config it writes) with a private kubeconfig file: the
user's ``~/.kube/config`` is never read or written, and the cluster is deleted when the session
ends (or by the next session, when this one was SIGKILLed).

An existing cluster is used only when the user names its context twice: ``--chaos-kube-context
NAME`` selects it and ``--chaos-allow-context NAME`` allows the harness to create and delete
objects there.  Anything else is refused before a single API call.  Node faults stop and pause
kind's node containers, so the context must be a kind cluster's (``kind-<cluster>``).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.backends import Unavailable

# Defaults that belong together: a kind release and a node image built for it (kind's release
# notes list the images of each release).  Both are parameters: --chaos-kube-version, and
# CHAOS_KIND_VERSION for the kind binary.
KIND_VERSION = "v0.27.0"
KUBE_VERSION = "v1.32.2"
NODE_IMAGE_REPO = "kindest/node"
KIND_RELEASES = "https://github.com/kubernetes-sigs/kind/releases/download"
BIN_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chaos-harness" / "bin"

# Labels.  Docker labels of the node containers are kind's own; the harness's labels go on the
# Kubernetes objects (these keys) and on the Docker objects it creates (harness.backends.docker).
SESSION_LABEL = "chaos-harness.io/session"
INSTANCE_LABEL = "chaos-harness.io/instance"
ROLE_LABEL = "chaos-harness.io/role"  # node role: prefect-worker | flow-runs; pod role: worker | flow-run | probe
CORDONED_BY = "chaos-harness.io/cordoned-by"  # annotation on a node the harness cordoned (drain)
KIND_CLUSTER_LABEL = "io.x-k8s.kind.cluster"  # kind's Docker label on its node containers
KIND_ROLE_LABEL = "io.x-k8s.kind.role"
CLUSTER_MARKER = "kind-cluster"  # a file in the session's workdir naming the cluster it created
KIND_NETWORK = "kind"


class ContextRefused(Unavailable):
    """The interlock refused a Kubernetes context; the message says how to allow it."""


def label_value(text: str) -> str:
    """A valid label value (<= 63 characters, alphanumeric ends); long values keep a hash."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", text).strip("-._")
    if len(value) > 63:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        value = value[:54].rstrip("-._") + "-" + digest
    return value


@dataclass(frozen=True)
class Mount:
    """A host directory every kind worker node sees at the same path (kind ``extraMounts``)."""

    path: Path
    read_only: bool = False

    def as_kind(self) -> dict[str, Any]:
        return {"hostPath": str(self.path), "containerPath": str(self.path), "readOnly": self.read_only}


def cluster_name(session: str) -> str:
    return f"chaos-{session}"


def kind_config(name: str, session: str, mounts: list[Mount]) -> dict[str, Any]:
    """The kind cluster: a control plane, a node for the Prefect worker and a node for flow runs.

    Flow-run pods prefer the ``flow-runs`` node but may use the other, so a drained or lost node
    leaves somewhere for a replacement pod to go; the worker is pinned to its own node, so a
    node fault on the flow run's node does not also take the worker (unless a scenario says so).
    """
    labels = {SESSION_LABEL: label_value(session)}
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": name,
        "networking": {"apiServerAddress": "127.0.0.1"},  # the API on loopback only
        "nodes": [
            {"role": "control-plane", "labels": labels},
            {"role": "worker", "labels": {**labels, ROLE_LABEL: "prefect-worker"}, "extraMounts": [m.as_kind() for m in mounts]},
            {"role": "worker", "labels": {**labels, ROLE_LABEL: "flow-runs"}, "extraMounts": [m.as_kind() for m in mounts]},
        ],
    }


def check_context(requested: str | None, allowed: list[str], created: str | None) -> str:
    """The interlock: the context the harness may act on, or :class:`ContextRefused`.

    ``created`` is the context of the cluster this session created (always allowed);
    ``requested`` an existing context the user selected, allowed only when ``allowed`` names it
    exactly (no globs: a typo must not widen the permission)."""
    if requested is None:
        if created is None:
            raise ContextRefused("no Kubernetes context: the harness creates its own kind cluster unless "
                                 "--chaos-kube-context names an existing one")
        return created
    if requested == created:
        return created
    if requested not in allowed:
        raise ContextRefused(
            f"refusing Kubernetes context {requested!r}: the harness did not create it. The kind backend "
            f"creates, faults and deletes pods, Jobs, namespaces and nodes' containers; to allow that there, "
            f"pass --chaos-allow-context {requested}")
    if not requested.startswith("kind-"):
        raise ContextRefused(f"context {requested!r} is not a kind cluster's (kind-<name>): node faults and "
                             "image loading go through kind's node containers")
    return requested


def owned(labels: dict[str, str] | None, session: str) -> bool:
    """Does an object carry this session's label?  Nothing else is ever deleted or faulted."""
    return (labels or {}).get(SESSION_LABEL) == label_value(session)


def kind_binary(version: str | None = None, download: bool = True) -> str:
    """The kind executable: CHAOS_KIND_BINARY, one on PATH, or the release downloaded (checksummed)."""
    configured = os.environ.get("CHAOS_KIND_BINARY")
    if configured:
        if not os.access(configured, os.X_OK):
            raise Unavailable(f"CHAOS_KIND_BINARY={configured} is not an executable file")
        return configured
    found = shutil.which("kind")
    if found:
        return found
    version = version or os.environ.get("CHAOS_KIND_VERSION", KIND_VERSION)
    cached = BIN_DIR / f"kind-{version}"
    if cached.is_file():
        return str(cached)
    if not download:
        raise Unavailable("kind is not installed")
    return str(_download_kind(version, cached))


def _download_kind(version: str, dest: Path) -> Path:
    import httpx

    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
    url = f"{KIND_RELEASES}/{version}/kind-linux-{arch}"
    try:
        with httpx.Client(follow_redirects=True, timeout=60) as http:
            binary = http.get(url)
            binary.raise_for_status()
            sums = http.get(url + ".sha256sum")
            sums.raise_for_status()
    except httpx.HTTPError as exc:
        raise Unavailable(f"kind is not installed and {url} cannot be downloaded here ({type(exc).__name__}: "
                          f"{exc}); install kind {version} or set CHAOS_KIND_BINARY") from exc
    expected = sums.text.split()[0]
    actual = hashlib.sha256(binary.content).hexdigest()
    if actual != expected:
        raise Unavailable(f"{url}: sha256 {actual} does not match the release's {expected}; not installed")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".part")
    partial.write_bytes(binary.content)
    partial.chmod(0o755)
    partial.replace(dest)
    return dest


def _run(argv: list[str], timeout: float, what: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"{what}: no answer within {timeout:g}s ({' '.join(argv)})") from exc
    if done.returncode != 0:
        raise Unavailable(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


@dataclass
class KindCluster:
    """A kind cluster the harness may act on: one it created, or an allowed existing one."""

    name: str  # the kind cluster name (the context is kind-<name>)
    kubeconfig: Path | None  # None: the user's default kubeconfig (an allowed existing context)
    context: str
    created: bool
    binary: str

    @classmethod
    def create(cls, session: str, workdir: Path, mounts: list[Mount], kube_version: str | None = None,
               timeout: float = 300) -> "KindCluster":
        binary = kind_binary()
        name = cluster_name(session)
        config = workdir / "kind-config.yaml"
        config.write_text(yaml.safe_dump(kind_config(name, session, mounts), sort_keys=False))
        kubeconfig = workdir / "kubeconfig"
        (workdir / CLUSTER_MARKER).write_text(name)  # before creating: a crash mid-create is cleaned too
        image = f"{NODE_IMAGE_REPO}:{kube_version or KUBE_VERSION}"
        try:
            _run([binary, "create", "cluster", "--name", name, "--config", str(config), "--kubeconfig",
                  str(kubeconfig), "--image", image, "--wait", f"{int(timeout)}s"], timeout + 60,
                 f"kind create cluster {name} (node image {image})")
        except Unavailable:
            delete_cluster(name, binary)
            raise
        return cls(name, kubeconfig, f"kind-{name}", True, binary)

    @classmethod
    def existing(cls, context: str, allowed: list[str]) -> "KindCluster":
        check_context(context, allowed, created=None)
        return cls(context.removeprefix("kind-"), None, context, False, kind_binary())

    def api_client(self):
        """A kubernetes ApiClient bound to this cluster's context and nothing else."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig) if self.kubeconfig else None,
                                             context=self.context)

    def load_image(self, tag: str) -> None:
        """``kind load docker-image``: the nodes get the image without any registry."""
        _run([self.binary, "load", "docker-image", tag, "--name", self.name], 600, f"kind load docker-image {tag}")

    def node_container(self, docker_client, node: str):
        """The Docker container of one of this cluster's nodes (kind names it after the node)."""
        container = docker_client.containers.get(node)
        if container.labels.get(KIND_CLUSTER_LABEL) != self.name:
            raise LookupError(f"container {node} is not a node of kind cluster {self.name}")
        return container

    def delete(self) -> None:
        if self.created:
            delete_cluster(self.name, self.binary)


def delete_cluster(name: str, binary: str | None = None) -> None:
    """``kind delete cluster``; only ever called with a name the harness generated (chaos-<session>)."""
    if not name.startswith("chaos-"):
        raise ValueError(f"refusing to delete kind cluster {name!r}: not one the harness names")
    try:
        binary = binary or kind_binary(download=False)
    except Unavailable:
        return
    subprocess.run([binary, "delete", "cluster", "--name", name], capture_output=True, timeout=300)


def delete_abandoned(workdir: Path) -> str | None:
    """The cluster a dead session created (its workdir names it); deleted, and its name returned."""
    marker = workdir / "kind" / CLUSTER_MARKER
    try:
        name = marker.read_text().strip()
    except OSError:
        return None
    delete_cluster(name)
    return name

