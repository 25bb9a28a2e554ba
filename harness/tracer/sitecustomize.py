"""The harness's execution tracer, put into a flow-run process from the outside.

The harness puts this directory first on a flow-run process's ``PYTHONPATH`` and names a trace
file in ``CHAOS_TRACE``; Python imports ``sitecustomize`` at start-up, so the flow's own code is
not touched.  It installs an import hook that, once Prefect's task engine is imported, wraps the
call of each task's function: a ``start`` line when a task body begins, an ``end`` line when it
is left (with the error if it raised), in the format of the hand-kept ledger
(``harness.ledger``): task name, task-run name and id, attempt, flow run and its run count, pid,
process start, host, time.  Lines go to a file with one ``O_APPEND`` write each, never through
the API, so an API fault loses none.  A body a cached result stands in for is not called, so it
is not counted, as with the ledger.

What it cannot see (docs/own-flows.md): a body killed by SIGKILL or an OOM kill leaves a start
line with no end (which signal is the fault record's and the run's exit code's to say); code
outside task bodies (the flow function's own lines); tasks run by ``.delay()`` on task workers
the harness did not start; generator tasks' bodies past their first step.

The Python that starts the process may have its own ``sitecustomize`` (Debian's has one): it is
run afterwards, as if this one were not there.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys

TRACE_ENV = "CHAOS_TRACE"
_HERE = os.path.dirname(os.path.abspath(__file__))


def _write(line: dict) -> None:
    try:
        from harness.ledger import append
    except ImportError:  # the harness is not importable in this process: nothing is traced
        return
    append(line, os.environ[TRACE_ENV])


def _context(ctx) -> dict:
    out = {"task": getattr(ctx.task, "name", None), "task_run_name": getattr(ctx.task_run, "name", None)}
    try:
        from prefect.runtime import flow_run, task_run

        out.update(flow_run_id=flow_run.id, flow_run_count=flow_run.run_count, task_run_id=task_run.id,
                   attempt=task_run.run_count)
    except Exception:
        pass
    return out


def _traced(original):
    import inspect
    import socket
    import time

    def event(kind: str, info: dict, **extra) -> None:
        from harness.ledger import pstart

        _write({"event": kind, "pid": os.getpid(), "pstart": pstart(), "host": socket.gethostname(),
                "time": time.time(), "tracer": True, **info, **extra})

    async def awaited(coro, info):
        event("start", info)
        try:
            result = await coro
        except BaseException as exc:
            event("end", info, error=f"{type(exc).__name__}: {exc}")
            raise
        event("end", info)
        return result

    def call_with_parameters(fn, parameters, *args, **kwargs):
        try:
            from prefect.context import TaskRunContext

            ctx = TaskRunContext.get()
        except Exception:
            ctx = None
        if ctx is None or getattr(ctx.task, "fn", None) is not fn:  # not a task body: as it was
            return original(fn, parameters, *args, **kwargs)
        info = _context(ctx)
        if inspect.iscoroutinefunction(fn):
            return awaited(original(fn, parameters, *args, **kwargs), info)
        event("start", info)
        try:
            result = original(fn, parameters, *args, **kwargs)
        except BaseException as exc:
            event("end", info, error=f"{type(exc).__name__}: {exc}")
            raise
        event("end", info)
        return result

    call_with_parameters.__chaos_traced__ = True
    return call_with_parameters


def _patch(module) -> None:
    original = getattr(module, "call_with_parameters", None)
    if original is None or getattr(original, "__chaos_traced__", False):
        return
    module.call_with_parameters = _traced(original)


class _Loader:
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _patch(module)


class _Finder:
    """Finds ``prefect.task_engine`` as the path finder does, and patches it once it is run."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "prefect.task_engine":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def _chain() -> None:
    """Run the next ``sitecustomize`` on the path, the one this one hides."""
    import importlib.util

    for entry in sys.path:
        if os.path.abspath(entry or os.curdir) == _HERE:
            continue
        candidate = os.path.join(entry or os.curdir, "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_chaos_next_sitecustomize", candidate)
            if spec is not None and spec.loader is not None:
                try:
                    spec.loader.exec_module(importlib.util.module_from_spec(spec))
                except Exception:
                    pass
            return


if os.environ.get(TRACE_ENV):
    if "prefect.task_engine" in sys.modules:
        _patch(sys.modules["prefect.task_engine"])
    else:
        sys.meta_path.insert(0, _Finder())
_chain()
