"""Running many (scenario, backend) cases at once against one server per backend.

``Scheduler.result(case)`` is what a chaos test asks for.  With ``limit`` 1 it runs the case
there and then, as before.  With more, the first request submits every planned case to a pool of
``limit`` threads, longest bound first (so the longest scenario starts at once and the matrix
ends soon after it), and each test waits for its own case.  Cases stay isolated on a shared
server by their own work pool, worker, deployment, labels and fault proxy; a case whose faults
hit what others share (the server, a kind node) gets a private system of its own where the
backend can start one (local, docker) and otherwise runs alone (kind).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from harness.model.fields import OWN_SERVER_BACKENDS
from harness.model.scenario import Scenario
from harness.run.session import prefect_version
from harness.sut import procs

Case = tuple[Scenario, str]
SHARED_TARGETS = frozenset({"server", "node", "database"})  # faults that would hit every case on the system
PRIVATE_BACKENDS = frozenset(OWN_SERVER_BACKENDS)  # where a second system is cheap and shares nothing


def shares_target(scenario: Scenario) -> bool:
    return any(f.target in SHARED_TARGETS for f in scenario.faults)


def runs_alone(case: Case) -> bool:
    return shares_target(case[0]) and case[1] not in PRIVATE_BACKENDS


def by_system(cases: list[Case]) -> list[Case]:
    """The cases in their order, each backend's and database's together, in the order of each
    one's first case: one at a time, a system then lives only while its cases run (the scheduler
    retires it after its last one) instead of idling until the session ends."""
    first: dict[tuple[str, str | None], int] = {}
    for i, (scenario, backend) in enumerate(cases):
        first.setdefault((backend, scenario.database), i)
    return sorted(cases, key=lambda c: first[(c[1], c[0].database)])


def is_storm(case: Case) -> bool:
    """A case that starts many flow runs at once (``workload.runs`` > 1): a load of its own."""
    return case[0].workload.runs > 1


def plan(cases: list[Case], apart: int = 2) -> list[Case]:
    """The order to start cases in: longest bound first (a longest-processing-time schedule), the
    cases that must run alone last, so they wait for the others instead of holding them up, and
    at least ``apart`` other cases between two storms where there are enough (the scheduler runs
    one storm at a time: a storm queued right behind another would hold a slot while it waits)."""
    version = prefect_version()
    ordered = sorted(cases, key=lambda c: (runs_alone(c), -c[0].expect.for_backend(c[1], version).settle_within_seconds))
    out: list[Case] = []
    waiting: list[Case] = []  # storms put back, in their order
    since = apart  # cases since the last storm
    for case in ordered:
        if waiting and since >= apart:
            out.append(waiting.pop(0))
            since = 0
        if not is_storm(case):
            out.append(case)
            since += 1
        elif since >= apart and not waiting:
            out.append(case)
            since = 0
        else:
            waiting.append(case)
    return out + waiting


class ExclusiveLock:
    """Many shared holders or one exclusive holder.  Shared holders go first: an exclusive one
    waits until none is left (it was planned last, so this is the end of the matrix)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and not self._shared)
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class _Inline:
    """A plain ``run(scenario, system)`` as a runner with nothing to prepare or clean up."""

    def __init__(self, run: Callable[[Scenario, Any], dict[str, Any]]):
        self.run = run

    def prepare(self, scenario: Scenario, system: Any) -> tuple[Scenario, Any]:
        return scenario, system

    def execute(self, prepared: tuple[Scenario, Any], turn: float) -> dict[str, Any]:  # noqa: ARG002
        return self.run(*prepared)

    def cleanup(self, prepared: Any) -> None:
        pass


def _key(case: Case) -> tuple[str, str]:
    return case[0].id, case[1]


