"""The expected-state matrix: the models of ``scenarios/*.yaml`` and their loading.

The whole matrix is loaded and validated before anything runs.  Every error names the file, the
scenario id and the field path, so a typo in row 40 is found before row 1 starts a server.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.faults import API_FAULTS, BACKEND_FAULTS, DEFAULT_TARGET, FAULT_KINDS, RUN_SHARED_TARGETS

BACKENDS = ("local", "docker", "kind")
OWN_SERVER_BACKENDS = ("local", "docker")  # where one case can have a server (a system) of its own
TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
STATE_TYPES = TERMINAL + ("RUNNING", "SCHEDULED", "PENDING", "PAUSED", "CANCELLING")
CACHE_POLICIES = ("inputs", "task_source_inputs", "default", "none")
TIERS = ("quick", "full")
ID_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
FLOWS_DIR = Path(__file__).resolve().parent.parent / "flows"


class MatrixError(Exception):
    """The matrix is invalid; ``errors`` holds one 'file: scenario: field: message' line each."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid scenario matrix:\n  " + "\n  ".join(errors))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


StateType = Literal[STATE_TYPES]  # type: ignore[valid-type]
Count = Union[int, list[int]]


def _upper(value: Any) -> Any:
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, list):
        return [v.upper() if isinstance(v, str) else v for v in value]
    return value


class Claim(_Model):
    text: str
    source: str
    # What the claim predicts, in expectation fields; the checker evaluates it on the same
    # history as the expectation, so the report can say held / refuted with evidence.
    predicts: "Prediction | None" = None


class Workload(_Model):
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

    @field_validator("flow")
    @classmethod
    def _flow_exists(cls, flow: str) -> str:
        if not (FLOWS_DIR / f"{flow}.py").is_file():
            known = sorted(p.stem for p in FLOWS_DIR.glob("*.py") if not p.stem.startswith("_"))
            raise ValueError(f"no workload flows/{flow}.py (known: {', '.join(known)})")
        return flow


class JobConfig(_Model):
    """Job variables of the work pool; each backend maps them to its own mechanism."""

    stream_output: bool | None = None
    command: str | None = None  # the flow-run command, e.g. "prefect flow-run execute"
    mem_limit: str | None = None
    backoff_limit: int | None = Field(None, ge=0)  # kind: the Job's backoffLimit (pods it may replace)

    @field_validator("mem_limit")
    @classmethod
    def _mem(cls, value: str | None) -> str | None:
        if value is not None:
            parse_bytes(value)
        return value


class Config(_Model):
    flow_retries: int = Field(0, ge=0)
    retry_delay_seconds: float = Field(0, ge=0)
    cache_policy: Literal[CACHE_POLICIES] = "default"  # type: ignore[valid-type]
    task_retries: int = Field(0, ge=0)  # a background task's retries (the served task's options)
    heartbeat_seconds: int | None = Field(None, ge=30)
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
    after_seconds: float | None = Field(None, ge=0)
    flow_state: Literal[STATE_TYPES] | None = None  # type: ignore[valid-type]
    run_count: int | None = Field(None, ge=1)

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
        return self

    @property
    def delayed(self) -> bool:
        """A state trigger with a delay: fires ``after_seconds`` after the state was first seen."""
        return self.after_seconds is not None and (self.task is not None or self.flow_state is not None)

    def describe(self) -> str:
        if self.task is not None:
            what = f"task {self.task} {self.state}"
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
    heal_after_seconds: float | None = Field(None, gt=0)
    grace_seconds: float = Field(5, ge=0)  # terminate: SIGTERM, then this long, then SIGKILL
    mem_limit: str | None = None  # oom: overrides config.job.mem_limit
    cpus: float | None = Field(None, ge=0.001, le=1024)  # cpu-starve: the CPUs' worth of time the target gets
    how: Literal["pause", "stop"] | None = None  # node-loss: a hung node (default) or a stopped one
    # API faults (the fault proxy): which requests, how many, and what they meet
    status: int | None = Field(None, ge=400, le=599)  # api-error: the answer, e.g. 500, 503, 429
    retry_after: float | None = Field(None, ge=0)  # api-error: a Retry-After header
    latency_seconds: float | None = Field(None, gt=0)  # api-latency: added before forwarding
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
            except re.error as exc:
                raise ValueError(f"@path: not a regular expression: {exc}") from None


class RunExpectation(_Model):
    """What one flow run must look like at the end: a subset of the full expectation."""

    final: StateType | list[StateType] | None = None  # type: ignore[valid-type]
    final_name: str | list[str] | None = None
    message: str | None = None  # a regex searched in the final state's message
    run_count: Count | None = None

    _up = field_validator("final", mode="before")(lambda cls, v: _upper(v))

    @field_validator("message")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value


