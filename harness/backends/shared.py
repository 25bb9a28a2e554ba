"""What every backend shares: a case's deployment (work pool or queue, deployment, the zombie
automation), the environment its processes get, the host-process worker, and the faults on the
server's database and on the API."""

from __future__ import annotations

import os
import sys
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from harness.backends import Deployed
from harness.ledger import LEDGER_ENV, TRACE_ENV, TRACE_FILE
from harness.model.faults import CancelRun
from harness.model.scenario import FaultSpec, Scenario
from harness.paths import PACKAGE
from harness.sut import caselogs, procs
from harness.sut.api import APIError, PrefectAPI
from harness.sut.proxy import ApiFault, FaultProxy, Rule

WORKER_GRACE = 5.0  # SIGTERM, then this long, then SIGKILL: an idle worker may ignore SIGTERM


def clean_env(home: Path, session: str) -> dict[str, str]:
    """The environment of every process the harness starts; makes ``home`` and its ``tmp``.

    The user's own PREFECT_* settings are dropped, so a profile pointing at Prefect Cloud or a
    production server can never receive the harness's traffic.

    ``TMPDIR`` is a directory of the session: Prefect's processes leave temporary directories
    behind whenever they are killed (the process worker's working directory, the runner's
    workspace attempt) and one per runner even when they are not (``runner_storage``), and the
    session's removal takes them all, instead of the machine's ``/tmp`` filling up.
    """
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "TMPDIR": str(tmp),
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        procs.SESSION_ENV: session,
        procs.OWNER_ENV: str(os.getpid()),
        "PYTHONUNBUFFERED": "1",
        # flow-run commands ("prefect flow-run execute") resolve to the harness's own environment
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", os.defpath)]),
    })
    return env


def server_env(env: dict[str, str], options: dict[str, Any] | None) -> dict[str, str]:
    """The environment of a system's server: the harness's ``env`` with the case's own server
    settings (``options["server_env"]``, a row's ``server.env``) over it."""
    return {**env, **((options or {}).get("server_env") or {})}


class RestartDatabase:
    """Stop the server's PostgreSQL, keep it down, start it again on the same data."""

    def __init__(self, database: Any):
        self.database, self.down = database, False

    def inject(self) -> dict[str, Any]:
        if self.database is None:
            raise LookupError("this server is on SQLite: there is no database to restart")
        self.database.stop()
        self.down = True
        return {"database": type(self.database).__name__}

    def heal(self) -> dict[str, Any]:
        self.database.start()
        self.down = False
        return {"restarted": True}

    def close(self) -> dict[str, Any]:
        if self.down:  # never leave the server without its database
            self.heal()
            return {"restarted_at_close": True}
        return {}


