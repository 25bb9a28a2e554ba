"""The ``local`` backend: OS processes on this machine, no Docker, no cluster.

Server: ``prefect server start`` on 127.0.0.1, SQLite in the session's temporary PREFECT_HOME.
Per scenario: a ``process`` work pool served by its own ``prefect worker start`` subprocess, and
the workload deployed from ``flows/`` with the scenario's config as job-variable environment.
Faults are signals and memory cgroups aimed at processes found by the session marker in their
environment (``harness.sut.procs``): never by name, never anything the harness did not start.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil

from harness.backends import Deployed
from harness.backends.local import cgroups
from harness.backends.local.signals import SignalFault
from harness.backends.local.taskworkers import TaskWorkerFault, TaskWorkers
from harness.backends.shared import (WORKER_GRACE, ServerRestart, SharedFaults, SharedWorker, clean_env, flow_env,
                                     scenario_deployment, server_env, shared_database_logs, shared_worker_logs)
from harness.model.fields import parse_bytes
from harness.model.scenario import FLOWS_DIR, FaultSpec, Scenario
from harness.sut import caselogs, procs
from harness.sut.api import PrefectAPI
from harness.sut.database import open_database
from harness.sut.net import free_port


class PrefectServer:
    """``prefect server start`` as a subprocess; restartable on the same port and database."""

    def __init__(self, home: Path, env: dict[str, str], database_url: str | None = None):
        self.home = home
        self.port = free_port()
        self.env = {
            **env,
            "PREFECT_API_DATABASE_CONNECTION_URL": database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.port),
        }
        self.proc: procs.Spawned | None = None
        self.api = PrefectAPI(self.api_url)
        self.start_seconds: float | None = None  # how long its last start took to answer

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: float = 120) -> None:
        began = time.monotonic()
        argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                "--port", str(self.port)]
        self.proc = procs.Spawned(argv, self.env, self.home / "server.log")

        def up() -> bool:
            if not self.proc.running():
                raise RuntimeError(f"prefect server exited ({self.proc.popen.returncode}):\n{self.proc.tail()}")
            return self.api.healthy()

        procs.wait_for(up, timeout, 0.25, f"the Prefect server on {self.api_url}/health",
                       f"see {self.proc.log}:\n{self.proc.tail()}")
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace=10)
            self.proc = None


class OomFault:
    """A memory limit on the flow-run process: a cgroup (v1 or v2), else an RSS watchdog."""

    def __init__(self, resolve: Callable[[], list[psutil.Process]], limit: int, name: str):
        self.resolve, self.limit, self.name = resolve, limit, name
        self.cgroup: cgroups.MemoryCgroup | None = None
        self.watchdog: cgroups.RssWatchdog | None = None

    def inject(self) -> dict[str, Any]:
        targets = self.resolve()
        if not targets:
            raise LookupError("no live flow-run process of this scenario")
        detail: dict[str, Any] = {"pids": [p.pid for p in targets], "limit_bytes": self.limit}
        try:
            if os.environ.get("CHAOS_OOM_MECHANISM") == "watchdog":
                raise PermissionError("CHAOS_OOM_MECHANISM=watchdog")
            self.cgroup = cgroups.MemoryCgroup(self.name, self.limit)
            for p in targets:
                self.cgroup.add(p.pid)
            detail.update(mechanism=f"cgroup-v{self.cgroup.version}", cgroup=str(self.cgroup.path))
        except OSError as exc:
            root = procs.roots(targets)[0]
            self.watchdog = cgroups.RssWatchdog(root.pid, self.limit)
            detail.update(mechanism="rss-watchdog", why_not_cgroup=str(exc))
        return detail

    def heal(self) -> dict[str, Any]:
        return {}

    def close(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cgroup is not None:
            out["oom_kills"] = self.cgroup.oom_kills()
            self.cgroup.remove()
        if self.watchdog is not None:
            self.watchdog.stop()
            out.update(watchdog_killed_at=self.watchdog.killed_at, watchdog_peak_rss=self.watchdog.peak)
        return out


class CpuStarve:
    """``cpu-starve`` of host processes: a CPU quota through the cpu cgroup (v1 or v2) on the
    target's processes (a flow run's whole tree; the worker or the server with what it started);
    children they start later are starved too.  Heal lifts the quota; the processes go back to
    their own cgroups at the end, alive."""

    def __init__(self, resolve: Callable[[], list[psutil.Process]], cpus: float, name: str, label: str):
        self.resolve, self.cpus, self.name, self.label = resolve, cpus, name, label
        self.cgroup: cgroups.CpuCgroup | None = None

    def inject(self) -> dict[str, Any]:
        targets = self.resolve()
        if not targets:
            raise LookupError(f"no live {self.label} process of this scenario")
        self.cgroup = cgroups.CpuCgroup(self.name, self.cpus)
        for p in targets:
            try:
                self.cgroup.add(p.pid)
            except ProcessLookupError:
                pass  # it ended between the lookup and the move
        return {"pids": [p.pid for p in targets], "cpus": self.cpus, "mechanism": f"cgroup-v{self.cgroup.version}",
                "cgroup": str(self.cgroup.path), "quota_us": self.cgroup.quota_us, "period_us": self.cgroup.period_us}

    def heal(self) -> dict[str, Any]:
        if self.cgroup is None:
            return {}
        self.cgroup.lift()
        return {"lifted": True, **self.cgroup.throttling()}

    def close(self) -> dict[str, Any]:
        if self.cgroup is None:
            return {}
        out = {"throttling": self.cgroup.throttling()}
        self.cgroup.remove()
        self.cgroup = None
        return out


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and its descendants (empty once it is gone)."""
    try:
        top = psutil.Process(pid)
        return [top, *top.children(recursive=True)]
    except psutil.Error:
        return []


