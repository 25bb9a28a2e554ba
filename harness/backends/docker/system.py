"""The ``docker`` backend: the Prefect server in a testcontainers container, flow runs in containers.

Server: a testcontainers container from the harness image (``harness.backends.docker.engine``), host networking,
``prefect server start`` on 127.0.0.1 and a free port, SQLite on a named volume, so that
``restart-server`` restarts the same container on the same database.  Per scenario: a ``docker``
work pool served by its own prefect-docker worker (a host process, like the local backend's
worker), which starts every flow run in its own container: host networking, the image never
pulled, the workload and the ledger bind-mounted at their host paths.

Every container, volume and network carries the session's labels.  Faults go through the Docker
API to containers found by those labels and Prefect's own ``io.prefect.flow-run-id`` label, never
by name.  testcontainers' reaper is disabled (its image cannot be pulled without a registry); the
label-based cleanup here replaces it, also for a harness that was SIGKILLed (``reap_abandoned``).
"""

from __future__ import annotations

import re
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable

from harness.backends import Deployed
from harness.backends.docker import engine
from harness.backends.docker.objects import (FLOW_RUN_LABEL, INSTANCE_LABEL, SESSION_LABEL, remove_backend_objects,
                                             remove_labelled, session_labels)
from harness.backends.docker.server import ServerContainer
from harness.backends.local.signals import Grace
from harness.backends.local.system import worker_fault
from harness.backends.shared import (WORKER_GRACE, ServerRestart, SharedFaults, SharedWorker, clean_env, flow_env,
                                     scenario_deployment, server_env, shared_database_logs, shared_worker_logs)
from harness.model.fields import parse_bytes
from harness.model.scenario import FLOWS_DIR, FaultSpec, Scenario
from harness.paths import PACKAGE
from harness.sut import caselogs, procs
from harness.sut.database import open_database

HARNESS_PKG = PACKAGE  # .../harness, mounted for the ledger module
IN_CONTAINER_PKG_ROOT = "/opt/chaos-harness"


EXIT_WAIT = 30.0  # a run reported terminal: its container's PID 1 may still be cleaning up


def settle(containers: list, timeout: float = EXIT_WAIT) -> None:
    """Wait (bounded) until running containers have exited: Docker sets OOMKilled and the exit
    code only when a container exits, and a run's supervisor reports Crashed before it exits.
    A paused container, or one still running at the bound, is recorded as it is."""
    deadline = time.monotonic() + timeout
    for c in containers:
        while True:
            try:
                c.reload()
            except Exception:
                break
            if c.status != "running" or time.monotonic() > deadline:
                break
            time.sleep(0.25)


def container_evidence(container) -> dict[str, Any]:
    """What Docker knows about a flow-run container's end: the part Prefect does not report."""
    state = container.attrs.get("State", {})
    return {
        "container": container.name,
        "flow_run_id": container.labels.get(FLOW_RUN_LABEL),
        "status": state.get("Status"),
        "exit_code": state.get("ExitCode"),
        "oom_killed": state.get("OOMKilled"),
        "error": state.get("Error") or None,
        "finished_at": state.get("FinishedAt"),
        "memory_limit": container.attrs.get("HostConfig", {}).get("Memory") or None,
    }


class ContainerFault:
    """kill / terminate / freeze / oom of a flow run's containers, through the Docker API."""

    def __init__(self, kind: str, resolve: Callable[[], list], grace: float, mem_limit: int | None):
        self.kind, self.resolve, self.grace, self.mem_limit = kind, resolve, grace, mem_limit
        self.targets: list = []
        self.grace_wait: Grace | None = None

    def inject(self) -> dict[str, Any]:
        self.targets = self.resolve()
        if not self.targets:
            raise LookupError("no running flow-run container of this scenario")
        names = [c.name for c in self.targets]
        if self.kind == "kill":
            for c in self.targets:
                c.kill(signal="SIGKILL")
            return {"containers": names, "signal": "SIGKILL"}
        if self.kind == "terminate":  # docker stop: SIGTERM to PID 1, the grace, then SIGKILL
            targets, grace = list(self.targets), int(self.grace)

            def stop() -> dict[str, Any]:  # docker stop returns once the grace is over
                for c in targets:
                    c.stop(timeout=grace)
                return {}

            self.grace_wait = Grace(f"grace-{names[0]}", stop)
            return {"containers": names, "signal": "SIGTERM", "grace_seconds": grace}
        if self.kind == "freeze":
            for c in self.targets:
                c.pause()
            return {"containers": names, "paused": True}
        # oom: the limit set at creation (job variable mem_limit), or lowered now by the fault
        detail: dict[str, Any] = {"containers": names, "mechanism": "docker-memory-limit"}
        if self.mem_limit is not None:
            for c in self.targets:
                c.update(mem_limit=self.mem_limit, memswap_limit=self.mem_limit)
            detail["limit_bytes"] = self.mem_limit
        else:
            detail["limit_bytes"] = self.targets[0].attrs.get("HostConfig", {}).get("Memory")
        return detail

    def heal(self) -> dict[str, Any]:
        if self.kind != "freeze":
            return {}
        resumed = []
        for c in self.targets:
            c.reload()
            if c.status == "paused":
                c.unpause()
                resumed.append(c.name)
        return {"unpaused": resumed}

    def close(self) -> dict[str, Any]:
        waited = {} if self.grace_wait is None else self.grace_wait.join(self.grace + 30)
        evidence = []
        settle(self.targets)
        for c in self.targets:
            try:
                c.reload()
                evidence.append(container_evidence(c))
            except Exception as exc:
                evidence.append({"container": c.name, "error": f"{type(exc).__name__}: {exc}"})
        return {"evidence": evidence, **waited}


