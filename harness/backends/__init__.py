"""Backends: where flow runs execute, behind one small Protocol.

Scenarios, observation, checking and reporting never know which backend ran them.  A backend
starts the system under test, deploys a scenario's workload (``deploy``: a context manager that
cleans up only what it created) and maps each fault of the catalogue to its own mechanism.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.model.faults import Fault
from harness.model.scenario import FaultSpec, Scenario
from harness.sut.api import PrefectAPI


class Unavailable(RuntimeError):
    """A backend cannot start here (no Docker engine, no image, no kind cluster); the message
    says why, and its cases skip saying so."""


@dataclass
class Deployed:
    """What ``System.deploy`` made for one scenario instance."""

    instance: str  # scenario id + a short random suffix: names, labels, cgroups all carry it
    deployment_id: str
    pool: str
    ledger: Path
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        """The case's own directory (its ledger, results, worker and task-worker logs)."""
        return self.ledger.parent


__all__ = ["Deployed", "System", "Unavailable", "start"]


class System(Protocol):
    name: str
    api: PrefectAPI

    def deploy(self, scenario: Scenario, instance: str) -> AbstractContextManager[Deployed]: ...

    def fault(self, spec: FaultSpec, deployed: Deployed, flow_run_id: str) -> Fault: ...

    def close(self) -> None: ...


def start(name: str, workdir: Path, session: str, options: dict[str, Any] | None = None) -> System:
    """Start the system under test of backend ``name``; :class:`Unavailable` says why it cannot.

    ``options`` are the backend options of the command line (database for local and docker;
    kube_context, allow_context, kube_version for kind) and, for a case's own system (local and
    docker), ``server_env``: settings of its server."""
    if name == "local":
        from harness.backends.local.system import LocalSystem

        return LocalSystem(workdir, session, options)
    if name == "docker":
        try:
            from harness.backends.docker.system import DockerSystem
        except ImportError as exc:
            raise Unavailable(f"the docker backend needs the 'docker' extra ({exc})") from exc
        return DockerSystem(workdir, session, options)
    if name == "kind":
        try:
            from harness.backends.kind.system import KindSystem
        except ImportError as exc:
            raise Unavailable(f"the kind backend needs the 'kind' extra ({exc})") from exc
        return KindSystem(workdir, session, options)
    raise Unavailable(f"unknown backend {name!r} (known: local, docker, kind)")
