"""Crash-chaos harness for Prefect.

Starts a real Prefect server, runs instrumented flows on a real backend, breaks the backend on
cue, records everything into a history and checks it against the expected-state matrix in
``scenarios/``.  ``harness.run.run_scenario`` is the whole pipeline for one scenario.
"""

__version__ = "0.1.0"


def discover(discover_system: bool = True) -> dict:
    """``chaos discover prefect-chaos-harness``: the Chaos Toolkit extension's activities
    (``harness.ctk``; needs the ctk extra)."""
    from harness.ctk import discover as activities

    return activities(discover_system)
