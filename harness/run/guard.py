"""The guardian: a process of its own beside every harness process that starts a session, which
removes what that harness started within seconds of its death, however it died.

A harness that is SIGKILLed (or OOM-killed, or loses its terminal) runs no ``finally`` and no
``atexit``: its servers, workers, flow runs, PostgreSQL clusters, containers, cgroups and
temporary directories would live on until the next session reaps them (``session.
clean_abandoned``).  The guardian holds the read end of a pipe whose only write end is the
harness's (never inherited: Python's pipes are not, and every process the harness starts gets no
descriptor but its own), so the kernel tells it the moment the harness is gone, by an end of
file, with no polling.  It then runs the same reaper a new session runs, under the same machine
lock: everything whose owner is a dead harness process goes (the processes carry their owner in
their environment, containers, volumes and networks in a label, directories in a file), and the
cgroups of the dead harness's sessions.  After a normal exit there is nothing left of it to
remove, and the guardian exits too.

It is not a child in the harness's process group or session (a Ctrl-C or a ``kill`` of the
group reaches the harness, which cleans up itself), carries none of the harness's markers (the
session's own cleanup never kills it), and ignores SIGINT and SIGHUP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

_lock = threading.Lock()
_guarded: dict[str, object] = {}  # in the harness: the pipe's write end, the guardian's Popen


def start() -> bool:
    """Start this process's guardian, once (its stderr is this process's now: start it where that
    is the terminal).  Never fails a session: a guardian that cannot start leaves the next
    session to reap, as before.  Whether one runs."""
    with _lock:
        if "pipe" in _guarded:
            return True
        try:
            read, write = os.pipe()  # both non-inheritable
            env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOS_")}
            env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[2]),
                                                           env.get("PYTHONPATH", "")] if p)
            _guarded["popen"] = subprocess.Popen(
                [sys.executable, "-m", "harness.run.guard", str(os.getpid()), str(read)],
                pass_fds=(read,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                start_new_session=True, env=env)
        except OSError:
            return False
        os.close(read)
        _guarded["pipe"] = write
        return True


def ensure(session: str) -> None:
    """The guardian (started if it is not) also removes ``session``'s cgroups (named after it)."""
    if not start():
        return
    try:
        os.write(_guarded["pipe"], f"{session}\n".encode())  # type: ignore[arg-type]
    except OSError:
        pass


def _reap(sessions: list[str]) -> list[str]:
    from harness.backends.local import cgroups
    from harness.run.session import clean_abandoned
    from harness.sut import procs

    removed = clean_abandoned()  # everything of every dead harness, under the machine lock
    with procs.machine_lock("reap"):
        for session in sessions:
            for path in cgroups.leftovers(session):
                try:
                    path.rmdir()  # its processes were killed above: an empty cgroup goes
                    removed.append(str(path))
                except OSError:
                    pass
    return removed


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    owner, fd = int(argv[0]), int(argv[1])
    received = b""
    while True:  # until the harness is gone: the end of the pipe
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        received += chunk
    sessions = [s for s in received.decode(errors="replace").split() if s]
    removed = _reap(sessions)
    if removed:
        try:
            print(f"chaos-harness guardian: harness process {owner} is gone; removed what it left: "
                  f"{', '.join(removed)}", file=sys.stderr, flush=True)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
