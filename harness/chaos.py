"""Your own flows under faults, from your own tests: the chaos counterpart of Prefect's
``prefect_test_harness``.

In a test (the ``chaos`` fixture of the installed pytest plugin: one system under test per
session, on ``--chaos-backend``, local by default)::

    from harness.chaos import kill, task_running

    def test_the_load_resumes(chaos, tmp_path):
        result = chaos.run(etl, parameters={"database": "{case}/w.db"},
                           faults=[kill(when=task_running("load", nth=3))])
        assert result.final == "CRASHED"
        again = chaos.rerun(result)
        assert again.final == "COMPLETED" and again.executions["load"] == 6

In a script, ``with Chaos("local") as chaos: ...`` does the same.

A run is a case like a matrix row's: a real Prefect server and worker of the chosen backend, the
flow deployed unchanged by its entrypoint, the faults injected at their triggers, the history
read from the API, the task bodies' executions recorded by the harness's tracer, and a line in
the journal (and so the HTML report).  ``rerun`` starts the same flow with the same parameters
and result storage, without faults: what a user does after a crash.
"""

from __future__ import annotations

import inspect
import itertools
import re
import sys
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.model.history import History

# -- triggers and faults: the matrix's own fields, as functions --------------------------------


def task_running(task: str, after: float | None = None, nth: int | None = None) -> dict[str, Any]:
    """When a task's run is Running (a task's name: any of its runs, or its ``nth`` run in the
    flow run, 1 the first; or a run's own name), or ``after`` seconds later."""
    return task_state(task, "running", after, nth)


def task_state(task: str, state: str, after: float | None = None, nth: int | None = None) -> dict[str, Any]:
    return {"task": task, "state": state, **({"after_seconds": after} if after is not None else {}),
            **({"nth": nth} if nth is not None else {})}


def flow_state(state: str, after: float | None = None) -> dict[str, Any]:
    """When the flow run is in ``state`` (``running``), or ``after`` seconds later."""
    return {"flow_state": state, **({"after_seconds": after} if after is not None else {})}


def after(seconds: float) -> dict[str, Any]:
    """``seconds`` after the flow run is created."""
    return {"after_seconds": seconds}


