"""Memory cgroups (v1 and v2) for the OOM fault on local processes, and a fallback watchdog.

A cgroup named after the session and the scenario is created, given a memory limit (swap off),
and the flow-run process is moved into it; the kernel's OOM killer then acts on its next large
allocation.  Memory already charged before the move stays where it was (v1 and v2 alike), so the
limit bounds what the process allocates after the fault fires.  Where no memory cgroup is
writable, ``RssWatchdog`` SIGKILLs the process when its RSS grows by the limit, and the history
records that mechanism so the two are never confused.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFIX = "chaos-harness-"


def version(root: Path = CGROUP_ROOT) -> int | None:
    if (root / "cgroup.controllers").exists():
        return 2
    if (root / "memory").is_dir():
        return 1
    return None


def _v2_parent(root: Path) -> Path | None:
    """A v2 directory where we may create children with the memory controller enabled."""
    candidates = [root]
    try:  # a delegated subtree (systemd user session): the parent of our own cgroup
        own = Path(open("/proc/self/cgroup").read().strip().split("::", 1)[1].lstrip("/"))
        candidates.append(root / own.parent)
    except (OSError, IndexError):
        pass
    for parent in candidates:
        try:
            if "memory" in (parent / "cgroup.subtree_control").read_text().split() and os.access(parent, os.W_OK):
                return parent
        except OSError:
            continue
    return None


class MemoryCgroup:
    """One memory cgroup of the harness: create, limit, add a pid, read OOM kills, remove."""

    def __init__(self, name: str, limit_bytes: int, root: Path = CGROUP_ROOT):
        self.version = version(root)
        if self.version == 1:
            self.path = root / "memory" / f"{PREFIX}{name}"
        elif self.version == 2:
            parent = _v2_parent(root)
            if parent is None:
                raise PermissionError("no writable cgroup v2 directory with the memory controller")
            self.path = parent / f"{PREFIX}{name}"
        else:
            raise PermissionError("no memory cgroup hierarchy is mounted")
        self.path.mkdir()
        try:
            self._limit(limit_bytes)
        except OSError:
            self.path.rmdir()
            raise

    def _write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def _limit(self, limit: int) -> None:
        if self.version == 1:
            self._write("memory.limit_in_bytes", str(limit))
            if (self.path / "memory.memsw.limit_in_bytes").exists():  # swap accounting is on
                self._write("memory.memsw.limit_in_bytes", str(limit))
        else:
            self._write("memory.max", str(limit))
            if (self.path / "memory.swap.max").exists():
                self._write("memory.swap.max", "0")

    def add(self, pid: int) -> None:
        self._write("cgroup.procs", str(pid))

    def oom_kills(self) -> int | None:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except OSError:
            pass
        return None

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def remove(self) -> None:
        """Kill what is still inside (only processes we moved there) and remove the group."""
        for _ in range(50):
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)
        raise OSError(f"could not remove cgroup {self.path}: processes {self.pids()} remain")


def leftovers(session: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Cgroup directories of this session that still exist (for cleanup and its tests)."""
    found = []
    for parent in [root / "memory", root, _v2_parent(root) or root]:
        if parent.is_dir():
            found += [p for p in parent.glob(f"{PREFIX}{session}*") if p.is_dir()]
    return sorted(set(found))


class RssWatchdog:
    """Userspace stand-in for a memory cgroup: SIGKILL a process whose RSS grows by ``limit``."""

    def __init__(self, pid: int, limit_bytes: int, interval: float = 0.02):
        self.pid, self.limit, self.interval = pid, limit_bytes, interval
        self.proc = psutil.Process(pid)
        self.baseline = self.proc.memory_info().rss
        self.killed_at: float | None = None
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"rss-watchdog-{pid}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            if rss - self.baseline > self.limit:
                try:
                    self.proc.send_signal(signal.SIGKILL)
                    self.killed_at = time.time()
                except psutil.Error:
                    pass
                return
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
