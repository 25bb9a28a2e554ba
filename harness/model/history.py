"""The history of one scenario: everything observed, merged and time-ordered.

Flow-run and task-run state transitions as the Prefect API recorded them, the faults with their
inject/heal times, and the ledger lines.  It is plain data (JSON in, JSON out) so the checker is
a pure function of it and the journal can carry it whole.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

TERMINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})

# Who set a state.  Prefect records no author on a state, but each component words its own: these
# are the messages of its source (3.6-3.9: the engine's ``exception_to_crashed_state``, the
# runner's flow-run executor, ``BaseWorker``'s crash and submission reports, the server's
# cancellation cleanup service, prefect-kubernetes' observer) and of the zombie automation the
# harness creates.  The first pattern that matches names the reporter; none: "unknown".
REPORTERS: tuple[tuple[str, str], ...] = (
    ("runner", r"^Process exited with status code|^Flow run could not start"),
    ("worker", r"^Flow run infrastructure exited|^Failed to submit flow run to infrastructure|^Submission failed"),
    ("engine", r"^Execution was (aborted|cancelled) by|^Flow run encountered an exception|^Finished in state"
               r"|^All states completed|^Flow run timed out"),
    ("server", r"cancellation timed out"),
    ("automation", r"due to missing heartbeats"),
    ("observer", r"^Kubernetes (job was deleted|pod is pending)|^No active or succeeded pods"),
)
REPORTER_NAMES = tuple(name for name, _ in REPORTERS) + ("unknown",)


def reporter(message: str | None) -> str:
    """The component that set a state, from its message (see ``REPORTERS``)."""
    for name, pattern in REPORTERS:
        if message and re.search(pattern, message):
            return name
    return "unknown"


@dataclass
class State:
    type: str
    name: str
    timestamp: float
    message: str | None = None


@dataclass
class FlowRun:
    id: str
    flow_name: str
    role: str  # main | rerun | subflow
    states: list[State] = field(default_factory=list)
    run_count: int = 0
    parent_id: str | None = None

    @property
    def final(self) -> State | None:
        return self.states[-1] if self.states else None


@dataclass
class TaskRun:
    id: str
    flow_run_id: str
    name: str
    states: list[State] = field(default_factory=list)
    run_count: int = 0

    @property
    def final(self) -> State | None:
        return self.states[-1] if self.states else None


# Prefect's own task run name: the task's name, '-', the first characters of its dynamic key
_DEFAULT_RUN_NAME = re.compile(r"-[0-9a-z]{1,3}")


def task_states(tasks: dict[str, str], task: str) -> list[str]:
    """The states of a task's runs in a snapshot: the run named ``task`` (the harness's workloads
    name their runs), else the runs Prefect named after a task ``task`` ('load-0', 'load-1')."""
    if task in tasks:
        return [tasks[task]]
    return [state for name, state in tasks.items()
            if name.startswith(f"{task}-") and _DEFAULT_RUN_NAME.fullmatch(name[len(task):])]


@dataclass
class History:
    scenario: str
    backend: str
    started_at: float
    ended_at: float
    bound_seconds: float
    flow_runs: list[FlowRun] = field(default_factory=list)
    task_runs: list[TaskRun] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    # the execution tracer's count of task-body starts by task-run name (harness/tracer), beside
    # the hand-kept ledger's; for a flow that is not the harness's own, its lines are the ledger
    traced: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the observer could not see, and why
    # the backend's own account of each flow run's infrastructure (docker: a container's exit
    # code and OOMKilled flag), which Prefect's states may not carry
    infrastructure: list[dict[str, Any]] = field(default_factory=list)

    def runs(self, role: str) -> list[FlowRun]:
        return [r for r in self.flow_runs if r.role == role]

    @property
    def main(self) -> FlowRun | None:
        mains = self.runs("main")
        return mains[0] if mains else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "History":
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}  # an older or newer journal's
        data["flow_runs"] = [
            FlowRun(**{**r, "states": [State(**s) for s in r.get("states", [])]}) for r in data.get("flow_runs", [])
        ]
        data["task_runs"] = [
            TaskRun(**{**t, "states": [State(**s) for s in t.get("states", [])]}) for t in data.get("task_runs", [])
        ]
        return cls(**data)

    def timeline(self) -> list[tuple[float, str, str]]:
        """Every event as (time, source, text), time-ordered: what a person reads first."""
        events: list[tuple[float, str, str]] = []
        for run in self.flow_runs:
            for s in run.states:
                events.append((s.timestamp, f"flow-run {run.role} {run.id[:8]}", f"{s.type}/{s.name} {s.message or ''}".strip()))
        for task in self.task_runs:
            for s in task.states:
                events.append((s.timestamp, f"task {task.name}", f"{s.type}/{s.name}"))
        for f in self.faults:
            if f.get("injected_at"):
                events.append((f["injected_at"], "fault", f"inject {f['kind']} -> {f['target']}"))
            if f.get("healed_at"):
                events.append((f["healed_at"], "fault", f"heal {f['kind']}"))
        for line in self.ledger:
            events.append((line["time"], "ledger", f"{line['event']} {line['task']} pid={line.get('pid')}"))
        return sorted(events, key=lambda e: e[0])