def fault(kind: str, when: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Any fault of the catalogue (docs/faults.md) with its fields: ``fault("freeze", when,
    heal_after_seconds=10)``."""
    return {"kind": kind, "when": when, **fields}


def kill(when: dict[str, Any], target: str = "flow-run") -> dict[str, Any]:
    """SIGKILL the flow-run process (or ``target="worker"``)."""
    return fault("kill", when, target=target)


def terminate(when: dict[str, Any], target: str = "flow-run", grace_seconds: float | None = None) -> dict[str, Any]:
    return fault("terminate", when, target=target,
                 **({"grace_seconds": grace_seconds} if grace_seconds is not None else {}))


def freeze(when: dict[str, Any], heal_after_seconds: float | None = None, target: str = "flow-run") -> dict[str, Any]:
    return fault("freeze", when, target=target,
                 **({"heal_after_seconds": heal_after_seconds} if heal_after_seconds is not None else {}))


def oom(when: dict[str, Any], mem_limit: str = "256Mi") -> dict[str, Any]:
    return fault("oom", when, mem_limit=mem_limit)


def restart_server(when: dict[str, Any], heal_after_seconds: float) -> dict[str, Any]:
    return fault("restart-server", when, heal_after_seconds=heal_after_seconds)


# -- results -------------------------------------------------------------------------------------


@dataclass
class Result:
    """One run under faults, as the harness saw it."""

    entry: dict[str, Any]  # the journal line
    flow: str  # the entrypoint
    parameters: dict[str, Any]
    env: dict[str, str]
    storage: Path  # the result storage its runs used (a rerun uses it too)
    config: dict[str, Any] = field(default_factory=dict)  # the run's config fields (a rerun keeps them)
    history: History = field(init=False)

    def __post_init__(self) -> None:
        self.history = History.from_dict(self.entry["history"])

    @property
    def figures(self) -> dict[str, Any]:
        return self.entry["verdict"]["figures"]

    @property
    def final(self) -> str | None:
        """The flow run's final state type (COMPLETED, FAILED, CRASHED, CANCELLED), or its
        state when the bound ran out (RUNNING: stuck)."""
        return self.figures.get("final")

    @property
    def final_name(self) -> str | None:
        return self.figures.get("final_name")

    @property
    def message(self) -> str | None:
        main = self.history.main
        return main.states[-1].message if main is not None and main.states else None

    @property
    def run_count(self) -> int:
        return self.figures.get("run_count") or 0

    @property
    def executions(self) -> Counter:
        """Task-body executions by task name, as the tracer recorded them (0 for a task that never
        ran); a killed execution counts."""
        return Counter(line["task"] for line in self.history.ledger if line.get("event") == "start" and line.get("task"))

    @property
    def time_to_detect(self) -> float | None:
        """Seconds from the first fault to the state that reported it (None if none did)."""
        return self.figures.get("time_to_detect")

    @property
    def time_to_settle(self) -> float | None:
        return self.figures.get("time_to_settle")

    @property
    def flow_run_id(self) -> str | None:
        main = self.history.main
        return main.id if main is not None else None

    @property
    def stuck(self) -> bool:
        return bool(self.figures.get("stuck"))


# -- the runner ------------------------------------------------------------------------------------


def entrypoint(flow: Any) -> str:
    """``file.py:name`` of a flow object (the name it has in its module), or a string as given."""
    if isinstance(flow, str):
        return flow
    fn = getattr(flow, "fn", None)
    if fn is None:
        raise TypeError(f"{flow!r} is not a Prefect flow (no .fn) nor an entrypoint string")
    source = inspect.getsourcefile(fn)
    if source is None:
        raise ValueError(f"flow {getattr(flow, 'name', fn.__name__)!r} has no source file to deploy from")
    module = sys.modules.get(fn.__module__)
    name = next((n for n, obj in vars(module).items() if obj is flow), None) if module is not None else None
    if name is None:
        raise ValueError(f"flow {getattr(flow, 'name', fn.__name__)!r} is not a top-level name of {source}: "
                         "deploying it needs one (define it with @flow at the module's top level)")
    return f"{Path(source).resolve()}:{name}"


_SLUG = re.compile(r"[^a-z0-9]+")
SLUG_MAX = 60  # characters of a test's name in its runs' ids (the matrix's ids allow 100)


def case_id(name: str, n: int | None = None) -> str:
    """A matrix id from a test's name and the run's number in it: lowercase words joined by '-'.
    A long name is cut and a hash of the whole of it put in place of the rest, so two names that
    differ only past the cut (parametrized tests) stay two ids, and the number is never cut off:
    the journal and the report tell a test's runs (a run and its rerun) apart by their ids."""
    slug = _SLUG.sub("-", name.lower()).strip("-")
    if len(slug) > SLUG_MAX:
        slug = f"{slug[:SLUG_MAX - 9].strip('-')}-{zlib.crc32(name.encode()):08x}"
    slug = slug if slug and slug[0].isalpha() else f"case-{slug}".strip("-")
    return slug if n is None else f"{slug}-{n}"


class Chaos:
    """A system under test of one backend, and flow runs under faults on it.

    ``session``: a running ``ChaosSession`` to share (the pytest fixture's); else one of its own,
    closed with this.  ``journal``: where each run's line goes (a ``Journal``, a path, or None)."""

    def __init__(self, backend: str = "local", journal: Any = None, session: Any = None, name: str = "chaos"):
        from harness.model.fields import BACKENDS

        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r}: one of {', '.join(BACKENDS)}")
        self.backend, self.name = backend, name
        self._journal_arg, self._session, self._own_session = journal, session, session is None
        self._counter = itertools.count(1)
        self.results: list[Result] = []

    def __enter__(self) -> "Chaos":
        from harness.model.journal import Journal
        from harness.run.session import ChaosSession, prefect_version

        if self._session is None:
            self._session = ChaosSession()
        self.journal = (Journal(self._journal_arg) if isinstance(self._journal_arg, (str, Path))
                        else self._journal_arg)
        self.prefect_version = prefect_version()
        self.system = self._session.system(self.backend)  # raises backends.Unavailable, with its reason
        # inside the system's directory: a docker flow run's container sees it at the same path
        self.workdir = Path(self.system.workdir) / f"chaos-api-{uuid.uuid4().hex[:6]}"
        self.workdir.mkdir(parents=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._own_session and self._session is not None:
            self._session.close()

    def run(self, flow: Any, parameters: dict[str, Any] | None = None, faults: list[dict[str, Any]] = (),
            bound: float = 120, env: dict[str, str] | None = None, name: str | None = None, **config: Any) -> Result:
        """Deploy ``flow`` (a flow object or an entrypoint) unchanged, run it with ``parameters``
        and inject ``faults`` at their triggers; return once it settled (or ``bound`` seconds
        passed).  ``{case}`` in a parameter is a directory of this run's own, which its flow runs
        see at the same path on every backend (``result.parameters`` has it filled in, and a
        rerun keeps it).  ``env``: the flow run's environment; ``config``: the matrix's ``config`` fields
        (``heartbeat_seconds``, ``zombie_automation_within``...)."""
        return self._run(entrypoint(flow), dict(parameters or {}), list(faults), bound, dict(env or {}), name,
                         config, storage=None)

    def rerun(self, result: Result, bound: float = 120, name: str | None = None) -> Result:
        """The same flow with the same parameters, config (its image, heartbeats...) and result
        storage, no faults: a new flow run, as a user starts one after a crash (so what its tasks
        cached is found again)."""
        return self._run(result.flow, result.parameters, [], bound, result.env, name, result.config,
                         storage=result.storage)

    def _run(self, flow: str, parameters: dict[str, Any], faults: list[dict[str, Any]], bound: float,
             env: dict[str, str], name: str | None, config: dict[str, Any], storage: Path | None) -> Result:
        from harness.model.scenario import Scenario, fill_case
        from harness.run.case import run_scenario

        n = next(self._counter)
        case_dir = self.workdir / f"run-{n}"
        case_dir.mkdir(parents=True)
        parameters = fill_case(parameters, case_dir)
        storage = storage or case_dir / "results"
        storage.mkdir(parents=True, exist_ok=True)
        scenario = Scenario.model_validate({
            "id": case_id(name or self.name, n), "title": f"{flow} under {len(faults)} fault(s)",
            "backends": [self.backend],
            "workload": {"flow": flow, "parameters": parameters},
            "config": {**config, "env": {**env, "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(storage)}},
            "faults": faults,
            "expect": {"settle_within_seconds": bound},
        })
        entry = run_scenario(scenario, self.system, self.journal, self.prefect_version)
        result = Result(entry, flow, parameters, env, storage, config)
        self.results.append(result)
        return result
