"""The ledger: an append-only JSONL file with one line per task-body execution.

Workloads wrap every task body in :func:`execution`: a ``start`` line (the line that counts an
execution) when the body begins and an ``end`` line when it is left, so a killed
execution shows as a start without an end and overlapping executions can be found from intervals.
It never touches the Prefect API: a fault on the API cannot lose a ledger line.  Standard library
only, because it runs inside every flow-run process on every backend.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

LEDGER_ENV = "CHAOS_LEDGER"
TRACE_ENV = "CHAOS_TRACE"  # the execution tracer's file (harness/tracer), beside the ledger
TRACE_FILE = "trace.jsonl"


def _context() -> dict[str, Any]:
    try:  # the runtime module reads Prefect's run context; outside a run it gives None
        from prefect.runtime import flow_run, task_run

        return {
            "flow_run_id": flow_run.id,
            "flow_run_count": flow_run.run_count,
            "task_run_id": task_run.id,
            "attempt": task_run.run_count,
        }
    except Exception:
        return {}


def process_start() -> int | None:
    """The process's start time in clock ticks since boot (/proc/self/stat field 22).

    pid and host alone do not name a process: two containers (own pid namespaces, the host's
    hostname under host networking) both run their flow as pid 1 or 7.  The start time tells them
    apart, and it is the same clock in every container of one machine."""
    try:
        stat = Path("/proc/self/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


_PSTART: tuple[int, int | None] = (-1, None)  # (pid, start): a forked child must not inherit it


def pstart() -> int | None:
    global _PSTART
    if _PSTART[0] != os.getpid():
        _PSTART = (os.getpid(), process_start())
    return _PSTART[1]


def _append(line: dict[str, Any]) -> None:
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return  # a workload run outside the harness keeps no ledger
    append(line, path)


def append(line: dict[str, Any], path: str) -> None:
    """One line at the end of a ledger (or the tracer's trace) file."""
    data = (json.dumps(line, sort_keys=True) + "\n").encode()
    # O_APPEND + one write: lines from concurrent processes never interleave (< PIPE_BUF).
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def record(task: str, **extra: Any) -> None:
    """Write the start line of one task-body execution."""
    _append({"event": "start", "task": task, "pid": os.getpid(), "pstart": pstart(), "host": socket.gethostname(),
             "time": time.time(), **_context(), **extra})


def finish(task: str, **extra: Any) -> None:
    _append({"event": "end", "task": task, "pid": os.getpid(), "pstart": pstart(), "host": socket.gethostname(),
             "time": time.time(), **_context(), **extra})


@contextmanager
def execution(task: str) -> Iterator[None]:
    """Bracket one task-body execution: a start line now, an end line when the body is left
    (with the error, if it raised).  A killed body leaves a start line only."""
    record(task)
    try:
        yield
    except BaseException as exc:
        finish(task, error=f"{type(exc).__name__}: {exc}")
        raise
    finish(task)


def read(path: Path | str) -> tuple[list[dict[str, Any]], int]:
    """All whole lines of a ledger and the count of torn ones (a process killed mid-write)."""
    lines, torn = [], 0
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return [], 0
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            torn += 1
    return lines, torn