def throttling_of(container) -> dict[str, int] | None:
    """Docker's count of a running container's CFS periods and throttled periods and time (ns),
    cumulative over its life; None once it has exited (Docker keeps no count after that)."""
    try:
        container.reload()
        if container.status != "running":
            return None
        data = container.stats(stream=False, one_shot=True)["cpu_stats"].get("throttling_data") or {}
    except Exception:
        return None
    return {k: int(data.get(k) or 0) for k in ("periods", "throttled_periods", "throttled_time")}


class ContainerCpuStarve:
    """``cpu-starve`` of containers (a flow run's, or the server's): ``docker update`` of their CFS
    quota, live (``--cpus``, as quota and period); heal lifts it.  The quota Docker applied is
    kept as evidence, and its count of throttled periods over the fault while the container runs
    (a flow-run container that exits before the heal takes its count with it)."""

    def __init__(self, resolve: Callable[[], list], cpus: float):
        self.resolve, self.cpus = resolve, cpus
        self.targets: list = []
        self.before: dict[str, dict[str, int] | None] = {}
        self.lifted = False

    def inject(self) -> dict[str, Any]:
        from harness.backends.local.cgroups import quota

        self.targets = self.resolve()
        if not self.targets:
            raise LookupError("no running container of this scenario to starve")
        quota_us, period_us = quota(self.cpus)
        applied = {}
        for c in self.targets:
            self.before[c.name] = throttling_of(c)
            c.update(cpu_period=period_us, cpu_quota=quota_us)
            c.reload()
            applied[c.name] = [c.attrs["HostConfig"].get("CpuQuota"), c.attrs["HostConfig"].get("CpuPeriod")]
        return {"containers": [c.name for c in self.targets], "cpus": self.cpus, "mechanism": "docker update",
                "quota_us": quota_us, "period_us": period_us, "applied": applied}

    def _lift(self) -> dict[str, Any]:
        throttled, lifted = {}, []
        for c in self.targets:
            now, then = throttling_of(c), self.before.get(c.name)
            if now is not None:
                throttled[c.name] = {k: v - (then or {}).get(k, 0) for k, v in now.items()}
            else:
                throttled[c.name] = "exited before the quota was lifted: Docker keeps no count after that"
            try:
                c.update(cpu_quota=-1)
                lifted.append(c.name)
            except Exception:
                pass  # gone meanwhile: nothing left to lift
        self.lifted = True
        return {"lifted": lifted, "throttling": throttled}

    def heal(self) -> dict[str, Any]:
        return self._lift()

    def close(self) -> dict[str, Any]:
        if self.lifted or not self.targets:
            return {}
        return self._lift()  # a server must not stay starved past its case


