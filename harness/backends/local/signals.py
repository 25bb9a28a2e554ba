"""Faults that are signals to host processes: kill, terminate (SIGTERM, grace, SIGKILL), freeze."""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

import psutil

from harness.sut import procs


class Grace:
    """A termination's grace period, run beside the watch, as a pod deletion's is: waiting it out
    (and the SIGKILL after it) must not hold up the polls or another fault's heal.  ``join`` gives
    what the wait found."""

    def __init__(self, name: str, wait: Callable[[], dict[str, Any]]) -> None:
        self.result: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, args=(wait,), name=name, daemon=True)
        self.thread.start()

    def _run(self, wait: Callable[[], dict[str, Any]]) -> None:
        try:
            self.result = wait()
        except Exception as exc:  # recorded, never raised past the run
            self.result = {"grace_error": f"{type(exc).__name__}: {exc}"}

    def join(self, timeout: float) -> dict[str, Any]:
        self.thread.join(timeout)
        if self.thread.is_alive():
            return {"grace_error": f"the grace period's wait had not ended {timeout:.0f} s later"}
        return dict(self.result)


class SignalFault:
    """kill / terminate / freeze of processes resolved when the fault fires."""

    def __init__(self, kind: str, resolve: Callable[[], list[psutil.Process]], grace: float, label: str):
        self.kind, self.resolve, self.grace, self.label = kind, resolve, grace, label
        self.frozen: list[psutil.Process] = []
        self.grace_wait: Grace | None = None

    def inject(self) -> dict[str, Any]:
        targets = self.resolve()
        if not targets:
            raise LookupError(f"no live {self.label} process of this scenario")
        pids = [p.pid for p in targets]
        if self.kind == "kill":
            procs.signal_all(targets, signal.SIGKILL)
            return {"pids": pids, "signal": "SIGKILL"}
        if self.kind == "freeze":
            self.frozen = targets
            procs.signal_all(targets, signal.SIGSTOP)
            return {"pids": pids, "signal": "SIGSTOP"}
        # terminate: SIGTERM to the topmost process (as docker stop and a pod deletion do); then,
        # beside the watch, the grace period and a SIGKILL to whatever of the tree is left
        procs.signal_all(procs.roots(targets), signal.SIGTERM)

        def grace() -> dict[str, Any]:
            survivors = procs.wait_gone(targets, self.grace)
            procs.signal_all(survivors, signal.SIGKILL)
            return {"sigkilled_after_grace": [p.pid for p in survivors]}

        self.grace_wait = Grace(f"grace-{self.label}", grace)
        return {"pids": pids, "signal": "SIGTERM", "grace_seconds": self.grace}

    def heal(self) -> dict[str, Any]:
        if self.kind != "freeze":
            return {}
        return {"continued": procs.signal_all(self.frozen, signal.SIGCONT)}

    def close(self) -> dict[str, Any]:
        """A terminate's grace is over before the scenario collects (or within grace + 10 s).  What
        the wait found is given once: a heal that restarts the processes closes first, and the
        scenario's end closes again."""
        if self.grace_wait is None:
            return {}
        found = self.grace_wait.join(self.grace + 10)
        if not self.grace_wait.thread.is_alive():
            self.grace_wait = None
        return found
