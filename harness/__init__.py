"""Crash-chaos harness for Prefect.

Starts a real Prefect server, runs instrumented flows on a real backend, breaks the backend on
cue, records everything into a history and checks it against the expected-state matrix in
``scenarios/``.  The package, by concept (docs/architecture.md walks one scenario through it):

- ``model``: the matrix row, its expectation, the fault vocabulary, the history, the checker, the
  journal line (nothing here touches a process);
- ``sut``: the system under test every backend shares: the API client, the database, the fault
  proxy, ports, processes, the logs a case keeps;
- ``backends``: ``shared`` and one package per backend (``local``, ``docker``, ``kind``) with all
  of its infrastructure;
- ``run``: one case end to end (``run.case.run_scenario``), the session, the scheduler, shards,
  exploration, the benchmark;
- ``report``: the HTML report, the console line, the findings page;
- entry points: ``cli`` (``chaos-harness``, ``python -m harness``), ``plugin`` and ``fixtures``
  (pytest), ``ctk`` (Chaos Toolkit).  ``ledger`` stays at the top: flow runs import it.
"""

__version__ = "0.1.0"


def discover(discover_system: bool = True) -> dict:
    """``chaos discover prefect-chaos-harness``: the Chaos Toolkit extension's activities
    (``harness.ctk``; needs the ctk extra)."""
    from harness.ctk import discover as activities

    return activities(discover_system)