class Prediction(RunExpectation):
    """What a claim predicts: the main run's final state, run_count, message, its subflows',
    and task-body executions across the scenario (for claims about resumption)."""

    subflows: RunExpectation | None = None
    executions: dict[str, Count] = Field(default_factory=dict)


class Expectation(RunExpectation):
    executions: dict[str, Count] = Field(default_factory=dict)
    # task runs by name (a background task's state is its own, not its submitter's)
    tasks: dict[str, RunExpectation] = Field(default_factory=dict)
    # a storm (workload.runs > 1): the run fields above are for the runs no fault hit; these for
    # the runs a fault hit.  executions are totals over every run.
    faulted: RunExpectation | None = None
    # a storm: at least this many of its runs (faulted or not) end in each of these states
    at_least: dict[StateType, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)  # type: ignore[valid-type]
    detect_within_seconds: float | None = Field(None, gt=0)
    settle_within_seconds: float = Field(..., gt=0)
    subflows: RunExpectation | None = None
    overlap: bool = False  # two processes executing the same flow run at once
    flapping: bool = False  # a terminal state later overwritten
    _up_keys = field_validator("at_least", mode="before")(
        lambda cls, v: {_upper(k): n for k, n in v.items()} if isinstance(v, dict) else v)
    # what the infrastructure says, beyond Prefect: the kernel's OOM killer acted (a docker
    # container's OOMKilled, a cgroup's oom_kill count), and the first container's exit code
    oom_killed: bool | None = None
    exit_code: Count | None = None
    # Set while no real run has confirmed this expectation: what it rests on instead (a
    # documented behaviour, a reading of the code).  The report marks such cells; a measurement
    # replaces the expectation and removes the mark.
    unverified: str | None = None


class ExpectationOverride(Expectation):
    settle_within_seconds: float | None = Field(None, gt=0)  # type: ignore[assignment]


def _specifiers(value: dict[str, Any]) -> dict[str, Any]:
    for key in value:
        try:
            SpecifierSet(key)
        except InvalidSpecifier:
            raise ValueError(f"{key!r} is not a Prefect version specifier (e.g. '<3.7' or '>=3.6,<3.8')") from None
    return value


def _matching(overrides: dict[str, ExpectationOverride], version: str | None) -> list[ExpectationOverride]:
    """The overrides whose specifier the Prefect ``version`` satisfies, in the file's order."""
    if not version:
        return []
    return [o for key, o in overrides.items() if SpecifierSet(key).contains(version, prereleases=True)]


class BackendOverride(ExpectationOverride):
    # what this backend does differently on some Prefect versions, keyed by a version specifier
    prefect: dict[str, ExpectationOverride] = Field(default_factory=dict)

    _versions = field_validator("prefect")(lambda cls, v: _specifiers(v))


