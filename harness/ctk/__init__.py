"""A Chaos Toolkit extension: the harness's faults as actions, Prefect probes as probes.

Chaos Toolkit experiments are the lingua franca of chaos engineering tooling (journals, controls,
reports, schedulers); the harness's matrix is the memory of how Prefect behaves.  This package
lets one drive the other: ``python -m harness export-ctk SCENARIO`` writes a matrix row as an
experiment, and ``chaos run`` plays it with the harness's own machinery (the same session,
backends, deployment, triggers, faults, ledger and figures as ``python -m harness run``).

- ``harness.ctk.actions``: start_run, inject_fault, heal_faults, stop_system;
- ``harness.ctk.probes``: the run's state, run_count, executions, figures, API health;
- ``harness.ctk.tolerances``: the matrix's tolerances chaoslib has no native form for;
- ``harness.ctk.export``: a scenario as an experiment, or a refusal naming what cannot be;
- ``harness.ctk.state``: what one ``chaos run`` process holds between activities.

Every activity is a plain function with JSON arguments and a JSON result, usable as
``{"type": "python", "module": "harness.ctk.actions", "func": "start_run"}``.  Only ``discover``
needs chaostoolkit-lib (the ``ctk`` extra); the export and the activities do not import it.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from harness import __version__
from harness.model.matrix import load_matrix
from harness.model.scenario import FLOWS_DIR, Scenario

DEFAULT_MATRIX = FLOWS_DIR.parent / "scenarios"  # the repository's matrix, as python -m harness uses it


def find_scenario(scenario: Any, matrix: str | None, where: str) -> Scenario:
    """Load and validate the whole matrix (a bad row anywhere raises MatrixError, as the harness
    does), then the scenario of that id; errors name ``where`` (the calling activity)."""
    if not isinstance(scenario, str) or not scenario:
        raise ValueError(f"{where}: argument 'scenario': a scenario id (a string), not {scenario!r}")
    if matrix is not None and not isinstance(matrix, str):
        raise ValueError(f"{where}: argument 'matrix': a path (a string), not {matrix!r}")
    path = Path(matrix) if matrix else DEFAULT_MATRIX
    scenarios = {s.id: s for s in load_matrix(path)}
    if scenario not in scenarios:
        near = difflib.get_close_matches(scenario, scenarios, n=3)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise ValueError(f"{where}: argument 'scenario': no scenario {scenario!r} in {path}{hint}")
    return scenarios[scenario]


def seconds(where: str, name: str, value: Any) -> float:
    """A JSON argument that must be a number of seconds >= 0; refused naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{where}: argument {name!r}: a number of seconds >= 0, not {value!r}")
    return float(value)


def discover(discover_system: bool = True) -> dict[str, Any]:
    """The extension's activities, as ``chaos discover`` lists an extension's (needs the ctk extra)."""
    from chaoslib.discovery import discover_actions, discover_probes, initialize_discovery_result

    result = initialize_discovery_result("prefect-chaos-harness", __version__, "prefect")
    result["activities"] = (discover_actions("harness.ctk.actions") + discover_probes("harness.ctk.probes")
                            + discover_probes("harness.ctk.tolerances"))
    return result
