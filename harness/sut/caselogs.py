"""What a case that did not pass keeps: its logs, copied out before its cleanup deletes them.

Everything a case's processes write (its worker, the flow runs' output through the worker, its
task workers, the server, the database) lives in the session's temporary directory or in
containers, and goes when the case or the session is cleaned up.  A case whose verdict is fail
or unknown, or whose run raised, copies them to ``<journal's directory>/logs/<journal's stem>/
<instance>/`` first; its journal line names that directory (``logs``, relative to the journal)
and the report links to it.

A backend names its sources (``System.log_sources(deployed)``): a file, or a reader of what a
container or pod wrote since a time.  A log the case shares with other cases (the server's, the
database's) is cut to what was written since the case was prepared (``mark``); every log to its
last ``TAIL`` bytes.  Keeping never raises: a source that cannot be read is named in
``problems``, and the verdict stands as it is.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Union

TAIL = 4 << 20  # bytes kept of one log: its end, where the case's trouble is
Source = Union[Path, Callable[[float], bytes]]  # a file, or what a container wrote since a time


def home_logs(home: Path) -> dict[str, Source]:
    """Every ``*.log`` under a case's directory, named by its path in it."""
    if not home.is_dir():
        return {}
    return {p.relative_to(home).as_posix(): p for p in sorted(home.rglob("*.log")) if p.is_file()}


def sources(system: Any, deployed: Any = None) -> dict[str, Source]:
    """The log sources of a case (``deployed``): every log in its own directory, on any backend,
    and what its system names (``log_sources``); without one, only those every case shares."""
    named = getattr(system, "log_sources", None)
    found = named(deployed) if named is not None else {}
    return found if deployed is None else {**home_logs(deployed.home), **found}


def mark(found: dict[str, Source]) -> dict[str, Any]:
    """Where each shared log stood when a case began: file sizes, and the time for readers."""
    marks: dict[str, Any] = {"at": time.time(), "sizes": {}}
    for name, source in found.items():
        if isinstance(source, Path):
            try:
                marks["sizes"][name] = source.stat().st_size
            except OSError:
                pass
    return marks


def _cut(data: bytes, dropped: int) -> bytes:
    return (f"[chaos harness: {dropped} earlier bytes of this log not kept]\n".encode() + data) if dropped else data


def _read_file(path: Path, offset: int) -> bytes:
    size = path.stat().st_size
    if size < offset:  # truncated or replaced since the mark: all of it is new
        offset = 0
    start = max(offset, size - TAIL)
    with open(path, "rb") as f:
        f.seek(start)
        return _cut(f.read(size - start), start - offset)


def keep(dest: Path, found: dict[str, Source], marks: dict[str, Any] | None = None) -> dict[str, Any]:
    """Copy every source into ``dest``; return what was kept and what could not be."""
    marks = marks or {}
    sizes, since = marks.get("sizes", {}), marks.get("at", 0.0)
    kept: list[str] = []
    problems: list[str] = []
    for name, source in found.items():
        try:
            if isinstance(source, Path):
                data = _read_file(source, sizes.get(name, 0))
            else:
                data = source(since)
                data = _cut(data[-TAIL:], max(0, len(data) - TAIL))
        except Exception as exc:  # a container already gone, a pod without logs, a file never made
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        target = dest / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        except OSError as exc:
            problems.append(f"{name}: cannot be written to {target} ({exc.strerror or exc})")
            continue
        kept.append(name)
    return {"dir": str(dest), "files": kept, "problems": problems}


def journal_logs(journal_path: Path) -> Path:
    """Where the cases of this journal keep their logs: beside it, one directory per case."""
    return journal_path.parent / "logs" / journal_path.stem


def keep_for_journal(journal_path: Path, instance: str, found: dict[str, Source],
                     marks: dict[str, Any] | None) -> dict[str, Any]:
    """``keep`` into the journal's directory for this case; ``dir`` relative to the journal."""
    dest = journal_logs(journal_path) / instance
    kept = keep(dest, found, marks)
    kept["dir"] = os.path.relpath(dest, journal_path.parent)
    return kept


def container_reader(container: Callable[[], Any]) -> Callable[[float], bytes]:
    """A reader of a Docker container's output since a time (``container()`` gives the container)."""
    return lambda since: container().logs(since=int(since)) or b""