class FullExpectation(Expectation):
    backends: dict[str, BackendOverride] = Field(default_factory=dict)
    # what differs on some Prefect versions (every backend), keyed by a version specifier: '<3.7'
    prefect: dict[str, ExpectationOverride] = Field(default_factory=dict)

    _versions = field_validator("prefect")(lambda cls, v: _specifiers(v))

    @field_validator("backends")
    @classmethod
    def _known(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if name not in BACKENDS:
                raise ValueError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
        return value

    def for_backend(self, backend: str, prefect_version: str | None = None) -> Expectation:
        """The expectation for ``backend`` on Prefect ``prefect_version`` (None: any version).

        Layered, each over the one before: the row, its overrides for this Prefect version, the
        backend's override, the backend's overrides for this version.  A backend's override thus
        wins over a version's, as it wins over the row's."""
        base = self.model_dump(exclude={"backends", "prefect"})
        layers = _matching(self.prefect, prefect_version)
        override = self.backends.get(backend)
        if override is not None:
            layers += [override] + _matching(override.prefect, prefect_version)
        for layer in layers:
            base.update(layer.model_dump(exclude_unset=True, exclude={"prefect"}))
        return Expectation.model_validate(base)


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
    quiet_seconds: float = Field(3, ge=0)
    # quick: one of the rows that together try every fault kind on every backend in a few minutes
    # (run --tier quick); every row is in the full tier, the main job's and the nightly's
    tier: Literal[TIERS] = "full"  # type: ignore[valid-type]

    @property
    def api_faults(self) -> bool:
        """Whether this scenario's clients must talk to the server through a fault proxy."""
        return any(f.kind in API_FAULTS for f in self.faults)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
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


def parse_bytes(text: str) -> int:
    """'256Mi', '1Gi', '500M', '1024' -> bytes (Kubernetes quantity suffixes and Docker's)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?|[kmgt]b?|)\s*", str(text))
    if not match:
        raise ValueError(f"not a memory size: {text!r} (use e.g. 256Mi, 1Gi, 512m)")
    number, unit = float(match.group(1)), match.group(2)
    powers = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
    base = 1024 if (unit.endswith("i") or len(unit) == 1 and unit.islower() or unit.endswith("b")) else 1000
    return int(number * base ** powers[unit[:1].lower()])


# pydantic names the member of a union it tried ('literal[...]', 'list[int]', 'int'): not a field
_TYPE_TAG = re.compile(r"^(?:[\w-]+\[.*\]|int|str|float|bool|none)$")


def _format_errors(path: Path, scenario_id: str, errors: list[dict[str, Any]]) -> list[str]:
    """One line per field: a value that fits no member of a union gets one line, not one per member."""
    by_field: dict[str, list[str]] = {}
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"] if not _TYPE_TAG.match(str(p)))
        msg = err["msg"].removeprefix("Value error, ")
        if msg.startswith("@"):  # a row-level check names its own field: "@faults.0.mem_limit: ..."
            field, msg = msg[1:].split(": ", 1)
            loc = ".".join(filter(None, [loc, field]))
        if msg not in by_field.setdefault(loc, []):
            by_field[loc].append(msg)
    return [f"{path}: scenario {scenario_id!r}: {loc or '(row)'}: {'; or '.join(msgs)}" for loc, msgs in by_field.items()]


def _node_errors(node: yaml.Node, where: str = "", above: tuple[int, ...] = ()) -> list[tuple[str, str]]:
    """What the data would lose or could not hold, below ``node``: (a dotted path, what is wrong).
    A mapping key given twice (YAML itself keeps the last silently), and an alias inside its own
    anchor (recursive data, which no field of a scenario can hold)."""
    if id(node) in above:
        return [(where, f"refers to itself (a recursive YAML alias, line {node.start_mark.line + 1})")]
    above += (id(node),)
    found: list[tuple[str, str]] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is None or name == "<<":  # a merge key (or a complex key) is not a field
                continue
            path = f"{where}.{name}" if where else name
            if name in first:
                found.append((path, f"given twice (lines {first[name] + 1} and {key.start_mark.line + 1}); "
                                    "YAML would keep only the last"))
            else:
                first[name] = key.start_mark.line
            found.extend(_node_errors(value, path, above))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found.extend(_node_errors(item, f"{where}.{i}" if where else str(i), above))
    return found


def load_file(path: Path) -> tuple[list[Scenario], list[str]]:
    """Parse one matrix file; return its scenarios and its error lines (never raises).  A key given
    twice in a row is an error (YAML would keep the last one silently), and so is a recursive alias."""
    loader = yaml.SafeLoader(path.read_text())
    try:  # one parse: the node tree, checked for keys given twice before merge keys are flattened
        tree = loader.get_single_node()
        rows = tree.value if isinstance(tree, yaml.SequenceNode) else []
        lost = {index: found for index, row in enumerate(rows) if (found := _node_errors(row))}
        raw = loader.construct_document(tree) if tree is not None else None
    except yaml.YAMLError as exc:
        return [], [f"{path}: not valid YAML: {exc}".replace("\n", " ")]
    finally:
        loader.dispose()
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [f"{path}: the file must be a list of scenarios, found {type(raw).__name__}"]
    scenarios, errors = [], []
    for index, row in enumerate(raw):
        sid = row.get("id", f"#{index + 1}") if isinstance(row, dict) else f"#{index + 1}"
        if index in lost:  # the same index: the rows of the node tree are the rows of the data
            errors.extend(f"{path}: scenario {str(sid)!r}: {field}: {what}" for field, what in lost[index])
            continue
        try:
            scenarios.append(Scenario.model_validate(row))
        except ValidationError as exc:
            errors.extend(_format_errors(path, str(sid), exc.errors()))
    return scenarios, errors


def load_matrix(*paths: Path | str) -> list[Scenario]:
    """Load every ``*.yaml`` under the given files/directories; raise MatrixError listing all errors."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.yaml")))
        elif p.is_file():
            files.append(p)
        else:
            raise MatrixError([f"{p}: no such file or directory"])
    scenarios, errors, seen = [], [], {}
    for f in files:
        found, errs = load_file(f)
        errors.extend(errs)
        for s in found:
            if s.id in seen:
                errors.append(f"{f}: scenario {s.id!r}: id: duplicate id, first defined in {seen[s.id]}")
            seen[s.id] = f
            scenarios.append(s)
    if errors:
        raise MatrixError(errors)
    return scenarios


def select(scenarios: list[Scenario], patterns: list[str] | None, backends: list[str],
           tier: str = "full") -> list[tuple[Scenario, str]]:
    """(scenario, backend) pairs matching any id/glob pattern and any of the chosen backends, of
    the tier (quick: the rows marked so; full: every row)."""
    pairs = []
    for s in scenarios:
        if patterns and not any(fnmatch.fnmatchcase(s.id, p) for p in patterns):
            continue
        if tier == "quick" and s.tier != "quick":
            continue
        pairs.extend((s, b) for b in s.backends if b in backends)
    return pairs
