"""Cgroups (v1 and v2) for the faults on local processes: memory (the OOM fault) and CPU (the
cpu-starve fault), and a fallback watchdog for memory.

A cgroup named after the session and the scenario is created under the controller's hierarchy
and the target processes are moved into it.  Memory: a limit (swap off); the kernel's OOM killer
then acts on the next large allocation.  Memory already charged before the move stays where it
was (v1 and v2 alike), so the limit bounds what the process allocates after the fault fires.
Where no memory cgroup is writable, ``RssWatchdog`` SIGKILLs the process when its RSS grows by
the limit, and the history records that mechanism so the two are never confused.  CPU: a CFS
quota (``cpu.cfs_quota_us`` on v1, ``cpu.max`` on v2): the processes run at most that share of
one CPU, as on an overloaded node; lifting it heals, and the processes go back to the cgroups
they came from before the group is removed (a starved server or worker lives on).
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFIX = "chaos-harness-"


def version(root: Path = CGROUP_ROOT, controller: str = "memory") -> int | None:
    if (root / "cgroup.controllers").exists():
        return 2
    if (root / controller).is_dir():
        return 1
    return None


def _own_v2_cgroup() -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return Path(line[3:].lstrip("/"))
    except OSError:
        pass
    return None


def _v2_parent(root: Path, controller: str = "memory") -> Path | None:
    """A v2 directory where we may create children with ``controller`` enabled."""
    candidates = [root]
    own = _own_v2_cgroup()
    if own is not None:  # a delegated subtree (systemd user session): the parent of our own cgroup
        candidates.append(root / own.parent)
    for parent in candidates:
        try:
            if controller in (parent / "cgroup.subtree_control").read_text().split() and os.access(parent, os.W_OK):
                return parent
        except OSError:
            continue
    return None


class Cgroup:
    """One cgroup of the harness under ``controller``'s hierarchy: create, add pids, remove."""

    controller = "memory"

    def __init__(self, name: str, root: Path = CGROUP_ROOT):
        self.root = root
        self.version = version(root, self.controller)
        if self.version == 1:
            self.hierarchy = root / self.controller
            self.path = self.hierarchy / f"{PREFIX}{name}"
        elif self.version == 2:
            parent = _v2_parent(root, self.controller)
            if parent is None:
                raise PermissionError(f"no writable cgroup v2 directory with the {self.controller} controller")
            self.hierarchy = root
            self.path = parent / f"{PREFIX}{name}"
        else:
            raise PermissionError(f"no {self.controller} cgroup hierarchy is mounted")
        self.path.mkdir()

    def _write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def _read(self, name: str) -> str:
        return (self.path / name).read_text()

    def add(self, pid: int) -> None:
        self._write("cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in self._read("cgroup.procs").split()]
        except OSError:
            return []

    def _emptied(self, evict) -> None:
        """Remove the group once ``evict`` (called on each pid still inside) has emptied it; a
        process forked meanwhile is evicted on the next pass."""
        for _ in range(50):
            for pid in self.pids():
                evict(pid)
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)
        raise OSError(f"could not remove cgroup {self.path}: processes {self.pids()} remain")

    def stat(self, name: str) -> dict[str, int]:
        """A flat-keyed stat file (``memory.events``, ``cpu.stat``...) as numbers; {} if unreadable."""
        out = {}
        try:
            for line in self._read(name).splitlines():
                key, _, value = line.partition(" ")
                if value.strip().lstrip("-").isdigit():
                    out[key] = int(value)
        except OSError:
            pass
        return out


