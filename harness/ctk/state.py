"""What one ``chaos run`` process holds between its activities.

Chaos Toolkit calls each activity as a plain function, one after the other in one process
(background activities in threads), and passes nothing from one to the next.  What they share
lives here: one :class:`ChaosSession` (its temporary directory, its session marker, its cleanup),
the systems it started (one per backend and database, reused by later runs of the process), and
the current run: the scenario's deployment kept open in an ExitStack, its flow run, and the
faults injected into it.

``close`` ends everything in the order ``run_scenario`` does (faults closed, the deployment's
context exited, then the session: systems, processes by marker, cgroups, the directory).  It is
the ``stop_system`` action and it runs at exit, before the session's own ``atexit`` net, so an
experiment that never reaches its rollbacks still leaves no process, port, cgroup or directory.
"""

from __future__ import annotations

import atexit
import signal
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from harness.backends import Deployed, System
from harness.model.expectation import Expectation
from harness.model.faults import FAULT_KINDS, FaultRecord
from harness.model.scenario import FaultSpec, Scenario
from harness.run.session import ChaosSession, prefect_version

LOCK = threading.RLock()  # background activities run in threads


@dataclass
class Injected:
    """One inject_fault call: its spec, its record (as the history carries it), its fault."""

    spec: FaultSpec
    record: FaultRecord
    fault: Any = None  # None: nothing was injected (the trigger was not seen, or the backend refused)
    closed: bool = False

    @property
    def heals(self) -> bool:
        """A healing kind, or one given a heal time (a killed task-worker replica is started again)."""
        return FAULT_KINDS[self.spec.kind][1] != "never" or self.spec.heal_after_seconds is not None

    @property
    def open(self) -> bool:
        """Injected without an error, a fault that heals, not healed yet."""
        return (self.fault is not None and self.record.injected_at is not None and self.record.error is None
                and self.record.healed_at is None and self.heals)

    def close(self) -> None:
        """As run_scenario does once its run settled: the fault's last evidence into the record."""
        if self.fault is None or self.closed:
            return
        self.closed = True
        try:
            self.record.detail.update(self.fault.close())
        except Exception as exc:
            self.record.detail["close_error"] = f"{type(exc).__name__}: {exc}"


@dataclass
class Run:
    """The scenario started by start_run: its deployment stays open until the run is ended."""

    scenario: Scenario
    backend: str
    system: System
    deployed: Deployed
    stack: ExitStack
    flow_run_id: str
    started: float  # when the flow run was created: triggers and the settle bound count from here
    faults: list[Injected] = field(default_factory=list)

    @property
    def expect(self) -> Expectation:
        return self.scenario.expect.for_backend(self.backend, prefect_version())

    def describe(self) -> str:
        return f"scenario {self.scenario.id!r} on {self.backend}, flow run {self.flow_run_id}"


_session: ChaosSession | None = None
_run: Run | None = None


def session() -> ChaosSession:
    """This process's harness session, made on first use."""
    global _session
    with LOCK:
        if _session is None:
            _session = _new_session()
        return _session


def _new_session() -> ChaosSession:
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    made = ChaosSession()
    if previous is not None:
        # The session turns SIGTERM into KeyboardInterrupt; chaostoolkit's own handler interrupts
        # the experiment and still plays the rollbacks.  Keep chaostoolkit's.
        signal.signal(signal.SIGTERM, previous)
    atexit.unregister(close)
    atexit.register(close)  # after the session's registration: runs first (LIFO), while its systems live
    return made


def current(where: str) -> Run:
    """The current run; an activity called before start_run is refused, naming itself."""
    with LOCK:
        if _run is None:
            raise RuntimeError(f"{where}: no flow run in this process: call the start_run action first "
                               "(an exported experiment checks its hypothesis after the method only)")
        return _run


def current_or_none() -> Run | None:
    with LOCK:
        return _run


def begin(run: Run) -> None:
    global _run
    with LOCK:
        _run = run


def end_run() -> dict[str, Any] | None:
    """Close the current run's faults and exit its deployment (worker, orphans, proxy, automation,
    deployment, pool); return what it was.  The session and its systems stay for the next run."""
    global _run
    with LOCK:
        run, _run = _run, None
    if run is None:
        return None
    try:
        for injected in run.faults:
            injected.close()
    finally:
        run.stack.close()
    return {"scenario": run.scenario.id, "flow_run_id": run.flow_run_id, "instance": run.deployed.instance}


def close() -> dict[str, Any]:
    """End the run, then the session: no process, port, cgroup or directory is left.  Idempotent."""
    global _session
    with LOCK:
        sess = _session
        try:
            ended = end_run()
        finally:
            _session = None
            if sess is not None:
                sess.close()
    if sess is None:
        return {"stopped": False, "why": "no system was started in this process"}
    return {"stopped": True, "session": sess.id, "run": ended, "workdir_removed": not sess.workdir.exists()}