class DockerSystem(SharedFaults):
    name = "docker"

    def __init__(self, workdir: Path, session: str, options: dict[str, Any] | None = None):
        self.workdir, self.session = workdir, session
        self.client = engine.ensure_engine()
        self.image = engine.ensure_image(self.client)
        self.env = clean_env(workdir / "home", session)  # makes home and its tmp
        self.workers: dict[str, procs.Spawned] = {}
        self.shared_worker: SharedWorker | None = SharedWorker(self, "docker")
        self.server: ServerContainer | None = None
        self.database_kind = (options or {}).get("database") or "sqlite"
        self.database = None
        # one session may hold several docker systems (one on PostgreSQL for the rows that need
        # it): each names and labels its objects with its own id, and removes only those
        self.system_id = re.sub(r"[^a-zA-Z0-9_.-]", "-", workdir.name)
        try:
            # host networking: the server container reaches a PostgreSQL on 127.0.0.1 as the host does
            self.database = open_database(self.database_kind, workdir, session, backend="docker")
            self.server = ServerContainer(self.client, self.image, session, server_env(self.env, options),
                                          self.system_id, database_url=self.database and self.database.url)
            self.server.start()
        except BaseException:
            self.close()
            raise
        self.api = self.server.api

    # -- deployment ---------------------------------------------------------------------------
    def _job_variables(self, scenario: Scenario, instance: str, home: Path, ledger: Path, image: str) -> dict[str, Any]:
        cfg = scenario.config
        env = {"PREFECT_LOGGING_TO_API_ENABLED": "false",  # as on local; a scenario's env may override it
               **flow_env(scenario, ledger, home / "results",
                          engine.flow_pythonpath(self.client, image,
                                                 [str(scenario.workload.directory), IN_CONTAINER_PKG_ROOT]),
                          f"{IN_CONTAINER_PKG_ROOT}/harness")}
        job: dict[str, Any] = {
            "image": image,
            "image_pull_policy": "Never",
            "network_mode": "host",
            "auto_remove": False,  # the harness reads OOMKilled and the exit code, then removes it
            "labels": {**session_labels(self.session, self.system_id), INSTANCE_LABEL: instance},
            # flows/ (an installed harness has none: a project's own flows only), the row's own code
            "volumes": [*([f"{FLOWS_DIR}:{FLOWS_DIR}:ro"] if FLOWS_DIR.is_dir() else []),
                        *([f"{code}:{code}:ro"] if (code := scenario.workload.directory) != FLOWS_DIR else []),
                        f"{HARNESS_PKG}:{IN_CONTAINER_PKG_ROOT}/harness:ro",
                        f"{self.workdir}:{self.workdir}:rw"],  # the case's home, and a chaos API run's directory
            "env": env,
        }
        if cfg.job.stream_output is not None:
            job["stream_output"] = cfg.job.stream_output
        if cfg.job.command is not None:
            job["command"] = cfg.job.command
        if cfg.job.mem_limit is not None:
            limit = str(parse_bytes(cfg.job.mem_limit))
            job.update(mem_limit=limit, memswap_limit=limit)  # no swap: the limit is the limit
        return job

    def deploy(self, scenario: Scenario, instance: str) -> AbstractContextManager[Deployed]:
        image = engine.flow_image(self.client, scenario, self.image)  # an absent one: before any worker starts
        return scenario_deployment(
            self, scenario, instance, "docker",
            lambda home, ledger: self._job_variables(scenario, instance, home, ledger, image),
            lambda: remove_labelled(self.client, {SESSION_LABEL: self.session, INSTANCE_LABEL: instance}))

    def log_sources(self, deployed: Deployed | None = None) -> dict[str, caselogs.Source]:
        """The server container's and database's logs; with ``deployed``, each of its flow-run
        containers' own (their output also streams to its worker's log, in its directory)."""
        found = {**self.server.log_sources(), **shared_database_logs(self.database),
                 **shared_worker_logs(self.shared_worker, deployed)}
        if deployed is not None:
            for c in self._containers_of(deployed):
                found[f"container-{c.name}.log"] = caselogs.container_reader(lambda c=c: c)
        return found

    def _containers_of(self, deployed: Deployed) -> list:
        """Every flow-run container of this scenario instance, exited ones included."""
        filters = {"label": [f"{SESSION_LABEL}={self.session}", f"{INSTANCE_LABEL}={deployed.instance}"]}
        return self.client.containers.list(all=True, filters=filters)

    def infrastructure(self, deployed: Deployed) -> list[dict[str, Any]]:
        """Docker's account of every flow-run container of this scenario (exit code, OOMKilled)."""
        containers = sorted(self._containers_of(deployed), key=lambda c: c.attrs.get("Created", ""))
        settle(containers)
        return [container_evidence(c) for c in containers]

    # -- faults ---------------------------------------------------------------------------------
    def _flow_run_containers(self, deployed: Deployed, flow_run_id: str) -> Callable[[], list]:
        filters = {"label": [f"{SESSION_LABEL}={self.session}", f"{INSTANCE_LABEL}={deployed.instance}",
                             f"{FLOW_RUN_LABEL}={flow_run_id}"], "status": "running"}
        return lambda: self.client.containers.list(filters=filters)

    def _own_fault(self, spec: FaultSpec, deployed: Deployed, flow_run_id: str) -> Any:
        """This backend's mechanism for a fault ``shared_fault`` leaves to it."""
        if spec.kind == "cpu-starve" and spec.target != "worker":
            resolve = ((lambda: [self.server.container.get_wrapped_container()]) if spec.target == "server"
                       else self._flow_run_containers(deployed, flow_run_id))
            return ContainerCpuStarve(resolve, spec.cpus)
        if spec.target == "server":
            return ServerRestart(self.server, self.server.restart, deployed.extra.get("proxy"), spec.heal_after_seconds)
        if spec.target == "worker":
            return worker_fault(spec, deployed, self.session)
        # otherwise: the flow run itself
        limit = parse_bytes(spec.mem_limit) if spec.kind == "oom" and spec.mem_limit else None
        return ContainerFault(spec.kind, self._flow_run_containers(deployed, flow_run_id),
                              spec.grace_seconds, limit)

    def close(self) -> None:
        for worker in list(self.workers.values()):
            worker.stop(grace=WORKER_GRACE)
        if getattr(self, "shared_worker", None) is not None:
            self.shared_worker.stop()
        try:
            remove_backend_objects(self.client, self.server, self.session, self.system_id)
        finally:
            self.client.close()
            if self.database is not None:
                self.database.close()