class MemoryCgroup(Cgroup):
    """A memory limit: the kernel's OOM killer acts on what the processes allocate past it."""

    controller = "memory"

    def __init__(self, name: str, limit_bytes: int, root: Path = CGROUP_ROOT):
        super().__init__(name, root)
        try:
            self._limit(limit_bytes)
        except OSError:
            self.path.rmdir()
            raise

    def _limit(self, limit: int) -> None:
        if self.version == 1:
            self._write("memory.limit_in_bytes", str(limit))
            if (self.path / "memory.memsw.limit_in_bytes").exists():  # swap accounting is on
                self._write("memory.memsw.limit_in_bytes", str(limit))
        else:
            self._write("memory.max", str(limit))
            if (self.path / "memory.swap.max").exists():
                self._write("memory.swap.max", "0")

    def oom_kills(self) -> int | None:
        return self.stat("memory.oom_control" if self.version == 1 else "memory.events").get("oom_kill")

    def remove(self) -> None:
        """Kill what is still inside (only processes we moved there) and remove the group."""
        self._emptied(self._kill)

    @staticmethod
    def _kill(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


MIN_QUOTA_US, MAX_PERIOD_US, PERIOD_US = 1000, 1_000_000, 100_000  # the kernel's bounds; its default period


def quota(cpus: float) -> tuple[int, int]:
    """(quota, period) in microseconds for a share of ``cpus`` CPUs: the default 100 ms period,
    lengthened (to 1 s at the most) where the quota would fall under the kernel's 1 ms minimum."""
    if cpus <= 0:
        raise ValueError(f"a CPU share must be positive, got {cpus}")
    period = PERIOD_US
    if cpus * period < MIN_QUOTA_US:
        period = min(MAX_PERIOD_US, math.ceil(MIN_QUOTA_US / cpus))
    return max(MIN_QUOTA_US, round(cpus * period)), period


def origin(pid: int, controller: str, hierarchy: Path, version_: int) -> Path | None:
    """The cgroup ``pid`` is in on ``controller``'s hierarchy (read from /proc/<pid>/cgroup)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (version_ == 2 and controllers == "") or (version_ == 1 and controller in controllers.split(",")):
            return hierarchy / path.lstrip("/")
    return None


class CpuCgroup(Cgroup):
    """A CFS quota: the processes inside run at most ``cpus`` CPUs' worth of time, however many
    they ask for.  ``lift`` removes the quota; ``remove`` moves the processes back to the cgroups
    they came from (they live on) and removes the group."""

    controller = "cpu"

    def __init__(self, name: str, cpus: float, root: Path = CGROUP_ROOT):
        super().__init__(name, root)
        self.origins: dict[int, Path] = {}
        self.quota_us, self.period_us = quota(cpus)
        try:
            if self.version == 1:
                self._write("cpu.cfs_period_us", str(self.period_us))
                self._write("cpu.cfs_quota_us", str(self.quota_us))
            else:
                self._write("cpu.max", f"{self.quota_us} {self.period_us}")
        except OSError:
            self.path.rmdir()
            raise

    def add(self, pid: int) -> None:
        found = origin(pid, self.controller, self.hierarchy, self.version)
        if found is not None:
            self.origins.setdefault(pid, found)
        super().add(pid)

    def lift(self) -> None:
        if self.version == 1:
            self._write("cpu.cfs_quota_us", "-1")
        else:
            self._write("cpu.max", f"max {self.period_us}")

    def throttling(self) -> dict[str, float]:
        """How often the quota held the processes back: periods, throttled periods, seconds."""
        s = self.stat("cpu.stat")
        throttled = s.get("throttled_usec", s.get("throttled_time", 0) // 1000)  # v1 counts nanoseconds
        return {"periods": s.get("nr_periods", 0), "throttled_periods": s.get("nr_throttled", 0),
                "throttled_seconds": round(throttled / 1e6, 3)}

    def remove(self) -> None:
        """Move every process back alive (it was only starved) and remove the group."""
        self._emptied(self._send_home)

    def _send_home(self, pid: int) -> None:
        # children forked inside go back with their parent's origin, else the root
        home = self.origins.get(pid) or next(iter(self.origins.values()), self.hierarchy)
        try:
            (home / "cgroup.procs").write_text(str(pid))
        except OSError:
            try:
                (self.hierarchy / "cgroup.procs").write_text(str(pid))
            except OSError:
                pass  # it exited meanwhile


def leftovers(session: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Cgroup directories of this session that still exist (for cleanup and its tests)."""
    found = []
    for parent in [root / "memory", root / "cpu", root, _v2_parent(root) or root, _v2_parent(root, "cpu") or root]:
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