class ServerRestart:
    """``restart-server``: stop the system's server, start it again on the same database.

    Behind the case's fault proxy (local, docker) the clients meet exactly ``heal_after`` seconds of
    refused connections, whatever the server's start takes: the proxy stops listening (and drops
    what was open) when the server stops, and listens again at the heal; the server is started in
    the background ahead of it, by twice its last start's time (and 5 s), so it answers by then
    unless the machine is slower than that.  Without it the outage would be ``heal_after`` plus
    the start, and the start grows with the machine's load (12 s alone, 58 s under three cases at
    once), so a row about the client's retry budget would change its verdict with the load.
    Without a proxy (kind: its pods cannot reach one on loopback) the server starts at the heal,
    and the outage is ``heal_after`` plus its start."""

    def __init__(self, server: Any, start: Callable[[], None], proxy: FaultProxy | None, heal_after: float | None,
                 after_restart: Callable[[], None] = lambda: None):
        self.server, self.start, self.proxy, self.after_restart = server, start, proxy, after_restart
        self.heal_after = heal_after or 0.0
        self.rule = Rule("down")
        self.down = False
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._times: dict[str, float] = {}

    def lead(self) -> float:
        """How long before the heal the server is started again (at most ``heal_after``)."""
        last = getattr(self.server, "start_seconds", None)
        return self.heal_after if last is None else min(self.heal_after, 2 * last + 5)

    def inject(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"port": self.server.port}
        self._times["stopped"] = time.monotonic()
        if self.proxy is not None:
            self.proxy.add(self.rule)
            detail["proxy_port"] = self.proxy.port
        self.down = True
        self.server.stop()
        if self.proxy is not None:
            delay = max(0.0, self.heal_after - self.lead())
            self._thread = threading.Thread(target=self._restart, args=(delay,), daemon=True,
                                            name="chaos-server-restart")
            self._thread.start()
            detail["restart_after_seconds"] = round(delay, 1)
        return detail

    def _restart(self, delay: float) -> None:
        self._cancel.wait(delay)
        self._times["starting"] = time.monotonic()
        try:
            self.start()
        except BaseException as exc:  # raised again by heal or close, in the case's thread
            self._error = exc
        self._times["answering"] = time.monotonic()

    def _started(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            if self._error is not None:
                error, self._error = self._error, None
                raise error
        else:
            self._times["starting"] = time.monotonic()
            self.start()
            self._times["answering"] = time.monotonic()

    def heal(self) -> dict[str, Any]:
        self._started()
        self.after_restart()
        if self.proxy is not None:
            self.proxy.remove(self.rule)
        self.down = False
        t = self._times
        now = time.monotonic()
        return {"restarted": True, "server_down_seconds": round(t["answering"] - t["stopped"], 1),
                "start_seconds": round(t["answering"] - t["starting"], 1),
                "clients_refused_seconds": round(now - t["stopped"], 1)}

    def close(self) -> dict[str, Any]:
        if not self.down:
            return {}
        self._cancel.set()  # never leave the session without its server
        try:
            self._started()
        except Exception:
            self.start()  # the background start failed: one more, in the open
        self.after_restart()
        if self.proxy is not None:
            self.proxy.remove(self.rule)
        self.down = False
        return {"restarted_at_close": True}


def shared_database_logs(database: Any) -> dict[str, caselogs.Source]:
    return database.log_sources() if database is not None else {}


def shared_worker_logs(shared: "SharedWorker | None", deployed: Deployed | None) -> dict[str, caselogs.Source]:
    """The shared worker's log (with the output of the flow runs it streams), for the cases it
    serves, cut like the server's to what was written since the case was prepared."""
    if shared is None or (deployed is not None and not deployed.extra.get("shared_worker")):
        return {}
    return {"shared-worker.log": shared.log}


def api_fault(spec: FaultSpec, deployed: Deployed) -> ApiFault:
    """An API fault on the scenario's fault proxy (every backend whose clients reach it)."""
    proxy = deployed.extra.get("proxy")
    if proxy is None:
        raise LookupError("this scenario has no fault proxy (its backend cannot route its clients through one)")
    return ApiFault(proxy, spec)


def shared_fault(spec: FaultSpec, deployed: Deployed, flow_run_id: str, api: PrefectAPI, database: Any):
    """The faults every backend injects the same way, or None: a restart of the server's database,
    an API fault on the scenario's proxy, and a user's cancellation through the API."""
    if spec.target == "database":
        return RestartDatabase(database)
    if spec.target == "api":
        return api_fault(spec, deployed)
    if spec.kind == "cancel":
        return CancelRun(api, flow_run_id)
    return None


class SharedFaults:
    """``System.fault`` for a backend whose server and database the harness runs itself (local,
    docker): the faults every such backend injects alike (``shared_fault``), else its own
    ``_own_fault``; each kept on the case's deployment, closed with it."""

    api: PrefectAPI
    database: Any

    def fault(self, spec: FaultSpec, deployed: Deployed, flow_run_id: str):
        made = shared_fault(spec, deployed, flow_run_id, self.api, self.database)
        if made is None:
            made = self._own_fault(spec, deployed, flow_run_id)
        deployed.extra["faults"].append(made)
        return made

    def _own_fault(self, spec: FaultSpec, deployed: Deployed, flow_run_id: str) -> Any:
        raise NotImplementedError


def zombie_automation(name: str, deployment_id: str, within: int) -> dict[str, Any]:
    """The documented zombie-detection automation, scoped to one deployment's flow runs."""
    return {
        "name": name,
        "description": "chaos harness: mark flow runs Crashed when heartbeats stop",
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Proactive",
            "after": ["prefect.flow-run.heartbeat"],
            "expect": ["prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                       "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"],
            "match": {"prefect.resource.id": ["prefect.flow-run.*"]},
            "match_related": {"prefect.resource.id": [f"prefect.deployment.{deployment_id}"],
                              "prefect.resource.role": "deployment"},
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": within,
        },
        "actions": [{"type": "change-flow-run-state", "state": "CRASHED",
                     "message": "Flow run marked as crashed due to missing heartbeats."}],
    }


def flow_env(scenario: Scenario, ledger: Path, results: Path, pythonpath: str, package: str = str(PACKAGE)
             ) -> dict[str, str]:
    """A scenario's config as the flow-run environment (every backend passes it as job variables).
    ``package`` is where the flow-run process finds the harness package (a mount in a container):
    its execution tracer (``harness/tracer``) goes first on the path and writes ``trace.jsonl``
    beside the ledger."""
    cfg = scenario.config
    env = {
        LEDGER_ENV: str(ledger),
        TRACE_ENV: str(ledger.with_name(TRACE_FILE)),
        "CHAOS_FLOW_RETRIES": str(cfg.flow_retries),
        "CHAOS_TASK_RETRIES": str(cfg.task_retries),
        "CHAOS_RETRY_DELAY_SECONDS": str(cfg.retry_delay_seconds),
        "CHAOS_CACHE_POLICY": cfg.cache_policy,
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(results),  # no cache shared across scenarios
        "PYTHONPATH": os.pathsep.join([f"{package}/tracer", pythonpath]),
    }
    if cfg.heartbeat_seconds is not None:
        env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(cfg.heartbeat_seconds)
    return {**env, **cfg.env}


def start_worker(api: PrefectAPI, env: dict[str, str], api_url: str, pool: str, worker_type: str,
                 instance: str, home: Path) -> procs.Spawned:
    """``prefect worker start`` for one scenario's pool; returns once the pool exists."""
    # a scenario's worker.env (in ``env``) may set the poll interval, not where the worker talks to
    worker_env = {"PREFECT_WORKER_QUERY_SECONDS": "1", **env, "PREFECT_API_URL": api_url, "CHAOS_INSTANCE": instance}
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", worker_type,
            "--name", f"{pool}-worker"]
    worker = procs.Spawned(argv, worker_env, home / "worker.log")

    def pool_ready() -> bool:
        if not worker.running():
            raise RuntimeError(f"prefect worker exited ({worker.popen.returncode}):\n{worker.tail()}")
        try:
            return api.work_pool(pool) is not None
        except APIError:
            return False  # a busy SQLite answers 503; keep waiting

    try:
        procs.wait_for(pool_ready, 90, 0.25, f"work pool {pool} from its {worker_type} worker", f"see {worker.log}")
    except BaseException:
        worker.stop(grace=WORKER_GRACE)
        raise
    return worker