class Scheduler:
    """Runs cases; ``session`` gives systems (``system``, ``private_system``).

    ``run`` is a runner with ``prepare(scenario, system)``, ``execute(prepared, turn)`` and
    ``cleanup(prepared)`` (``harness.run.Runner``), or a plain ``run(scenario, system)``.  With a
    runner, the scheduler deploys up to ``ahead`` of the next planned cases while the current ones
    run, and cleans a finished case up while the next one runs: a case's turn then starts with its
    worker ready and ends with its journal line.  A case is prepared ahead only on a shared system
    and only when neither it nor a case running alone on that system faults what every case shares
    (a server restart must not hit a worker that waits for its turn).  ``close`` cleans up
    everything, prepared or finished, before it returns."""

    def __init__(self, session: Any, run: Any, limit: int = 1, ahead: int = 1):
        if limit < 1:
            raise ValueError("concurrency must be at least 1")
        if ahead < 0:
            raise ValueError("ahead must be at least 0")
        self.session, self.limit = session, limit
        self.runner = run if hasattr(run, "prepare") else _Inline(run)
        self.ahead = ahead if hasattr(run, "prepare") else 0
        self.planned: list[Case] = []  # the session's cases: in the order asked for with limit 1, else plan()'s
        self.futures: dict[tuple[str, str], Future] = {}
        self.cleanup_seconds: dict[tuple[str, str], float] = {}
        self.cleanup_errors: dict[tuple[str, str], str] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._prepare_pool = ThreadPoolExecutor(1, thread_name_prefix="chaos-prepare")
        self._cleanup_pool = ThreadPoolExecutor(max(2, limit), thread_name_prefix="chaos-cleanup")
        self._prepared: dict[tuple[str, str], Future] = {}  # prepared ahead, not taken yet
        self._every_preparation: list[Future] = []
        self._started: set[tuple[str, str]] = set()
        self._alone = 0  # cases running alone on a shared system (their faults hit what it shares)
        self._active: dict[tuple[str, str | None], int] = {}  # shared systems: cases running or cleaning up
        self._closing = False
        self._locks: dict[str, ExclusiveLock] = {}
        self._guard = threading.Lock()
        # one storm at a time: two storms at once on 2 cores overload the servers until Prefect's
        # flow-run processes exit before they start (measured: a storm's unfaulted run Crashed at
        # run_count 0, "Process exited with status code: 1", beside two other storms)
        self._storm = threading.Lock()

    def _execute(self, case: Case) -> dict[str, Any]:
        if self.limit > 1 and is_storm(case):
            with self._storm:  # its turn starts once no other storm runs
                return self._execute_now(case)
        return self._execute_now(case)

    def _execute_now(self, case: Case) -> dict[str, Any]:
        # a case's turn starts once its system is up, or as it starts its own (a private server
        # is the case's own cost; the session's server is the session's)
        scenario, backend = case
        # its server's settings are its own, or (at concurrency) its faults hit what every case of
        # the shared server has: a private system
        private = scenario.own_server or (self.limit > 1 and shares_target(scenario) and backend in PRIVATE_BACKENDS)
        with self._guard:  # taken, even if it fails before it runs (its system cannot start...)
            self._started.add(_key(case))
            ahead = self._prepared.pop(_key(case), None)
            if not private:  # on the shared system from now on: it is not retired under the case
                where = (backend, scenario.database)
                self._active[where] = self._active.get(where, 0) + 1
        if private:
            return self._run_private(case, ahead)
        try:
            system = self.session.system(backend, scenario.database)  # Unavailable is raised here, before any wait
        except BaseException:
            self._leave(case)
            raise
        if self.limit == 1 or not shares_target(scenario):
            with self._lock(backend).shared():
                return self._run(case, system, time.time(), ahead, alone=shares_target(scenario))
        with self._lock(backend).exclusive():
            return self._run(case, system, time.time(), ahead, alone=True)

    def _run_private(self, case: Case, ahead: Future | None) -> dict[str, Any]:
        scenario, backend = case
        turn = time.time()
        with self.session.private_system(backend, scenario.id, scenario.database, scenario.server.env) as system:
            return self._run(case, system, turn, ahead, alone=False, private=True)

    def _leave(self, case: Case) -> None:
        """A case is done with its shared system, cleanup included: once no case runs on it and
        none that is planned and not started needs it, the system is retired (closed)."""
        where = (case[1], case[0].database)
        with self._guard:
            self._active[where] -= 1
            needed = self._active[where] > 0 or self._closing or any(
                (c[1], c[0].database) == where and _key(c) not in self._started and not c[0].own_server
                for c in self.planned)
        if not needed and hasattr(self.session, "retire"):
            self.session.retire(*where)

    def _run(self, case: Case, system: Any, turn: float, ahead: Future | None, alone: bool,
             private: bool = False) -> dict[str, Any]:
        key = _key(case)
        with self._guard:
            self._alone += alone
        prepared = None
        try:
            prepared = ahead.result() if ahead is not None else self.runner.prepare(case[0], system)
            try:
                if not private:
                    self._prepare_ahead()  # once this case's own deployment is ready: no two at once
                return self.runner.execute(prepared, turn)
            finally:
                self._cleanup_behind(key, prepared, None if private else case)
        finally:
            with self._guard:
                self._alone -= alone
            if prepared is None and not private:  # it never deployed: nothing to clean up behind
                self._leave(case)

    def _order(self) -> list[Case]:
        """The order cases start in: as asked with limit 1, else the plan's."""
        return self.planned if self.limit == 1 else plan(self.planned)

    def _prepare_ahead(self) -> None:
        """Deploy the next planned cases (up to ``ahead`` waiting) in the background."""
        with self._guard:
            if self._closing or self._alone:
                return
            for case in self._order():
                if len(self._prepared) >= self.ahead:
                    return
                key = _key(case)
                if key in self._started or key in self._prepared:
                    continue
                # not a case that faults what its server's cases share (it gets a private system,
                # or runs last, alone), nor one with a server of its own, nor one whose system is
                # not up (starting a cluster or building an image is no background work); one at a
                # time, nothing past it either
                if shares_target(case[0]) or case[0].own_server or not self._system_up(case):
                    if self.limit == 1:
                        return
                    continue
                future = self._prepare_pool.submit(self._prepare, case)
                self._prepared[key] = future
                self._every_preparation.append(future)

    def _system_up(self, case: Case) -> bool:
        started = getattr(self.session, "started", None)
        return started is None or started(case[1], case[0].database)

    def _prepare(self, case: Case) -> Any:
        scenario, backend = case
        return self.runner.prepare(scenario, self.session.system(backend, scenario.database))

    def _cleanup_behind(self, key: tuple[str, str], prepared: Any, case: Case | None = None) -> None:
        def cleanup() -> None:
            began = time.time()
            try:
                self.runner.cleanup(prepared)
            except BaseException as exc:  # kept, and raised by close(): never lost
                self.cleanup_errors[key] = f"{type(exc).__name__}: {exc}"
            finally:
                self.cleanup_seconds[key] = round(time.time() - began, 3)
                if case is not None:  # on a shared system: retire it if this was its last case
                    try:
                        self._leave(case)
                    except Exception as exc:
                        self.cleanup_errors[("retire", f"{case[1]}+{case[0].database}")] = f"{type(exc).__name__}: {exc}"

        try:
            self._cleanup_pool.submit(cleanup)
        except RuntimeError:  # the scheduler is closing: clean up here
            cleanup()

    def _lock(self, backend: str) -> ExclusiveLock:
        with self._guard:
            return self._locks.setdefault(backend, ExclusiveLock())

    def _submit(self, case: Case) -> Future:
        key = _key(case)
        with self._guard:
            if key not in self.futures:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.limit, thread_name_prefix="chaos-case")
                self.futures[key] = self._pool.submit(self._execute, case)
            return self.futures[key]

    def result(self, case: Case) -> dict[str, Any]:
        """The journalled result of ``case``; raises what running it raised (Unavailable, ...)."""
        if self.limit == 1:
            return self._execute(case)
        for planned in self._order():
            self._submit(planned)
        return self._submit(case).result()

    def close(self) -> dict[tuple[str, str], str]:
        """Stop: waiting cases are dropped, running ones see ``procs.STOPPING`` and end; every
        case prepared or finished is cleaned up.  Returns the cleanups that failed."""
        with self._guard:
            self._closing = True
        if self._pool is not None:
            for future in self.futures.values():
                future.cancel()
        # Only what still runs is told to stop: ``STOPPING`` is the process's, and a scheduler
        # that closes idle (a test's, beside the pytest session's) must not stop another's waits.
        if any(not f.done() for f in [*self.futures.values(), *self._every_preparation]):
            procs.STOPPING.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._prepare_pool.shutdown(wait=True, cancel_futures=True)
        self._cleanup_pool.shutdown(wait=True)
        for future in self._every_preparation:  # prepared but never run, or its run interrupted
            if future.done() and not future.cancelled() and future.exception() is None:
                try:
                    self.runner.cleanup(future.result())  # idempotent: a finished case's is a no-op
                except Exception as exc:
                    self.cleanup_errors[("prepared", str(id(future)))] = f"{type(exc).__name__}: {exc}"
        return dict(self.cleanup_errors)
