"""A row of the expected-state matrix: its workload, config, faults and triggers, and what it expects.

Every field is validated here, each error naming its field path; ``matrix`` loads the files and
adds the file and scenario to each, so a typo in row 40 is found before row 1 starts a server.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from harness.model.expectation import FullExpectation, Prediction, RunExpectation
from harness.model.faults import API_FAULTS, BACKEND_FAULTS, DEFAULT_TARGET, FAULT_KINDS, RUN_SHARED_TARGETS
from harness.model.fields import (BACKENDS, CACHE_POLICIES, ID_MAX, ID_RE, MAX_SECONDS, OWN_SERVER_BACKENDS,
                                  STATE_TYPES, TIERS, _Model, _upper, parse_bytes)
from harness.paths import FLOWS_DIR  # re-exported: the backends import it from here


class Claim(_Model):
    text: str
    source: str
    # What the claim predicts, in expectation fields; the checker evaluates it on the same
    # history as the expectation, so the report can say held / refuted with evidence.
    predicts: "Prediction | None" = None


def fill_case(parameters: dict[str, Any], case_dir: Path) -> dict[str, Any]:
    """``parameters`` with ``{case}`` in any string replaced by the case's own directory (a fresh
    one per case, shared with its flow runs on every backend): where a flow of your own writes
    what its test reads back, such as a database file."""
    def sub(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{case}", str(case_dir))
        if isinstance(value, list):
            return [sub(v) for v in value]
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        return value

    return sub(parameters)


_ENTRYPOINT = re.compile(r"(?P<target>[^:\s]+):(?P<function>[A-Za-z_][A-Za-z0-9_]*)")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _top_level_names(path: Path) -> list[str]:
    """The names a Python file defines at its top level (functions, classes, assignments,
    imports), read without running it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):  # a flow defined elsewhere, imported here
            names += [(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"]
    return names


class Workload(_Model):
    # a workload of flows/ by name (the harness's own, which keep the hand-written ledger), or
    # any flow by its entrypoint: 'path/to/file.py:function' (relative to the matrix file's
    # directory) or 'package.module:function' (importable where the harness runs); a flow of
    # your own is deployed unchanged and its executions are recorded by the tracer (harness/tracer)
    flow: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    runs: int = Field(1, ge=1, le=200)  # flow runs started at once (a storm); each is checked
    # background tasks: this many `prefect task serve` replicas serve the workload's `work` task
    # (local backend), each running at most task_worker_limit task runs at once (Prefect's --limit)
    task_workers: int = Field(0, ge=0, le=8)
    task_worker_limit: int | None = Field(None, ge=1)
    # replicas of *another* service serving the same task (the same task key) against the same
    # server, with result storage of their own: they cannot read this scenario's task parameters
    foreign_task_workers: int = Field(0, ge=0, le=8)
    # an entrypoint flow's code directory, on the flow run's path and its working directory
    # (default: the entrypoint file's directory; for a module, the directory its package is in)
    path: str | None = None

    @field_validator("flow")
    @classmethod
    def _flow_exists(cls, flow: str, info: ValidationInfo) -> str:
        if ":" in flow:
            return cls._entrypoint(flow, (info.context or {}).get("base"))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", flow) or not (FLOWS_DIR / f"{flow}.py").is_file():
            known = sorted(p.stem for p in FLOWS_DIR.glob("*.py") if not p.stem.startswith("_"))
            raise ValueError(f"no workload flows/{flow}.py (known: {', '.join(known)}; or a flow of your own by "
                             "its entrypoint, path/to/file.py:function or package.module:function)")
        return flow

    @staticmethod
    def _entrypoint(flow: str, base: Path | None) -> str:
        """'file.py:function' -> the file's absolute path and the function, checked without
        running the file; 'package.module:function' -> as given, once the module is found."""
        match = _ENTRYPOINT.fullmatch(flow)
        if match is None:
            raise ValueError(f"{flow!r}: an entrypoint is path/to/file.py:function or package.module:function")
        target, function = match["target"], match["function"]
        if not target.endswith(".py"):
            if not _MODULE.fullmatch(target):
                raise ValueError(f"{target!r}: not a module name (package.module) nor a .py file")
            try:
                spec = importlib.util.find_spec(target)
            except (ImportError, ValueError) as exc:
                spec, why = None, f": {type(exc).__name__}: {exc}"
            else:
                why = ""
            if spec is None:
                raise ValueError(f"no module {target} can be imported here{why} (install your package, or name "
                                 "its file: path/to/file.py:function)")
            return flow
        path = Path(target).expanduser()
        if not path.is_absolute():
            if base is None:
                raise ValueError(f"{target}: a relative path is relative to its matrix file's directory, and this "
                                 "row has none (load it from a file)")
            path = Path(base) / path
        if not path.is_file():
            raise ValueError(f"no file {path}" + (f" ({target} relative to {base})" if base else ""))
        try:
            names = _top_level_names(path)
        except (SyntaxError, UnicodeDecodeError, OSError) as exc:
            raise ValueError(f"{path} cannot be read as Python: {type(exc).__name__}: {exc}") from None
        if function not in names:
            raise ValueError(f"{path} defines no {function!r} at its top level"
                             + (f" (it defines: {', '.join(names[:12])})" if names else ""))
        return f"{path.resolve()}:{function}"

    @field_validator("path")
    @classmethod
    def _relative_to_matrix(cls, path: str | None, info: ValidationInfo) -> str | None:
        base = (info.context or {}).get("base")
        if path is None or Path(path).is_absolute() or base is None:
            return path
        return str((Path(base) / path).resolve())

    @model_validator(mode="after")
    def _code_path(self) -> "Workload":
        if self.path is not None and not self.own:
            raise ValueError("@path: only a flow of your own (an entrypoint) has a code directory")
        if self.path is not None and not Path(self.path).is_dir():
            raise ValueError(f"@path: no directory {self.path}")
        return self

    def parameters_for(self, case_dir: Path) -> dict[str, Any]:
        """The parameters with ``{case}`` filled in (``fill_case``)."""
        return fill_case(self.parameters, case_dir)

    @property
    def own(self) -> bool:
        """Whether this is a flow of the user's own (an entrypoint), not one of flows/."""
        return ":" in self.flow

    @property
    def entrypoint(self) -> str:
        """The deployment's entrypoint, relative to ``directory``."""
        if not self.own:
            return f"{self.flow}.py:{self.flow}"
        target, function = self.flow.rsplit(":", 1)
        return f"{Path(target).name}:{function}" if target.endswith(".py") else self.flow

    @property
    def directory(self) -> Path:
        """Where the flow's code is: the deployment's working directory and the flow run's path
        (``path``; else the entrypoint file's directory, or the one its module's package is in)."""
        if not self.own:
            return FLOWS_DIR
        if self.path is not None:
            return Path(self.path)
        if self.package is None:
            return Path(self.flow.rsplit(":", 1)[0]).parent
        spec = importlib.util.find_spec(self.package)
        where = (spec.submodule_search_locations or [None])[0] if spec is not None else None
        origin = Path(where) if where else Path(spec.origin) if spec is not None and spec.origin else None
        return origin.parent if origin is not None else Path.cwd()

    @property
    def package(self) -> str | None:
        """A module entrypoint's top-level package (or module), where no ``path`` names the code
        directory: its code is that package, in ``directory``.  None for a file entrypoint."""
        target = self.flow.rsplit(":", 1)[0]
        if not self.own or self.path is not None or target.endswith(".py"):
            return None
        return target.split(".")[0]

    @property
    def flow_name(self) -> str:
        return (self.flow.rsplit(":", 1)[1] if self.own else self.flow).replace("_", "-")


_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:-]{0,254}(:[A-Za-z0-9_.-]{1,128})?(@sha256:[0-9a-f]{64})?")


class JobConfig(_Model):
    """Job variables of the work pool; each backend maps them to its own mechanism."""

    stream_output: bool | None = None
    command: str | None = None  # the flow-run command, e.g. "prefect flow-run execute"
    mem_limit: str | None = None
    backoff_limit: int | None = Field(None, ge=0)  # kind: the Job's backoffLimit (pods it may replace)
    # docker and kind: the image flow runs start in (yours, with your flow's dependencies and
    # Prefect), instead of the harness's own; it must be on this machine's Docker (the harness
    # never pulls), and kind gets it by `kind load`. The local backend runs flows in its own Python.
    image: str | None = None

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not _IMAGE.fullmatch(value):
            raise ValueError(f"{value!r} is not an image reference (name[:tag][@digest], e.g. my-etl:1.0)")
        return value

    @field_validator("mem_limit")
    @classmethod
    def _mem(cls, value: str | None) -> str | None:
        if value is not None:
            parse_bytes(value)
        return value


class Config(_Model):
    flow_retries: int = Field(0, ge=0)
    retry_delay_seconds: float = Field(0, ge=0, le=MAX_SECONDS)
    cache_policy: Literal[CACHE_POLICIES] = "default"  # type: ignore[valid-type]
    task_retries: int = Field(0, ge=0)  # a background task's retries (the served task's options)
    heartbeat_seconds: int | None = Field(None, ge=30, le=MAX_SECONDS)
    zombie_automation_within: int | None = Field(None, gt=0)
    env: dict[str, str] = Field(default_factory=dict)
    job: JobConfig = Field(default_factory=JobConfig)

    @model_validator(mode="after")
    def _zombie_needs_heartbeat(self) -> "Config":
        if self.zombie_automation_within is not None and self.heartbeat_seconds is None:
            raise ValueError("@zombie_automation_within: needs heartbeat_seconds (the automation waits for heartbeats)")
        return self


# what the harness itself sets on every server and worker it starts: a scenario cannot move them
SERVER_ENV_RESERVED = frozenset({
    "PREFECT_SERVER_API_HOST", "PREFECT_SERVER_API_PORT", "PREFECT_SERVER_DATABASE_CONNECTION_URL",
})
WORKER_ENV_RESERVED = frozenset({"PREFECT_API_URL", "PREFECT_HOME"})


def _settings(env: dict[str, str], prefix: str, which: str, reserved: frozenset[str], where: str,
              hint: str = "") -> dict[str, str]:
    """``env`` when every name is a ``prefix`` setting the harness leaves alone; else one error for all."""
    pattern = re.compile(rf"^{prefix}[A-Z0-9_]+$")
    wrong = [f"{key!r}: only {which}, {prefix}*{hint}" for key in env if not pattern.match(key)]
    wrong += [f"{key!r}: the harness sets it on every {where} it starts" for key in env if key in reserved]
    if wrong:
        raise ValueError("; ".join(wrong))
    return env


class Server(_Model):
    """Settings of the server this scenario runs against.  A row that sets any gets a server of
    its own (its own database too), started for it and stopped after it: no other case meets
    those settings."""

    env: dict[str, str] = Field(default_factory=dict)

    _names = field_validator("env")(lambda cls, env: _settings(
        env, "PREFECT_SERVER_", "the server's own settings", SERVER_ENV_RESERVED, "server",
        " (a flow run's go in config.env, a worker's in worker.env)"))


class Worker(_Model):
    """Settings of the scenario's worker (every case has its own): the environment of its
    ``prefect worker start``, or its pod on kind.  A process worker's flow runs inherit it (Prefect
    starts them with its environment and the job's); a docker or kubernetes flow run gets only
    ``config.env``."""

    env: dict[str, str] = Field(default_factory=dict)

    _names = field_validator("env")(lambda cls, env: _settings(
        env, "PREFECT_", "Prefect settings", WORKER_ENV_RESERVED, "worker"))


class Trigger(_Model):
    """When a fault fires: a task's state, the flow run's state, or seconds after the run was
    created.  ``after_seconds`` with a state counts from the poll that first saw that state: the
    clock starts even while an earlier fault of the row is still waiting for its own trigger.
    ``run_count`` with a state counts that state only once the flow run's run_count (the API's:
    each entry into Running, a flow retry's or a replacement pod's included) is at least that."""

    task: str | None = None
    state: Literal[STATE_TYPES] | None = None  # type: ignore[valid-type]
    after_seconds: float | None = Field(None, ge=0, le=MAX_SECONDS)
    flow_state: Literal[STATE_TYPES] | None = None  # type: ignore[valid-type]
    run_count: int | None = Field(None, ge=1)
    # with a task: its nth run in the flow run (in the order they were created), e.g. the third
    # call of `load` (Prefect names them load-<3 characters of a hash>, not load-3)
    nth: int | None = Field(None, ge=1, le=10_000)

    _up = field_validator("state", "flow_state", mode="before")(lambda cls, v: _upper(v))

    @model_validator(mode="after")
    def _one_kind(self) -> "Trigger":
        states = [self.task is not None, self.flow_state is not None]
        if sum(states) > 1 or not (any(states) or self.after_seconds is not None):
            raise ValueError("give one of {task, state}, {flow_state} or {after_seconds}, or a state with "
                             "after_seconds (that long after it was first seen)")
        if self.task is not None and self.state is None:
            raise ValueError("a task trigger needs 'state' (e.g. running)")
        if self.task is None and self.state is not None:
            raise ValueError("'state' belongs to a task trigger; use 'flow_state' for the run")
        if self.run_count is not None and not (self.task or self.flow_state):
            raise ValueError("@run_count: counts a state's attempts; give it with {task, state} or {flow_state}")
        if self.nth is not None and self.task is None:
            raise ValueError("@nth: the nth run of a task; give it with {task, state}")
        return self

    @property
    def delayed(self) -> bool:
        """A state trigger with a delay: fires ``after_seconds`` after the state was first seen."""
        return self.after_seconds is not None and (self.task is not None or self.flow_state is not None)

    def describe(self) -> str:
        if self.task is not None:
            suffix = "th" if 10 <= (self.nth or 0) % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get((self.nth or 0) % 10, "th")
            nth = f"{self.nth}{suffix} run of "
            what = f"{nth if self.nth else ''}task {self.task} {self.state}"
        elif self.flow_state is not None:
            what = f"flow run {self.flow_state}"
        else:
            return f"{self.after_seconds:g}s after the run starts"
        if self.run_count is not None:
            what += f" at run_count >= {self.run_count}"
        return f"{self.after_seconds:g}s after {what} was first seen" if self.delayed else what


# fields of one API fault kind only
_API_FIELDS = {"status": "api-error", "retry_after": "api-error", "latency_seconds": "api-latency", "reset": "api-reset"}


class FaultSpec(_Model):
    kind: str
    target: str | None = None
    when: Trigger
    heal_after_seconds: float | None = Field(None, gt=0, le=MAX_SECONDS)
    grace_seconds: float = Field(5, ge=0, le=MAX_SECONDS)  # terminate: SIGTERM, then this long, then SIGKILL
    mem_limit: str | None = None  # oom: overrides config.job.mem_limit
    cpus: float | None = Field(None, ge=0.001, le=1024)  # cpu-starve: the CPUs' worth of time the target gets
    how: Literal["pause", "stop"] | None = None  # node-loss: a hung node (default) or a stopped one
    # API faults (the fault proxy): which requests, how many, and what they meet
    status: int | None = Field(None, ge=400, le=599)  # api-error: the answer, e.g. 500, 503, 429
    retry_after: float | None = Field(None, ge=0, le=MAX_SECONDS)  # api-error: a Retry-After header
    latency_seconds: float | None = Field(None, gt=0, le=MAX_SECONDS)  # api-latency: added before forwarding
    reset: Literal["before", "after"] | None = None  # api-reset: before the server sees it / after it acted
    fraction: float | None = Field(None, gt=0, le=1)  # the share of matching requests hit (default all)
    path: str | None = None  # a regex searched in 'METHOD /api/route', ids written {id}
    share: float | None = Field(None, gt=0, le=1)  # a storm: the share of its runs this fault hits (seeded)
    # task-worker: the replica running the trigger's task (default) or every replica
    replicas: Literal["running", "all"] | None = None

    @field_validator("kind")
    @classmethod
    def _kind(cls, kind: str) -> str:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
        return kind

    @model_validator(mode="after")
    def _target_and_heal(self) -> "FaultSpec":
        targets, heals = FAULT_KINDS[self.kind]
        if self.target is not None and not self.target.strip():
            raise ValueError("@target: empty; name one, or leave it out for the kind's default")
        target = self.target or DEFAULT_TARGET.get(self.kind, "flow-run")
        if target not in targets:
            raise ValueError(f"@target: fault {self.kind!r} cannot target {target!r} (allowed: {', '.join(sorted(targets))})")
        object.__setattr__(self, "target", target)
        if heals == "never" and self.heal_after_seconds is not None and target != "task-worker":
            raise ValueError(f"@heal_after_seconds: fault {self.kind!r} does not heal; remove it")
        if target == "task-worker":
            object.__setattr__(self, "replicas", self.replicas or "running")
            if self.replicas == "running" and self.when.task is None:
                raise ValueError("@replicas: 'running' finds the replica by the trigger's task; give a task "
                                 "trigger or replicas: all")
        elif self.replicas is not None:
            raise ValueError(f"@replicas: only a task-worker target has replicas, not {target!r}")
        if heals == "required" and self.heal_after_seconds is None:
            raise ValueError(f"@heal_after_seconds: fault {self.kind!r} needs it (how long the target stays down)")
        if self.mem_limit is not None:
            parse_bytes(self.mem_limit)
        if self.kind == "cpu-starve" and self.cpus is None:
            raise ValueError("@cpus: fault 'cpu-starve' needs it (the share of one CPU its target gets, e.g. 0.05)")
        if self.cpus is not None and self.kind != "cpu-starve":
            raise ValueError(f"@cpus: only cpu-starve has 'cpus', not {self.kind!r}")
        if self.how is not None and self.kind != "node-loss":
            raise ValueError(f"@how: only node-loss has a 'how' (pause | stop), not {self.kind!r}")
        self._api_fields()
        return self

    def _api_fields(self) -> None:
        for name, kind in _API_FIELDS.items():
            if getattr(self, name) is not None and self.kind != kind:
                raise ValueError(f"@{name}: only {kind} has {name!r}, not {self.kind!r}")
        for name in ("fraction", "path"):
            if getattr(self, name) is not None and self.kind not in API_FAULTS:
                raise ValueError(f"@{name}: only API faults ({', '.join(sorted(API_FAULTS))}) have {name!r}")
        if self.kind == "api-down" and self.fraction is not None:
            raise ValueError("@fraction: api-down refuses every connection; it has no fraction")
        if self.kind == "api-down" and self.path is not None:
            raise ValueError("@path: api-down refuses every connection; it has no path")
        required = {"api-error": "status", "api-latency": "latency_seconds"}.get(self.kind)
        if required and getattr(self, required) is None:
            raise ValueError(f"@{required}: fault {self.kind!r} needs it")
        if self.path is not None:
            try:
                re.compile(self.path)
            except (re.error, RecursionError, OverflowError) as exc:
                raise ValueError(f"@path: not a regular expression: {exc}") from None


class FollowUp(_Model):
    action: Literal["rerun"]
    expect: RunExpectation = Field(default_factory=RunExpectation)


class Scenario(_Model):
    id: str
    title: str
    claim: Claim | None = None
    backends: list[Literal[BACKENDS]]  # type: ignore[valid-type]
    workload: Workload
    config: Config = Field(default_factory=Config)
    faults: list[FaultSpec] = Field(default_factory=list)
    then: list[FollowUp] = Field(default_factory=list)
    expect: FullExpectation
    # the server's database this scenario needs (restart-database needs postgres); None: the run's
    database: Literal["sqlite", "postgres"] | None = None
    server: Server = Field(default_factory=Server)
    worker: Worker = Field(default_factory=Worker)
    # after the run is terminal and every fault healed, watch this long for a state that
    # overwrites the terminal one (flapping) before the scenario ends
    quiet_seconds: float = Field(3, ge=0, le=MAX_SECONDS)
    # quick: one of the rows that together try every fault kind on every backend in a few minutes
    # (run --tier quick); every row is in the full tier, the main job's and the nightly's
    tier: Literal[TIERS] = "full"  # type: ignore[valid-type]

    @property
    def api_faults(self) -> bool:
        """Whether this scenario's clients must talk to the server through a fault proxy."""
        return any(f.kind in API_FAULTS for f in self.faults)

    @property
    def restarts_server(self) -> bool:
        """Whether a fault of this scenario restarts the server (its clients meet the outage
        through a fault proxy where the backend has one: ``backends.shared.ServerRestart``)."""
        return any(f.kind == "restart-server" for f in self.faults)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if len(value) > ID_MAX:
            raise ValueError(f"{len(value)} characters; an id has at most {ID_MAX}")
        if not ID_RE.match(value):
            raise ValueError("must be lowercase words joined by '-', e.g. kill-flow-process")
        return value

    @field_validator("backends")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one backend")
        return value

    @model_validator(mode="after")
    def _own_flow_backends(self) -> "Scenario":
        if self.workload.own and (self.workload.task_workers or self.workload.foreign_task_workers):
            raise ValueError("@workload.task_workers: task workers serve the harness's own workloads' `work` task; a "
                             "flow of your own has none")
        return self

    @model_validator(mode="after")
    def _faults_exist_on_backends(self) -> "Scenario":
        for i, fault in enumerate(self.faults):
            without = [b for b in self.backends if fault.kind not in BACKEND_FAULTS[b]]
            if without:
                raise ValueError(f"@faults.{i}.kind: backend(s) {', '.join(without)} have no {fault.kind!r} fault "
                                 f"(it exists on: {', '.join(b for b in BACKENDS if fault.kind in BACKEND_FAULTS[b])})")
        return self

    @model_validator(mode="after")
    def _database(self) -> "Scenario":
        for i, fault in enumerate(self.faults):
            if fault.kind == "restart-database" and self.database != "postgres":
                raise ValueError(f"@database: fault {i} restarts the database: say 'database: postgres' "
                                 "(SQLite is a file inside the server, nothing to restart)")
        return self

    @property
    def own_worker(self) -> bool:
        """Whether this scenario needs a worker of its own: it sets the worker's environment, or a
        fault of it reaches a worker (its process), what the worker talks to (an API fault's proxy
        sits between them) or the server and database every worker of the system shares."""
        return bool(self.worker.env) or self.api_faults or any(
            f.target in ("worker", "server", "database", "api") for f in self.faults)

    @property
    def own_server(self) -> bool:
        """Whether this scenario needs a server of its own (it sets the server's settings)."""
        return bool(self.server.env)

    @model_validator(mode="after")
    def _server(self) -> "Scenario":
        without = [b for b in self.backends if b not in OWN_SERVER_BACKENDS]
        if self.own_server and without:
            raise ValueError(f"@server.env: a server with settings of its own is started per case only on "
                             f"{' and '.join(OWN_SERVER_BACKENDS)}, not on {', '.join(without)} (its server is "
                             "the cluster's)")
        return self

    @model_validator(mode="after")
    def _storm(self) -> "Scenario":
        runs = self.workload.runs
        for i, fault in enumerate(self.faults):
            if fault.share is not None and runs == 1:
                raise ValueError(f"@faults.{i}.share: a share of runs needs several (workload.runs > 1)")
            if runs > 1 and fault.target in RUN_SHARED_TARGETS and fault.share is not None:
                raise ValueError(f"@faults.{i}.share: {fault.kind} hits what every run shares; it has no share")
        if runs > 1 and self.then:
            raise ValueError("@then: a storm (workload.runs > 1) has no follow-ups")
        if runs == 1 and self.expect.faulted is not None:
            raise ValueError("@expect.faulted: only a storm (workload.runs > 1) has faulted runs apart")
        at_least = [self.expect.at_least] + [b.at_least for b in self.expect.backends.values()]
        if runs == 1 and any(at_least):
            raise ValueError("@expect.at_least: counts a storm's runs (workload.runs > 1); a single run has 'final'")
        for counts in at_least:
            if sum(counts.values()) > runs:
                raise ValueError(f"@expect.at_least: {sum(counts.values())} runs in all, more than the storm's {runs}")
        if runs > 1:
            layers = [self.expect, *self.expect.prefect.values()]
            for b in self.expect.backends.values():
                layers += [b, *b.prefect.values()]
            for name in ("passes_through", "never", "detected_as", "reported_by"):
                if any(name in layer.model_fields_set for layer in layers):
                    raise ValueError(f"@expect.{name}: the path is one run's; a storm (workload.runs > 1) has final "
                                     "states and counts")
        return self

    @model_validator(mode="after")
    def _task_workers(self) -> "Scenario":
        w = self.workload
        for name in ("task_workers", "foreign_task_workers"):
            if not getattr(w, name):
                continue
            if self.backends != ["local"]:
                raise ValueError(f"@workload.{name}: only the local backend starts task workers "
                                 f"(listed: {', '.join(self.backends)})")
            if w.runs > 1:
                raise ValueError(f"@workload.{name}: a storm (workload.runs > 1) has no task workers")
            if w.flow != "background":
                raise ValueError(f"@workload.{name}: only the background workload's tasks are served by task workers")
        if w.flow == "background" and not (w.task_workers or w.foreign_task_workers):
            raise ValueError("@workload.task_workers: the background workload's tasks need task workers (1 or more, "
                             "or foreign_task_workers)")
        if w.task_worker_limit is not None and not w.task_workers:
            raise ValueError("@workload.task_worker_limit: there are no task workers (workload.task_workers)")
        for i, fault in enumerate(self.faults):
            if fault.target == "task-worker" and not w.task_workers:
                raise ValueError(f"@faults.{i}.target: no task workers to hit (workload.task_workers is 0)")
        return self

    @model_validator(mode="after")
    def _oom_has_a_limit(self) -> "Scenario":
        for i, fault in enumerate(self.faults):
            if fault.kind == "oom" and fault.mem_limit is None and self.config.job.mem_limit is None:
                raise ValueError(f"@faults.{i}.mem_limit: an oom fault needs a memory limit, here or in config.job.mem_limit")
        return self


Claim.model_rebuild()


