"""Faults that are signals to host processes: kill, terminate (SIGTERM, grace, SIGKILL), freeze."""

from __future__ import annotations

import signal
from typing import Any, Callable

import psutil

from harness import procs


class SignalFault:
    """kill / terminate / freeze of processes resolved when the fault fires."""

    def __init__(self, kind: str, resolve: Callable[[], list[psutil.Process]], grace: float, label: str):
        self.kind, self.resolve, self.grace, self.label = kind, resolve, grace, label
        self.frozen: list[psutil.Process] = []

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
        # terminate: SIGTERM to the topmost process (as docker stop and a pod deletion do),
        # wait the grace period, then SIGKILL whatever of the tree is left
        procs.signal_all(procs.roots(targets), signal.SIGTERM)
        survivors = procs.wait_gone(targets, self.grace)
        procs.signal_all(survivors, signal.SIGKILL)
        return {"pids": pids, "signal": "SIGTERM", "grace_seconds": self.grace,
                "sigkilled_after_grace": [p.pid for p in survivors]}

    def heal(self) -> dict[str, Any]:
        if self.kind != "freeze":
            return {}
        return {"continued": procs.signal_all(self.frozen, signal.SIGCONT)}

    def close(self) -> dict[str, Any]:
        return {}