def worker_fault(spec: FaultSpec, deployed: Deployed, session: str) -> SignalFault | CpuStarve:
    """A fault on the scenario's worker: a host process on every backend that has one here."""
    worker: procs.Spawned = deployed.extra["worker"]

    def process() -> list[psutil.Process]:  # the worker alone: its flow runs are not the worker
        return [psutil.Process(worker.pid)] if worker.running() else []

    if spec.kind == "cpu-starve":
        return CpuStarve(process, spec.cpus, starve_name(session, deployed, spec), "worker")
    return SignalFault("kill" if spec.kind == "kill-worker" else spec.kind, process, spec.grace_seconds, "worker")


def starve_name(session: str, deployed: Deployed, spec: FaultSpec) -> str:
    """The cpu cgroup of one cpu-starve fault: the session, the case and the target in its name."""
    return f"{session}-{deployed.instance}-cpu-{spec.target}"


class LocalSystem(SharedFaults):
    name = "local"

    def __init__(self, workdir: Path, session: str, options: dict[str, Any] | None = None):
        self.workdir, self.session = workdir, session
        self.env = clean_env(workdir / "home", session)  # makes home and its tmp
        self.database_kind = (options or {}).get("database") or "sqlite"
        self.database = open_database(self.database_kind, workdir, session)
        self.workers: dict[str, procs.Spawned] = {}
        self.shared_worker: SharedWorker | None = SharedWorker(self, "process")
        try:
            self.server = PrefectServer(workdir / "home", server_env(self.env, options),
                                        self.database and self.database.url)
            self.server.start()
        except BaseException:
            if self.database is not None:
                self.database.close()
            raise
        self.api = self.server.api

    def deploy(self, scenario: Scenario, instance: str) -> AbstractContextManager[Deployed]:
        def job_variables(home: Path, ledger: Path) -> dict[str, Any]:
            return {"env": flow_env(scenario, ledger, home / "results", str(scenario.workload.directory)),
                    **scenario.config.job.model_dump(include={"stream_output", "command"}, exclude_none=True)}

        def remove_orphans() -> None:  # flow-run processes the worker left behind (killed, or frozen)
            orphans = procs.find(self.session, CHAOS_INSTANCE=instance)
            if orphans:
                procs.signal_all(orphans, signal.SIGKILL)
                procs.wait_gone(orphans, 5)

        deployment = scenario_deployment(self, scenario, instance, "process", job_variables, remove_orphans,
                                         mem_limit=scenario.config.job.mem_limit)
        if not (scenario.workload.task_workers or scenario.workload.foreign_task_workers):
            return deployment
        return self._with_task_workers(deployment, scenario, instance)

    @contextmanager
    def _with_task_workers(self, deployment: AbstractContextManager[Deployed], scenario: Scenario,
                           instance: str) -> Iterator[Deployed]:
        """The scenario's deployment plus its ``prefect task serve`` replicas, with the flow run's
        environment and API URL (through the fault proxy, if the scenario has one)."""
        with deployment as deployed:
            proxy = deployed.extra.get("proxy")
            home = self.workdir / instance
            env = {**self.env, **flow_env(scenario, deployed.ledger, home / "results", str(FLOWS_DIR)),
                   "PREFECT_API_URL": proxy.api_url if proxy is not None else self.server.api_url,
                   "CHAOS_INSTANCE": instance}
            workload = scenario.workload
            entrypoint = f"{FLOWS_DIR / workload.flow}.py:work"
            with ExitStack() as stack:
                if workload.foreign_task_workers:
                    # another service's replicas: the same task (its key has the instance), their own
                    # result storage, straight to the server; already serving when the scenario's start
                    foreign_home = home / "foreign"
                    foreign_home.mkdir(parents=True, exist_ok=True)
                    foreign_env = {**env, "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(foreign_home / "results"),
                                   "PREFECT_API_URL": self.server.api_url}
                    foreign = TaskWorkers(workload.foreign_task_workers, entrypoint, foreign_env, foreign_home, None,
                                          WORKER_GRACE, foreign=True)
                    stack.callback(foreign.stop)
                    deployed.extra["foreign_task_workers"] = foreign
                workers = TaskWorkers(workload.task_workers, entrypoint, env, home, workload.task_worker_limit,
                                      WORKER_GRACE)
                stack.callback(workers.stop)
                deployed.extra["task_workers"] = workers
                yield deployed

    def log_sources(self, deployed: Deployed | None = None) -> dict[str, caselogs.Source]:
        """The server's and database's logs (a case's worker and task workers log in its directory)."""
        return {"server.log": self.server.home / "server.log", **shared_database_logs(self.database),
                **shared_worker_logs(self.shared_worker, deployed)}

    def infrastructure(self, deployed: Deployed) -> list[dict[str, Any]]:
        """The task workers a scenario had (which replica executed what: the ledger's pids)."""
        return [replica for key in ("foreign_task_workers", "task_workers") if key in deployed.extra
                for replica in deployed.extra[key].account()]

    def _flow_run_processes(self, flow_run_id: str) -> Callable[[], list[psutil.Process]]:
        return lambda: procs.find(self.session, PREFECT__FLOW_RUN_ID=flow_run_id)

    def _own_fault(self, spec: FaultSpec, deployed: Deployed, flow_run_id: str) -> Any:
        """This backend's mechanism for a fault ``shared_fault`` leaves to it."""
        if spec.kind == "cpu-starve" and spec.target != "worker":
            resolve = ((lambda: process_tree(self.server.proc.pid) if self.server.proc else [])
                       if spec.target == "server" else self._flow_run_processes(flow_run_id))
            return CpuStarve(resolve, spec.cpus, starve_name(self.session, deployed, spec), spec.target)
        if spec.target == "server":
            return ServerRestart(self.server, self.server.start, deployed.extra.get("proxy"), spec.heal_after_seconds)
        if spec.kind == "oom":
            limit = parse_bytes(spec.mem_limit or deployed.extra["mem_limit"])
            return OomFault(self._flow_run_processes(flow_run_id), limit, f"{self.session}-{deployed.instance}")
        if spec.target == "worker":
            return worker_fault(spec, deployed, self.session)
        if spec.target == "task-worker":
            return TaskWorkerFault(spec.kind, deployed.extra["task_workers"], spec.replicas, spec.when.task,
                                   deployed.ledger, spec.grace_seconds)
        # otherwise: the flow run itself
        return SignalFault(spec.kind, self._flow_run_processes(flow_run_id), spec.grace_seconds, "flow-run")

    def close(self) -> None:
        for worker in list(self.workers.values()):
            worker.stop(grace=WORKER_GRACE)
        if self.shared_worker is not None:
            self.shared_worker.stop()
        self.server.stop()
        self.api.close()
        if self.database is not None:
            self.database.close()

