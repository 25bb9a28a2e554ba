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
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from harness import procs
from harness.scenario import Scenario

Case = tuple[Scenario, str]
SHARED_TARGETS = frozenset({"server", "node", "database"})  # faults that would hit every case on the system
PRIVATE_BACKENDS = frozenset({"local", "docker"})  # where a second system is cheap and shares nothing


def shares_target(scenario: Scenario) -> bool:
    return any(f.target in SHARED_TARGETS for f in scenario.faults)


def runs_alone(case: Case) -> bool:
    return shares_target(case[0]) and case[1] not in PRIVATE_BACKENDS


def plan(cases: list[Case]) -> list[Case]:
    """The order to start cases in: longest bound first (a longest-processing-time schedule), the
    cases that must run alone last, so they wait for the others instead of holding them up."""
    return sorted(cases, key=lambda c: (runs_alone(c), -c[0].expect.for_backend(c[1]).settle_within_seconds))


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


class Scheduler:
    """Runs cases with ``run(case, system)``; ``session`` gives systems (``system``, ``private_system``)."""

    def __init__(self, session: Any, run: Callable[[Scenario, Any], dict[str, Any]], limit: int = 1):
        if limit < 1:
            raise ValueError("concurrency must be at least 1")
        self.session, self.run, self.limit = session, run, limit
        self.planned: list[Case] = []
        self.futures: dict[tuple[str, str], Future] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._locks: dict[str, ExclusiveLock] = {}
        self._guard = threading.Lock()

    def _execute(self, case: Case) -> dict[str, Any]:
        scenario, backend = case
        if self.limit == 1 or not shares_target(scenario):
            system = self.session.system(backend, scenario.database)
            with self._lock(backend).shared():
                return self.run(scenario, system)
        if backend in PRIVATE_BACKENDS:
            with self.session.private_system(backend, scenario.id, scenario.database) as system:
                return self.run(scenario, system)
        system = self.session.system(backend, scenario.database)  # Unavailable is raised here, before any wait
        with self._lock(backend).exclusive():
            return self.run(scenario, system)

    def _lock(self, backend: str) -> ExclusiveLock:
        with self._guard:
            return self._locks.setdefault(backend, ExclusiveLock())

    def _submit(self, case: Case) -> Future:
        key = (case[0].id, case[1])
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
        for planned in plan(self.planned):
            self._submit(planned)
        return self._submit(case).result()

    def close(self) -> None:
        """Stop: waiting cases are dropped, running ones see ``procs.STOPPING`` and end."""
        procs.STOPPING.set()
        if self._pool is not None:
            for future in self.futures.values():
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
