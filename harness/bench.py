"""The benchmark: how much time and memory the harness itself costs, in printed figures.

``python -m harness bench`` runs the selected cases (default: the whole local matrix) the way the
main job does, ``--concurrency`` at a time, and prints per case and overall:

- harness overhead = the case's wall time (deploy to cleanup) minus the scenario's own time: from
  the main flow run's creation to the last thing the scenario waits for (the last run's terminal
  state, the last fault's heal; the bound for a run that stays stuck), median and worst, with
  where it went (deploy, the tail of watching, collecting, cleanup);
- the matrix's wall time against its longest single case (target: at most 1.5x);
- state-observation lag: when the harness first saw the main run terminal, minus the time Prefect
  recorded that state;
- the harness process's peak RSS and CPU seconds (and its children's, for scale).

Targets are printed beside the figures, never asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from harness.journal import REPORTS_DIR, Journal
from harness.run import run_scenario
from harness.scenario import load_matrix, select
from harness.schedule import Scheduler, plan
from harness.session import ChaosSession, prefect_version

OVERHEAD_TARGET = 1.0  # seconds, median
MATRIX_TARGET = 1.5  # matrix wall time / longest case


def own_time(entry: dict[str, Any]) -> float:
    """The scenario's own time: main run created -> the last thing the scenario waits for."""
    history = entry["history"]
    tops = [r for r in history["flow_runs"] if r["role"] in ("main", "rerun") and r["states"]]
    if not tops:
        return 0.0
    created = min(r["states"][0]["timestamp"] for r in tops)
    ends = [r["states"][-1]["timestamp"] for r in tops]
    ends += [f["healed_at"] for f in history["faults"] if f.get("healed_at")]
    if entry["verdict"]["figures"].get("stuck"):  # nothing settles: the scenario waits its bound
        ends.append(created + entry["expectation"]["settle_within_seconds"])
    return max(ends) - created


def observation_lag(entry: dict[str, Any]) -> float | None:
    seen = (entry.get("timing") or {}).get("terminal_seen_at")
    main = next((r for r in entry["history"]["flow_runs"] if r["role"] == "main"), None)
    if seen is None or main is None:
        return None
    terminal = [s["timestamp"] for s in main["states"] if s["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
    return seen - terminal[0] if terminal else None


def case_figures(entry: dict[str, Any], began: float, ended: float) -> dict[str, Any]:
    timing = entry.get("timing") or {}
    wall, own = ended - began, own_time(entry)
    return {"case": f"{entry['scenario']}@{entry['backend']}", "outcome": entry["verdict"]["outcome"],
            "wall": round(wall, 2), "own": round(own, 2), "overhead": round(wall - own, 2),
            "deploy": timing.get("deploy"), "follow_ups": timing.get("follow_ups"), "collect": timing.get("collect"),
            "cleanup": round(ended - entry["finished_at"], 2), "lag": observation_lag(entry)}


def summarize(cases: list[dict[str, Any]], matrix_wall: float, usage: dict[str, float]) -> dict[str, Any]:
    overheads = [c["overhead"] for c in cases]
    lags = [c["lag"] for c in cases if c["lag"] is not None]
    longest = max((c["wall"] for c in cases), default=0.0)
    out = {
        "cases": len(cases),
        "overhead_median": round(statistics.median(overheads), 2) if overheads else None,
        "overhead_worst": round(max(overheads), 2) if overheads else None,
        "matrix_wall": round(matrix_wall, 1), "longest_case": round(longest, 1),
        "matrix_over_longest": round(matrix_wall / longest, 2) if longest else None,
        "lag_median": round(statistics.median(lags), 3) if lags else None,
        "lag_worst": round(max(lags), 3) if lags else None,
        **usage,
    }
    out["overhead_target_met"] = out["overhead_median"] is not None and out["overhead_median"] < OVERHEAD_TARGET
    out["matrix_target_met"] = out["matrix_over_longest"] is not None and out["matrix_over_longest"] <= MATRIX_TARGET
    return out


def usage_now() -> dict[str, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"harness_peak_rss_mib": round(me.ru_maxrss / 1024, 1), "harness_cpu_seconds": round(me.ru_utime + me.ru_stime, 1),
            "children_cpu_seconds": round(kids.ru_utime + kids.ru_stime, 1)}


def run(matrix: str, patterns: list[str] | None, backend: str, concurrency: int, out: Path | None = None) -> dict[str, Any]:
    cases = select(load_matrix(matrix), patterns, [backend])
    if not cases:
        raise SystemExit(f"no case of the matrix matches {patterns or '*'} on {backend}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    journal = Journal(REPORTS_DIR / f"bench-journal-{stamp}.jsonl")
    version, spans, errors = prefect_version(), {}, {}

    def timed(scenario, system):
        began = time.time()
        entry = run_scenario(scenario, system, journal, version)
        spans[(scenario.id, system.name)] = (began, time.time(), entry)
        return entry

    session = ChaosSession()
    scheduler = Scheduler(session, timed, concurrency)
    scheduler.planned = cases
    started = time.time()
    try:
        for case in plan(cases):
            try:
                scheduler.result(case)
            except Exception as exc:
                errors[f"{case[0].id}@{case[1]}"] = f"{type(exc).__name__}: {exc}"
        matrix_wall = time.time() - started
    finally:
        scheduler.close()
        session.close()
    figures = [case_figures(e, b, t) for b, t, e in spans.values()]
    result = {"prefect_version": version, "backend": backend, "concurrency": concurrency,
              "summary": summarize(figures, matrix_wall, usage_now()), "cases": figures, "errors": errors,
              "journal": str(journal.path)}
    path = out or REPORTS_DIR / f"bench-{stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    result["path"] = str(path)
    return result


def render(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [f"{'case':48} {'outcome':8} {'wall':>7} {'own':>7} {'overhead':>8} {'deploy':>7} {'collect':>7} "
             f"{'cleanup':>7} {'lag':>6}"]
    for c in sorted(result["cases"], key=lambda c: -c["wall"]):
        lag = "-" if c["lag"] is None else f"{c['lag']:.2f}"
        lines.append(f"{c['case']:48} {c['outcome']:8} {c['wall']:7.1f} {c['own']:7.1f} {c['overhead']:8.2f} "
                     f"{c['deploy'] or 0:7.2f} {c['collect'] or 0:7.2f} {c['cleanup']:7.2f} {lag:>6}")
    for case, why in result["errors"].items():
        lines.append(f"{case:48} error    {why}")
    met = {True: "met", False: "NOT met"}
    lines += [
        "",
        f"Prefect {result['prefect_version']}, backend {result['backend']}, concurrency {result['concurrency']}, {s['cases']} cases",
        f"harness overhead per case: median {s['overhead_median']} s, worst {s['overhead_worst']} s "
        f"(target: median < {OVERHEAD_TARGET:g} s: {met[s['overhead_target_met']]})",
        f"matrix wall time {s['matrix_wall']} s, longest case {s['longest_case']} s: {s['matrix_over_longest']}x "
        f"(target: <= {MATRIX_TARGET:g}x: {met[s['matrix_target_met']]})",
        f"state-observation lag: median {s['lag_median']} s, worst {s['lag_worst']} s",
        f"harness process: peak RSS {s['harness_peak_rss_mib']} MiB, CPU {s['harness_cpu_seconds']} s "
        f"(its children: {s['children_cpu_seconds']} CPU s)",
        f"figures: {result['path']}",
    ]
    return "\n".join(lines)
