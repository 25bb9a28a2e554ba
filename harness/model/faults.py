"""The fault vocabulary shared by every backend.

A fault is one action against one target at one trigger, with ``inject()`` and ``heal()``
(DESIGN.md).  This module says which faults exist, which targets each may hit and whether it
heals; each backend maps a fault to its own real mechanism (``harness.backends``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.model.history import TERMINAL

# kind -> (allowed targets, heals?)  A healing fault must say when it heals, unless it may also be
# left unhealed (freeze: "frozen, not dead" both healed and not).
FAULT_KINDS: dict[str, tuple[frozenset[str], str]] = {
    # SIGKILL / docker kill / delete the pod with grace 0.  A task-worker (a `prefect task serve`
    # replica) may heal: it is started again, as a Deployment's ReplicaSet would
    "kill": (frozenset({"flow-run", "worker", "task-worker"}), "never"),
    # SIGTERM, grace, SIGKILL / docker stop -t / delete the pod with a grace period
    "terminate": (frozenset({"flow-run", "worker", "task-worker"}), "never"),
    # SIGSTOP + SIGCONT / docker pause + unpause / pause the pod's container through containerd
    "freeze": (frozenset({"flow-run", "worker", "task-worker"}), "optional"),
    # memory limit + allocation, the kernel's OOM killer acts
    "oom": (frozenset({"flow-run"}), "never"),
    # SIGKILL the worker / delete the worker pod (an alias of kill/worker that DESIGN.md names)
    "kill-worker": (frozenset({"worker"}), "never"),
    # stop the server, keep it down, start it again on the same database
    "restart-server": (frozenset({"server"}), "required"),
    # the Eviction API on the pod (honours PodDisruptionBudgets and the grace period)
    "evict": (frozenset({"flow-run", "worker"}), "never"),
    # cordon the flow run's node and evict everything of the session on it; heal = uncordon
    "drain": (frozenset({"node"}), "optional"),
    # the flow run's node disappears: its kind node container paused (hung node) or stopped
    # (how: stop); heal = unpause / start
    "node-loss": (frozenset({"node"}), "optional"),
    # stop the server's PostgreSQL, keep it down, start it again on the same data
    "restart-database": (frozenset({"database"}), "required"),
    # load, not death: a CPU quota on the target (the cpu cgroup / docker update --cpus / the pod
    # container's cgroup in its node), so it runs at ``cpus`` of one CPU, as on an overloaded node;
    # heal lifts it, unhealed it lasts to the scenario's end
    "cpu-starve": (frozenset({"flow-run", "worker", "server"}), "optional"),
    # cancel the flow run as a user does (`prefect flow-run cancel`, the UI): the API is asked to
    # set it Cancelling; stopping the run is then Prefect's own work (its worker or runner)
    "cancel": (frozenset({"flow-run"}), "never"),
    # API faults, through the scenario's fault proxy between its clients and the server: answer a
    # fraction of requests with an HTTP status, delay them, reset the connection, or refuse every
    # connection (down); healing ends the window, unhealed they last to the scenario's end
    "api-error": (frozenset({"api"}), "optional"),
    "api-latency": (frozenset({"api"}), "optional"),
    "api-reset": (frozenset({"api"}), "optional"),
    "api-down": (frozenset({"api"}), "optional"),
}

API_FAULTS = frozenset(k for k, (targets, _) in FAULT_KINDS.items() if "api" in targets)

# What every flow run of a scenario shares: a storm's fault on one of these is injected once (on
# the first run's trigger) and has no share of runs.
RUN_SHARED_TARGETS = frozenset({"worker", "task-worker", "server", "api", "node", "database"})

DEFAULT_TARGET = {"kill-worker": "worker", "restart-server": "server", "drain": "node", "node-loss": "node",
                  "restart-database": "database",
                  **{k: "api" for k in API_FAULTS}}

# Which backend has a real mechanism for which fault.  A scenario that lists a backend without
# one is refused when the matrix loads, not skipped at run time.
# API faults need the clients on loopback with the proxy, and PostgreSQL runs on loopback: kind's
# pods and its server container are not there (they reach the server through a Service).
_PROCESS_FAULTS = frozenset({"kill", "terminate", "freeze", "oom", "kill-worker", "restart-server", "cancel",
                             "cpu-starve"})
BACKEND_FAULTS: dict[str, frozenset[str]] = {
    "local": _PROCESS_FAULTS | API_FAULTS | {"restart-database"},
    "docker": _PROCESS_FAULTS | API_FAULTS | {"restart-database"},
    "kind": frozenset(FAULT_KINDS) - API_FAULTS - {"restart-database"},
}


class Fault(Protocol):
    """One injected fault: what a backend returns for a fault spec once its target is known."""

    def inject(self) -> dict[str, Any]:
        """Break the target; return JSON-friendly details for the history (pids, signals, ...)."""

    def heal(self) -> dict[str, Any]:
        """Undo what inject did, where it can be undone; return details for the history."""

    def close(self) -> dict[str, Any]:
        """Whatever the fault still waits for is over (a grace period); details for the history."""


@dataclass
class FaultRecord:
    """A fault as it appears in the history: when it was injected and healed, and how."""

    kind: str
    target: str
    injected_at: float | None = None
    healed_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "injected_at": self.injected_at,
            "healed_at": self.healed_at,
            "detail": self.detail,
            "error": self.error,
        }


def inject(fault: Fault, record: FaultRecord) -> None:
    """Inject ``fault`` and stamp ``record``; a failure is recorded, never raised past the run."""
    try:
        record.injected_at = time.time()
        record.detail.update(fault.inject())
    except Exception as exc:  # the verdict turns 'unknown'; the scenario still cleans up
        record.error = f"inject failed: {type(exc).__name__}: {exc}"


def heal(fault: Fault, record: FaultRecord) -> None:
    try:
        record.detail.update(fault.heal())
        record.healed_at = time.time()
    except Exception as exc:
        record.error = (record.error or "") + f" heal failed: {type(exc).__name__}: {exc}"


class CancelRun:
    """``cancel``: the flow run is asked to cancel through the API, as a user's client asks.  Every
    backend's runs are cancelled the same way; what stops them is Prefect's."""

    def __init__(self, api: Any, flow_run_id: str) -> None:
        self.api, self.flow_run_id = api, flow_run_id

    def inject(self) -> dict[str, Any]:
        answer = self.api.set_flow_run_state(self.flow_run_id, "CANCELLING", "cancelled by the chaos harness")
        status = answer.get("status")
        if status != "ACCEPT":
            reason = (answer.get("details") or {}).get("reason")
            refused = f"the server answered {status} to CANCELLING" + (f": {reason}" if reason else "")
            state = (self.api.flow_run(self.flow_run_id).get("state") or {}).get("type")
            if state in TERMINAL:  # as a kill finds no process: nothing left to cancel
                raise LookupError(f"the flow run had already ended ({state}); {refused}")
            raise RuntimeError(refused)
        return {"proposed": "CANCELLING", "answer": status}

    def heal(self) -> dict[str, Any]:
        return {}

    def close(self) -> dict[str, Any]:
        return {}
