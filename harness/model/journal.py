"""The run journal: one JSONL line per finished scenario, written (and fsynced) as it finishes.

A crash or Ctrl-C of the harness loses nothing already finished: each line is complete on disk
before the next scenario starts.  The HTML report is built from journals alone.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from harness.paths import REPORTS_DIR, SCENARIOS_DIR  # noqa: E402

JOURNAL_ENV = "CHAOS_JOURNAL"  # the journal of this run; xdist workers inherit it
ROUND_ENV = "CHAOS_REPEAT_ROUND"  # "k/N": this session is round k of ``run --repeat N``


def default_path(directory: Path | None = None) -> Path:
    """A new journal's path: ``journal-<UTC time>.jsonl`` in ``directory`` (default: the
    harness's own reports/ where it runs from its repository, else reports/ in the current
    directory: an installed harness has no reports/ of its own)."""
    if directory is None:
        directory = REPORTS_DIR if SCENARIOS_DIR.is_dir() else Path.cwd() / "reports"
    return directory / time.strftime("journal-%Y%m%dT%H%M%SZ.jsonl", time.gmtime())


def unwritable(path: Path | str) -> str | None:
    """Why a journal cannot be written at ``path`` (its directory cannot be made or written, or
    the file is not writable), or None: checked before anything runs, so a finished case's line
    has somewhere to go."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"its directory cannot be made ({exc.strerror or exc})"
    if path.is_dir():
        return "it is a directory"
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is not writable"
    if not path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
        return f"{path.parent} is not writable"
    return None


def repeat_round(value: str | None = None) -> dict[str, int] | None:
    """The round of ``run --repeat`` this session is, from ``CHAOS_REPEAT_ROUND`` ("k/N"), as
    ``{"index": k, "of": N}``; None outside a repeat.  A malformed value is a ValueError that says
    what it should be (checked when the session starts, before anything runs)."""
    raw = os.environ.get(ROUND_ENV) if value is None else value
    if not raw:
        return None
    index, sep, of = raw.partition("/")
    try:
        k, n = int(index), int(of)
    except ValueError:
        k = n = 0
    if not sep or not 1 <= k <= n:
        raise ValueError(f"{ROUND_ENV}={raw!r}: expected 'k/N' with 1 <= k <= N (set by run --repeat)")
    return {"index": k, "of": n}


class Journal:
    """Appends whole result lines; each names the ``run --repeat`` round it came from and the
    shard of a split run (``harness.run.shard``) it belongs to, if any."""

    def __init__(self, path: Path | str, round_: dict[str, int] | None = None, shard: dict[str, Any] | None = None):
        self.path = Path(path)
        self.round, self.shard = round_, shard
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # concurrent cases append whole lines, one at a time
        self.lines: dict[str, int] = {}  # a written case's instance -> its line number
        self._counted = (0, 0)  # (offset, lines before it): the file is counted on from there only

    def write(self, entry: dict[str, Any]) -> int:
        """Append ``entry``; its line number in the file (other processes may append too)."""
        if self.round is not None:
            entry = {**entry, "round": self.round}
        if self.shard is not None:
            entry = {**entry, "shard": self.shard}
        data = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
        with self._lock:
            end = self._append(data)
            seen, count = self._counted
            if end < seen:  # the file was replaced or cut: count it from its start
                seen, count = 0, 0
            with open(self.path, "rb") as f:  # the lines up to this one's end (other processes' too)
                f.seek(seen)
                while seen < end and (chunk := f.read(min(1 << 20, end - seen))):
                    seen += len(chunk)
                    count += chunk.count(b"\n")
            self._counted = (seen, count)
        if entry.get("instance"):
            self.lines[entry["instance"]] = count
        return count

    def _append(self, data: bytes) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
            return os.lseek(fd, 0, os.SEEK_CUR)  # where this line ended
        finally:
            os.close(fd)


def read(path: Path | str) -> Iterator[dict[str, Any]]:
    """Whole lines of a journal; a torn last line (a crash mid-write) is skipped, not fatal."""
    with open(path, errors="replace") as f:
        for number, raw in enumerate(f, 1):
            if raw.strip():
                try:
                    yield json.loads(raw)
                except json.JSONDecodeError:
                    continue


def merge(paths: list[Path | str], out: Path | str) -> int:
    """Write the whole lines of several journals (the shards of a split run) into one journal, in
    the order of their start; returns how many.  A line's kept logs (``logs.dir``, relative to its
    journal) are named relative to the merged journal, so the report's links still open.  What the
    report could not read is left out here too, and named by the report."""
    target = Journal(out)
    lines = []
    for p in map(Path, paths):
        for entry in read(p):
            if not isinstance(entry, dict):
                continue
            logs = entry.get("logs")
            if isinstance(logs, dict) and isinstance(logs.get("dir"), str) and not Path(logs["dir"]).is_absolute():
                where = (p.resolve().parent / logs["dir"]).resolve()
                entry = {**entry, "logs": {**logs, "dir": os.path.relpath(where, target.path.resolve().parent)}}
            lines.append(entry)
    lines.sort(key=lambda e: e.get("started_at") if isinstance(e.get("started_at"), (int, float)) else 0)
    target.path.write_text("")
    for entry in lines:
        target.write(entry)
    return len(lines)


def stamped_path(directory: Path | str, at: float) -> Path:
    """``directory/journal-<UTC stamp of at>.jsonl``: the name journals sort by."""
    return Path(directory) / time.strftime("journal-%Y%m%dT%H%M%SZ.jsonl", time.gmtime(at))
