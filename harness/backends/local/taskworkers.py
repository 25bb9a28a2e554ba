"""Background task workers: ``prefect task serve`` replicas of one scenario, and faults on them.

A scenario whose workload has ``task_workers: N`` gets N replicas serving the workload's ``work``
task beside its worker, with the flow run's environment (ledger, result storage, retries), so a
task run submitted with ``.delay()`` executes in one of them.  A replica is a host process marked
with the session and the scenario instance like every other process of the harness.

Which replica runs a task run is the server's choice; the ledger line a task body writes names
its process, so a fault on "the replica running step-1" is aimed by that line, and the history
can say which replica executed what (``account``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import psutil

from harness import ledger
from harness.backends.local.signals import SignalFault
from harness.sut import procs

REPLICA_ENV = "CHAOS_REPLICA"
FIND_RUNNING_SECONDS = 10.0  # a task is Running in the API a moment before its body's ledger line


class TaskWorkers:
    """The replicas of one scenario; a killed replica may be started again (a new generation)."""

    def __init__(self, count: int, entrypoint: str, env: dict[str, str], home: Path, limit: int | None, grace: float,
                 foreign: bool = False):
        self.entrypoint, self.env, self.home, self.limit, self.grace = entrypoint, env, home, limit, grace
        self.foreign = foreign  # another service's replicas (workload.foreign_task_workers): marked in the account
        self.started: list[tuple[int, int, procs.Spawned, float]] = []  # (replica, generation, process, at)
        try:
            for replica in range(count):
                self.start(replica)
        except BaseException:
            self.stop()
            raise

    def start(self, replica: int) -> procs.Spawned:
        generation = sum(1 for r, *_ in self.started if r == replica)
        argv = [sys.executable, "-m", "prefect", "task", "serve", self.entrypoint]
        if self.limit is not None:
            argv += ["--limit", str(self.limit)]
        proc = procs.Spawned(argv, {**self.env, REPLICA_ENV: str(replica)},
                             self.home / f"task-worker-{replica}.{generation}.log")
        self.started.append((replica, generation, proc, time.time()))
        return proc

    def live(self) -> dict[int, procs.Spawned]:
        """The current process of every replica that runs."""
        current: dict[int, procs.Spawned] = {}
        for replica, _, proc, _ in self.started:
            current[replica] = proc
        return {r: p for r, p in current.items() if p.running()}

    def running(self, task: str, ledger_path: Path, wait: float = FIND_RUNNING_SECONDS) -> list[int]:
        """The replica whose process wrote the last unfinished execution of ``task`` (waiting for
        the ledger line a moment; an empty list if none appears)."""
        deadline = time.monotonic() + wait
        while True:
            by_pid = {p.pid: r for r, p in self.live().items()}
            open_starts: dict[int, dict] = {}
            for line in ledger.read(ledger_path)[0]:
                if line.get("task") != task or line.get("pid") not in by_pid:
                    continue
                if line.get("event") == "start":
                    open_starts[line["pid"]] = line
                else:
                    open_starts.pop(line["pid"], None)
            if open_starts:
                latest = max(open_starts.values(), key=lambda l: l.get("time", 0))
                return [by_pid[latest["pid"]]]
            if time.monotonic() >= deadline:
                return []
            time.sleep(0.1)

    def account(self) -> list[dict[str, Any]]:
        """Every replica process the scenario had: which replica, which generation, its pid."""
        return [{"task_worker": r, "generation": g, "pid": p.pid, "started_at": round(at, 3),
                 "exit_code": p.popen.poll(), **({"foreign": True} if self.foreign else {})}
                for r, g, p, at in self.started]

    def stop(self) -> None:
        """SIGTERM every replica, ``grace`` seconds, then SIGKILL."""
        for _, _, proc, _ in self.started:
            proc.stop(grace=self.grace)  # one already gone is only waited for


class TaskWorkerFault:
    """kill / terminate / freeze of replicas (a :class:`SignalFault`); healing a kill or terminate
    starts them again."""

    def __init__(self, kind: str, workers: TaskWorkers, which: str, task: str | None, ledger_path: Path,
                 grace: float):
        self.kind, self.workers, self.which, self.task, self.ledger_path = kind, workers, which, task, ledger_path
        self.hit: list[int] = []
        self.signals = SignalFault(kind, self._resolve, grace, "task-worker")

    def _resolve(self) -> list[psutil.Process]:
        self.hit = sorted(self.workers.live()) if self.which == "all" else self.workers.running(self.task, self.ledger_path)
        live = self.workers.live()
        return [psutil.Process(live[r].pid) for r in self.hit if r in live]

    def inject(self) -> dict[str, Any]:
        try:
            detail = self.signals.inject()
        except LookupError:
            raise LookupError(f"no live task worker {'runs ' + self.task if self.which == 'running' else ''}".strip()) from None
        return {"task_workers": self.hit, **detail}

    def heal(self) -> dict[str, Any]:
        if self.kind == "freeze":
            return self.signals.heal()
        waited = self.signals.close()  # a terminated replica is gone (its grace over) before it starts again
        return {"restarted": {r: self.workers.start(r).pid for r in self.hit}, **waited}

    def close(self) -> dict[str, Any]:
        return self.signals.close()