class SharedWorker:
    """One worker for every case of a system that does not need its own: the cases of the rows
    whose faults never reach a worker (not its process, nor what it talks to: its API or its
    server) and that do not set its environment.  Each such case gets a work queue of its own in
    the shared pool, so the worker runs its flow runs with its deployment's job variables as it
    would in a pool of its own; a process worker starts them with its own environment and the
    job's, and the job's names the case (``CHAOS_INSTANCE``).  Started on first use, and again
    should it have died; stopped with the system.  It spares each case a ``prefect worker
    start`` (seconds of CPU to import Prefect and register) and its idle polling."""

    def __init__(self, system: Any, worker_type: str):
        self.system, self.worker_type = system, worker_type
        self.pool = f"chaos-shared-{system.workdir.name[-24:]}".lower().replace("_", "-").replace("+", "-")
        self.home = system.workdir / "shared-worker"
        self.worker: procs.Spawned | None = None
        self.starts = 0
        self._lock = threading.Lock()

    @property
    def log(self) -> Path:
        return self.home / "worker.log"

    def ensure(self) -> procs.Spawned:
        """The running shared worker (its pool exists once this returns)."""
        with self._lock:
            if self.worker is None or not self.worker.running():
                self.home.mkdir(parents=True, exist_ok=True)
                if self.worker is not None:  # it died: its log is kept beside the new one
                    self.log.replace(self.home / f"worker-{self.starts}.log")
                self.worker = start_worker(self.system.api, self.system.env, self.system.server.api_url, self.pool,
                                           self.worker_type, "shared", self.home)
                self.starts += 1
            return self.worker

    def stop(self) -> None:
        with self._lock:
            if self.worker is not None:
                self.worker.stop(grace=WORKER_GRACE)
                self.worker = None


