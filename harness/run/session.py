"""A harness session: its id, its temporary directory, its systems under test, its cleanup.

One session per pytest process (per xdist worker).  ``close`` is idempotent and runs on normal
exit, on failure, on Ctrl-C (pytest tears the session down) and on SIGTERM (turned into
KeyboardInterrupt); ``atexit`` is the last net.  A session also ends what a previous harness left
behind when it was SIGKILLed: processes and temporary directories whose owner is dead.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
import threading
import uuid
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Iterator

from harness import backends
from harness.backends.local import cgroups
from harness.run import guard
from harness.sut import procs

WORKDIR_PREFIX = "chaos-harness-"


def prefect_version() -> str | None:
    try:
        return metadata.version("prefect")
    except metadata.PackageNotFoundError:
        return None


def _sigterm(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt(f"signal {signum}")


_interrupts = 0


def _sigint(signum, frame):  # noqa: ARG001
    """The first Ctrl-C stops the session cleanly (cases end, cleanup runs); a second one, while
    that cleanup runs, ends the process at once, saying what was journaled and where, with no
    traceback: what the session started is removed by the next session (``clean_abandoned``),
    which says what it removed."""
    global _interrupts
    _interrupts += 1
    if _interrupts == 1:
        raise KeyboardInterrupt
    from harness.model.journal import JOURNAL_ENV

    journal = os.environ.get(JOURNAL_ENV)
    try:
        finished = Path(journal).read_text(errors="replace").count("\n") if journal else 0
    except OSError:
        finished = 0
    where = f"{finished} finished case(s) in {journal}" if journal else "no journal"
    os.write(2, (f"\ninterrupted again: stopping now, without waiting for cleanup; {where}; what this "
                 "session started is removed by its guardian within seconds, which says what it removed\n").encode())
    os._exit(130)


def clean_abandoned(tmp: Path | None = None) -> list[str]:
    """Remove what SIGKILLed harness sessions left: their processes, containers and temporary
    directories.  One reaper at a time on the machine: two sessions starting together would
    otherwise race for the same leftovers, and each would report only what it won."""
    with procs.machine_lock("reap"):
        return _clean_abandoned(tmp)


def _clean_abandoned(tmp: Path | None) -> list[str]:
    removed = [f"pid {pid}" for pid in procs.reap_abandoned()]
    try:
        from harness.backends.docker.objects import reap_abandoned as reap_containers
    except ImportError:  # no docker extra: no containers of ours can exist
        pass
    else:
        removed += reap_containers()
    for d in Path(tmp or tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        owner = procs.owner(d)
        if owner is not None and not procs.alive(owner):
            from harness.backends.kind.cluster import delete_abandoned

            cluster = delete_abandoned(d)  # a kind cluster it created (named in its workdir)
            if cluster:
                removed.append(f"kind cluster {cluster}")
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
    return removed


_OPEN: set[str] = set()  # ids of this process's sessions not yet closed
_OPEN_LOCK = threading.Lock()


class ChaosSession:
    def __init__(self, options: dict | None = None) -> None:
        self.options = options or {}  # backend options from the command line (kind: context, version)
        self.id = uuid.uuid4().hex[:8]
        with _OPEN_LOCK:
            if not _OPEN:
                procs.STOPPING.clear()  # a session closed earlier in this process stopped its own waits
            _OPEN.add(self.id)
        self.abandoned = clean_abandoned()
        guard.ensure(self.id)  # what this session starts goes within seconds of a SIGKILL too
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{self.id}-"))
        procs.claim(self.workdir)
        self.systems: dict[str, backends.System] = {}
        self.unavailable: dict[str, str] = {}  # backend -> why it could not start (asked once)
        self._closed = False
        self._starting = threading.Lock()  # scheduler threads ask for systems at once
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _sigterm)
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where SIGINT is ignored
                signal.signal(signal.SIGINT, _sigint)
        if self.abandoned:  # the user is told what an earlier, killed harness left and what went
            print(f"removed what an earlier harness session left behind: {', '.join(self.abandoned)}",
                  file=sys.stderr)
        atexit.register(self.close)

    def _options(self, database: str | None) -> dict:
        return {**self.options, "database": database or self.options.get("database") or "sqlite"}

    def _key(self, backend: str, database: str | None) -> str:
        options = self._options(database)
        return backend if options["database"] == self._options(None)["database"] else f"{backend}+{options['database']}"

    def started(self, backend: str, database: str | None = None) -> bool:
        """Whether that system already runs (asking never starts it)."""
        return self._key(backend, database) in self.systems

    def system(self, backend: str, database: str | None = None) -> backends.System:
        """The started system under test of ``backend``, started on first use; its server on the
        run's database (``--chaos-database``) unless a scenario needs another.

        Raises :class:`backends.Unavailable` when the backend cannot run here; the reason is
        kept, so later scenarios of that backend skip at once instead of trying again."""
        options = self._options(database)
        key = self._key(backend, database)
        with self._starting:
            if key in self.unavailable:
                raise backends.Unavailable(self.unavailable[key])
            if key not in self.systems:
                workdir = self.workdir / key
                workdir.mkdir(exist_ok=True)
                try:
                    self.systems[key] = backends.start(backend, workdir, self.id, options)
                except backends.Unavailable as exc:
                    self.unavailable[key] = str(exc)
                    raise
            return self.systems[key]

    def retire(self, backend: str, database: str | None = None) -> bool:
        """Close the shared system of ``backend`` (and ``database``) now, because no case left
        needs it: an idle server (and its database) still costs CPU.  A later ``system`` call
        would start a new one.  Returns whether one was running."""
        key = self._key(backend, database)
        with self._starting:
            system = self.systems.pop(key, None)
        if system is None:
            return False
        system.close()
        return True

    @contextmanager
    def private_system(self, backend: str, tag: str, database: str | None = None,
                       server_env: dict[str, str] | None = None) -> Iterator[backends.System]:
        """A system of ``backend`` for one case alone (its own server, with ``server_env`` among
        its settings), closed after it."""
        workdir = self.workdir / f"{backend}-{tag}-{uuid.uuid4().hex[:4]}"
        workdir.mkdir()
        system = backends.start(backend, workdir, self.id, {**self._options(database), "server_env": server_env or {}})
        self.systems[workdir.name] = system  # closed by close() too, should the case not end
        try:
            yield system
        finally:
            self.systems.pop(workdir.name, None)
            system.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _OPEN_LOCK:
            _OPEN.discard(self.id)
            # Case threads still waiting give up.  ``STOPPING`` is the process's, so a session
            # closing while another is open (a test's own session inside the pytest session's)
            # leaves it alone: the other session's cases are not stopping.  Ctrl-C and SIGTERM
            # set it through the scheduler whatever is open.
            if not _OPEN:
                procs.STOPPING.set()
        try:
            for system in list(self.systems.values()):
                try:
                    system.close()
                except Exception:
                    pass
        finally:
            procs.reap(self.id)
            for path in cgroups.leftovers(self.id):
                try:
                    path.rmdir()
                except OSError:
                    pass
            shutil.rmtree(self.workdir, ignore_errors=True)
