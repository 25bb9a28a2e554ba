"""Processes the harness starts, and finding and ending exactly those.

Every process the harness starts gets ``CHAOS_HARNESS_SESSION`` (and the owner's pid) in its
environment.  Children inherit it: the worker's flow-run processes carry it too, even once the
worker is dead and they are orphans.  Fault targeting and cleanup select processes by that marker
and never by name, so nothing the harness did not create is ever signalled.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator

import psutil

SESSION_ENV = "CHAOS_HARNESS_SESSION"
OWNER_ENV = "CHAOS_HARNESS_OWNER"
OWNER_FILE = "owner.pid"  # in a temporary directory of the harness: the pid of the process it belongs to


def claim(directory: Path) -> None:
    """Mark ``directory`` as this process's, so a later session removes it once this one is dead."""
    (directory / OWNER_FILE).write_text(str(os.getpid()))


def owner(directory: Path) -> int | None:
    """The pid that claimed ``directory``; None if it was never claimed (not the harness's)."""
    try:
        return int((directory / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None


def environ(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return {}


def find(session: str, **match: str) -> list[psutil.Process]:
    """Live processes of this session whose environment also has every ``match`` key=value."""
    found = []
    for proc in psutil.process_iter():
        env = environ(proc)
        if env.get(SESSION_ENV) == session and all(env.get(k) == v for k, v in match.items()):
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except psutil.Error:
                pass
    return found


def roots(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    """The topmost processes of a set (those whose parent is not in the set)."""
    procs = list(procs)
    pids = {p.pid for p in procs}
    out = []
    for p in procs:
        try:
            if p.ppid() not in pids:
                out.append(p)
        except psutil.Error:
            pass
    return out


def tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def signal_all(procs: Iterable[psutil.Process], sig: int) -> list[int]:
    sent = []
    for p in procs:
        try:
            p.send_signal(sig)
            sent.append(p.pid)
        except psutil.Error:
            pass
    return sent


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(procs: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until the processes are gone; return the survivors.

    A zombie counts as gone and is left unreaped: a child of the harness is reaped by its own
    ``Popen``, which then keeps its true exit status (-9 after SIGKILL, not 0)."""
    procs = list(procs)
    deadline = time.monotonic() + timeout
    while True:
        survivors = [p for p in procs if _running(p)]
        if not survivors or time.monotonic() >= deadline:
            return survivors
        time.sleep(0.05)


def stop(procs: Iterable[psutil.Process], grace: float) -> None:
    """SIGTERM, wait ``grace``, SIGKILL what is left; continue stopped ones so they can die."""
    procs = list(procs)
    signal_all(procs, signal.SIGCONT)
    signal_all(procs, signal.SIGTERM)
    survivors = wait_gone(procs, grace)
    signal_all(survivors, signal.SIGKILL)
    wait_gone(survivors, 5)


def reap(session: str) -> list[int]:
    """SIGKILL every process of the session (a stopped one dies of SIGKILL too); return pids."""
    killed: list[int] = []
    for _ in range(5):  # a dying parent's children may re-parent between two scans
        procs = find(session)
        if not procs:
            break
        killed += signal_all(procs, signal.SIGKILL)
        wait_gone(procs, 5)
    return killed


def reap_abandoned() -> list[int]:
    """Kill processes of harness sessions whose owner is dead (a harness that was SIGKILLed)."""
    killed: list[int] = []
    for _ in range(5):  # as in reap: children may re-parent between two scans
        orphans = []
        for proc in psutil.process_iter():
            env = environ(proc)
            owner = env.get(OWNER_ENV)
            if env.get(SESSION_ENV) and owner and owner.isdigit() and not alive(int(owner)) and alive(proc.pid):
                orphans.append(proc)
        if not orphans:
            break
        killed += signal_all(orphans, signal.SIGKILL)
        wait_gone(orphans, 5)  # SIGKILL is asynchronous: return only once they are really gone
    return killed


LOCK_DIR = Path(tempfile.gettempdir())
_held = threading.local()  # the machine locks this thread holds: a nested ``with`` passes through


@contextmanager
def machine_lock(name: str) -> Iterator[None]:
    """A lock across every process of the machine (two xdist workers, two harnesses), re-entrant
    within a thread: an flock on ``chaos-harness-<name>.lock`` in the temporary directory."""
    held = _held.__dict__.setdefault("names", set())
    if name in held:
        yield
        return
    with open(LOCK_DIR / f"chaos-harness-{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        held.add(name)
        try:
            yield
        finally:
            held.discard(name)
            fcntl.flock(f, fcntl.LOCK_UN)


def default_signals() -> None:
    """In the child before exec: SIGINT/SIGTERM back to default.  A process started from a
    non-interactive shell inherits SIGINT as ignored, and a Prefect worker that ignores SIGINT
    ignores its first SIGTERM too (it turns SIGTERM into SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class Spawned:
    """A process the harness started in its own session, its output going to a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None):
        self.argv, self.log = argv, log
        self._logf: IO[bytes] = open(log, "ab")
        self.popen = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._logf,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=default_signals,
        )
        self.pid = self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """End the whole process tree: certain, not hopeful (SIGKILL after ``grace``)."""
        procs = []
        if self.popen.poll() is None:  # once reaped, its pid may be another process's
            try:
                procs = tree(psutil.Process(self.pid))
            except psutil.Error:
                pass
        if procs:
            stop(procs, grace)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)
        self._logf.close()
        return self.popen.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Stopped(Exception):
    """The session is stopping (Ctrl-C, a failure elsewhere): a case's thread gives up its wait."""


# Set when the session stops: every wait of a case running in a scheduler thread ends with Stopped.
STOPPING = threading.Event()


def wait_for(predicate, timeout: float, interval: float, what: str, hint: str = "") -> None:
    """Poll ``predicate`` until it is true; raise TimeoutError naming what was waited for."""
    deadline = time.monotonic() + timeout
    while True:
        if STOPPING.is_set():
            raise Stopped(f"the session stopped while waiting for {what}")
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}" + (f"; {hint}" if hint else ""))
        time.sleep(interval)