def register(api: PrefectAPI, scenario: Scenario, instance: str, pool: str, job: dict[str, Any], home: Path,
             queue: str | None = None, directory: Path | None = None) -> tuple[str, str | None]:
    """The scenario's deployment (and its zombie automation, if asked for): (deployment id, automation id).
    ``directory`` is where the flow run finds the code, where that is not ``workload.directory``
    (kind: a copy in the directory every node shares)."""
    workload = scenario.workload
    deployment_id = api.create_deployment(
        flow_name=workload.flow_name, name=instance, pool=pool, entrypoint=workload.entrypoint,
        directory=str(directory or workload.directory), parameters=workload.parameters_for(home), job_variables=job,
        tags=["chaos", instance], queue=queue)
    automation = None
    if scenario.config.zombie_automation_within is not None:
        automation = api.create_automation(zombie_automation(
            f"chaos-zombie-{instance}", deployment_id, scenario.config.zombie_automation_within))
    return deployment_id, automation


def unregister(api: PrefectAPI, automation: str | None, deployment_id: str, pool: str, queue: str | None = None) -> None:
    """Remove what ``register`` made, and the case's pool (its queue, in a shared pool)."""
    for call in (lambda: automation and api.delete_automation(automation),
                 lambda: deployment_id and api.delete_deployment(deployment_id),
                 lambda: api.delete_work_queue(pool, queue) if queue else api.delete_work_pool(pool)):
        try:
            call()
        except APIError:
            pass  # the server's database is temporary; nothing outlives the session


@contextmanager
def scenario_deployment(system: Any, scenario: Scenario, instance: str, worker_type: str,
                        job_variables: Callable[[Path, Path], dict[str, Any]], remove_leftovers: Callable[[], None],
                        worker: Callable[[Path, str], Any] | None = None, restart_behind_proxy: bool = True,
                        directory: Path | None = None, **extra: Any) -> Iterator[Deployed]:
    """One scenario's worker, deployment and automation, and their certain removal, on any backend.

    ``system`` has ``api``, ``server.api_url``, ``env``, ``workdir`` and ``workers``, and
    ``shared_worker`` (a ``SharedWorker``, or None where every case has its own);
    ``job_variables(home, ledger)`` gives the backend's job variables; ``remove_leftovers`` ends what
    the stopped worker left behind (orphaned processes, exited containers).  ``worker(home, pool)``
    starts a worker that is not a host process (anything with ``stop(grace=)``).  A case whose row
    needs no worker of its own (``Scenario.own_worker``) gets a queue in the shared worker's pool.
    Its clients talk through a fault proxy if it has an API fault, or (``restart_behind_proxy``)
    restarts the server (``ServerRestart``).  ``directory``: as ``register``'s."""
    home = system.workdir / instance
    home.mkdir(parents=True)
    pool, queue = f"chaos-{instance}", None
    api_url, proxy = system.server.api_url, None
    if scenario.api_faults or (restart_behind_proxy and scenario.restarts_server):
        # the worker, and the flow runs it starts, talk through the proxy
        proxy = FaultProxy(urlsplit(api_url).port, seed=zlib.crc32(scenario.id.encode())).start()
        api_url = proxy.api_url
    shared = getattr(system, "shared_worker", None)
    shared = shared if worker is None and shared is not None and not scenario.own_worker else None
    try:
        if shared is not None:
            worker, pool, queue = shared.ensure(), shared.pool, f"chaos-{instance}"
        elif worker is None:
            worker = start_worker(system.api, {**system.env, **scenario.worker.env}, api_url, pool, worker_type,
                                  instance, home)
        else:
            worker = worker(home, pool)
    except BaseException:
        if proxy is not None:
            proxy.close()
        raise
    if shared is None:
        system.workers[instance] = worker
    deployed = Deployed(instance, "", pool, home / "ledger.jsonl",
                        extra={"worker": worker, "shared_worker": shared is not None, "faults": [], "proxy": proxy,
                               **extra})
    automation = None
    try:
        job = job_variables(home, deployed.ledger)
        job["env"] = {**job.get("env", {}), "CHAOS_INSTANCE": instance}  # its flow runs, whatever worker starts them
        deployed.deployment_id, automation = register(system.api, scenario, instance, pool, job, home, queue,
                                                        directory)
        yield deployed
    finally:
        for fault in deployed.extra["faults"]:
            try:
                fault.close()
            except Exception:
                pass  # one fault's failed close must not keep the worker and the rest alive
        if shared is None:
            worker.stop(grace=WORKER_GRACE)
            system.workers.pop(instance, None)
        remove_leftovers()
        if proxy is not None:
            proxy.close()
        unregister(system.api, automation, deployed.deployment_id, pool, queue)
