"""The benchmark's figures, from journal lines and CPU samples alone: a case's own time and the
harness's overhead, observation lag, the matrix against its CPU floor and longest case, shard
estimates, the concurrency to run at, verdicts against another run, CPU before and after."""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from harness.model.journal import REPORTS_DIR

OVERHEAD_TARGET = 1.0  # seconds, median


MATRIX_TARGET = 1.5  # matrix wall time / longest case: one machine (out of reach on few cores), or 8 shards


FLOOR_TARGET = 2.0  # matrix wall time / its CPU floor (the CPU it used over this machine's cores)


SHARD_COUNTS = (2, 4, 8)


def _tops(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The scenario's own flow runs (main and reruns) that have states."""
    return [r for r in entry["history"]["flow_runs"] if r["role"] in ("main", "rerun") and r["states"]]


def _created(tops: list[dict[str, Any]]) -> float:
    return min(r["states"][0]["timestamp"] for r in tops)


def own_time(entry: dict[str, Any]) -> float:
    """The scenario's own time: main run created -> the last thing the scenario waits for."""
    tops = _tops(entry)
    if not tops:
        return 0.0
    created = _created(tops)
    ends = [r["states"][-1]["timestamp"] for r in tops]
    ends += [f["healed_at"] for f in entry["history"]["faults"] if f.get("healed_at")]
    figures = entry["verdict"]["figures"]
    # a run that never settles (one run, or any of a storm's) holds the scenario to its bound
    if figures.get("stuck") or (figures.get("storm") or {}).get("stuck"):
        ends.append(created + entry["expectation"]["settle_within_seconds"])
    return max(ends) - created


def quiet_time(entry: dict[str, Any], own: float) -> float:
    """The part of the scenario's last quiet period after its own time: a run that changed
    during it (a late state) moved its own end into it."""
    timing = entry.get("timing") or {}
    quiet, since = timing.get("quiet") or 0.0, timing.get("quiet_from")
    tops = _tops(entry)
    if since is None or not tops:
        return quiet
    own_end = _created(tops) + own
    return max(0.0, since + quiet - max(since, own_end))


def observation_lag(entry: dict[str, Any]) -> float | None:
    seen = (entry.get("timing") or {}).get("terminal_seen_at")
    main = next((r for r in entry["history"]["flow_runs"] if r["role"] == "main"), None)
    if seen is None or main is None:
        return None
    terminal = [s["timestamp"] for s in main["states"] if s["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
    return seen - terminal[0] if terminal else None


def case_figures(entry: dict[str, Any], cleanup: float | None = None) -> dict[str, Any]:
    """One case's figures from its journal line: its turn (from when it began to when its result
    was journalled) against its own time; deploying and cleaning up, which may happen outside its
    turn (prepared ahead, cleaned up behind), are shown apart."""
    timing = entry.get("timing") or {}
    wall, own = entry["finished_at"] - timing["turn_started_at"], own_time(entry)
    quiet = quiet_time(entry, own)
    return {"case": f"{entry['scenario']}@{entry['backend']}", "outcome": entry["verdict"]["outcome"],
            "wall": round(wall, 2), "own": round(own, 2), "quiet": round(quiet, 2),
            "overhead": round(wall - own - quiet, 2), "overhead_with_quiet": round(wall - own, 2),
            "deploy": timing.get("deploy"), "deploy_waited": timing.get("deploy_waited"),
            "prepared_ahead": timing.get("prepared_ahead"), "follow_ups": timing.get("follow_ups"),
            "collect": timing.get("collect"), "cleanup": cleanup, "lag": observation_lag(entry),
            "polls": timing.get("polls"),  # None in a journal from before polls were counted
            "tracer": tracer_agrees(entry)}


def tracer_agrees(entry: dict[str, Any]) -> bool | None:
    """Whether the tracer counted the task-body executions the hand-kept ledger counted (by run
    name); None where there is nothing to compare: a journal from before the tracer, a flow of a
    user's own (its ledger is the tracer's), a case that executed no task body."""
    history = entry.get("history") or {}
    ledger = history.get("ledger") or []
    if "traced" not in history or any(line.get("tracer") for line in ledger):
        return None
    by_hand = Counter(line.get("task") for line in ledger if line.get("event") == "start")
    if not by_hand and not history["traced"]:
        return None
    return dict(by_hand) == history["traced"]


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _poll_figures(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The polls over all cases that counted them: how many the API left unanswered, and the
    longest any watch went without an answer (and whose)."""
    counted = [c for c in cases if c.get("polls")]
    if not counted:
        return {}
    blind = max(counted, key=lambda c: c["polls"]["blind"])
    return {"polls": sum(c["polls"]["count"] for c in counted),
            "polls_unanswered": sum(c["polls"]["unanswered"] for c in counted),
            "blind_worst": blind["polls"]["blind"], "blind_worst_case": blind["case"]}


def summarize(cases: list[dict[str, Any]], matrix_wall: float, usage: dict[str, float]) -> dict[str, Any]:
    overheads = [c["overhead"] for c in cases]
    lags = [c["lag"] for c in cases if c["lag"] is not None]
    longest = max((c["wall"] for c in cases), default=0.0)
    cores = os.cpu_count() or 1
    out = {
        "cases": len(cases),
        "overhead_median": _median(overheads),
        "overhead_worst": round(max(overheads), 2) if overheads else None,
        "overhead_with_quiet_median": _median([c["overhead_with_quiet"] for c in cases]),
        "deploy_median": _median([c["deploy"] for c in cases if c["deploy"] is not None]),
        "prepared_ahead": sum(1 for c in cases if c["prepared_ahead"]),
        "cleanup_median": _median([c["cleanup"] for c in cases if c["cleanup"] is not None]),
        "matrix_wall": round(matrix_wall, 1), "longest_case": round(longest, 1),
        "matrix_over_longest": round(matrix_wall / longest, 2) if longest else None,
        "lag_median": round(statistics.median(lags), 3) if lags else None,
        "lag_worst": round(max(lags), 3) if lags else None,
        **_poll_figures(cases),
        "cores": cores,
        **usage,
    }
    if "children_cpu_seconds" in usage:  # the least wall time the processes under test needed
        out["cpu_floor_seconds"] = round(usage["children_cpu_seconds"] / cores, 1)
        used = usage["children_cpu_seconds"] + usage.get("harness_cpu_seconds", 0.0)
        out["harness_cpu_share"] = round(usage.get("harness_cpu_seconds", 0.0) / used, 3) if used else None
        out["matrix_over_floor"] = round(matrix_wall / (used / cores), 2) if used else None
        out["floor_target_met"] = out["matrix_over_floor"] is not None and out["matrix_over_floor"] <= FLOOR_TARGET
        out.update(target_cores(used, longest, cores))
    out["overhead_target_met"] = out["overhead_median"] is not None and out["overhead_median"] < OVERHEAD_TARGET
    out["matrix_target_met"] = out["matrix_over_longest"] is not None and out["matrix_over_longest"] <= MATRIX_TARGET
    return out


def target_cores(cpu_seconds: float, longest: float, cores: int) -> dict[str, Any]:
    """Whether any schedule could meet the matrix target on ``cores``: within the target's wall time
    (1.5x the longest case) the cores must give the CPU seconds the matrix used (the harness and
    every process it started), even if packed perfectly.  The cores that would take at the least,
    and whether this machine has them: a lower bound, since the cases grow longer under load."""
    if not longest:
        return {}
    target_wall = MATRIX_TARGET * longest
    needed = max(1, math.ceil(cpu_seconds / target_wall))
    return {"target_wall_seconds": round(target_wall, 1), "target_cpu_seconds": round(cpu_seconds, 1),
            "target_cores_needed": needed, "matrix_target_reachable": needed <= cores}


def shard_estimates(cases: list[dict[str, Any]], startup: float, counts: tuple[int, ...] = SHARD_COUNTS,
                    parallelism: float = 1.0) -> list[dict[str, Any]]:
    """What the matrix would take as N shards (N machines, each running its cases as this run did,
    as the nightly's shard jobs run them: ``run`` at its auto concurrency): the split
    ``harness.run.shard`` makes of these cases' walls; a shard takes its cases' walls over
    ``parallelism`` (how many turns this run overlapped on average: the cases' walls over the
    matrix's wall; 1 one at a time), never less than its longest case, plus one session's start-up
    (a server and the first worker); against the longest case."""
    from harness.run import shard

    seconds = {c["case"]: c["wall"] for c in cases}
    longest = max(seconds.values(), default=0.0)
    parallelism = max(1.0, parallelism)

    def took(n: int) -> float:
        parts = shard.partition(seconds, n)
        return max(max(sum(seconds[k] for k in part) / parallelism, max((seconds[k] for k in part), default=0.0))
                   for part in parts) + startup

    out = []
    for n in counts:
        if not seconds:
            break
        wall = took(n)
        ratio = round(wall / longest, 2) if longest else None
        out.append({"shards": n, "wall": round(wall, 1), "over_longest": ratio, "parallelism": round(parallelism, 2),
                    "ideal": round(max(shard.ideal(seconds, n) / parallelism, longest) + startup, 1),
                    "target_met": None if n != max(counts) else ratio is not None and ratio <= MATRIX_TARGET})
    if out and out[-1]["target_met"] is False:
        # the fewest shards that would meet it (None: none can, the longest case and a start-up
        # already take longer), as the split would make them from these times
        out[-1]["shards_needed"] = next(
            (n for n in range(max(counts) + 1, len(seconds) + 1) if took(n) <= MATRIX_TARGET * longest), None)
    return out


# The cores one case keeps busy on average, as measured here (bench, 59 local cases, Prefect 3.9.1,
# 3 at once: 0.43): what ``pick_concurrency`` goes by where no benchmark of this machine exists yet.
MEASURED_DEMAND = 0.43


def auto_concurrency(cores: int | None = None, directory: Path = REPORTS_DIR) -> tuple[int, str]:
    """``--concurrency auto``: picked from the newest benchmark in ``directory``, or from
    ``MEASURED_DEMAND`` where there is none (a fresh clone)."""
    latest = newest("bench-*.json", directory)
    try:
        previous = json.loads(latest.read_text()) if latest else None
    except (OSError, ValueError):
        previous = None
    if previous is not None:
        previous.setdefault("path", str(latest))
    return pick_concurrency(previous, cores)


def pick_concurrency(previous: dict[str, Any] | None, cores: int | None = None) -> tuple[int, str]:
    """The concurrency for a run of the matrix here: the least that could bring its wall time
    within ``FLOOR_TARGET`` times its CPU floor, from what an earlier benchmark measured (the CPU
    the cases used per second of their turns: how many cores one case keeps busy).  More than that
    only loads the machine further, which changes what timing-bound rows see; with no earlier
    measurement, one case per core.  Returns it and why."""
    cores = cores or os.cpu_count() or 1
    s = (previous or {}).get("summary") or {}
    walls = sum(c.get("wall") or 0.0 for c in (previous or {}).get("cases") or [])
    used = (s.get("children_cpu_seconds") or 0.0) + (s.get("harness_cpu_seconds") or 0.0)
    if not walls or not used:
        chosen = max(1, math.ceil(cores / (FLOOR_TARGET * MEASURED_DEMAND)))
        return chosen, (f"no benchmark of this machine yet (python -m harness bench): a case keeps about "
                        f"{MEASURED_DEMAND} cores busy as measured on 2 cores, so {chosen} at once could end "
                        f"within {FLOOR_TARGET:g}x the CPU floor on {cores} cores")
    demand = used / walls
    chosen = max(1, math.ceil(cores / (FLOOR_TARGET * demand)))
    return chosen, (f"a case kept {demand:.2f} cores busy on average ({used:.0f} CPU s over {walls:.0f} s of turns, "
                    f"{previous.get('path', 'an earlier benchmark')}): {chosen} at once could end within "
                    f"{FLOOR_TARGET:g}x the CPU floor on {cores} cores")


def compare_verdicts(figures: list[dict[str, Any]], journal: Path) -> dict[str, Any]:
    """This run's verdicts against another run's journal (a sequential one): which cases differ."""
    from harness.model import journal as journal_mod

    then: dict[str, list[str]] = {}
    try:
        for e in journal_mod.read(journal):
            if isinstance(e, dict) and isinstance(e.get("verdict"), dict):
                then.setdefault(f"{e.get('scenario')}@{e.get('backend')}", []).append(e["verdict"].get("outcome"))
    except OSError as exc:
        return {"journal": str(journal), "error": str(exc)}
    differ = {c["case"]: {"now": c["outcome"], "then": then[c["case"]]} for c in figures
              if c["case"] in then and c["outcome"] not in then[c["case"]]}
    return {"journal": str(journal), "compared": sum(1 for c in figures if c["case"] in then), "differ": differ,
            "not_in_it": sorted(c["case"] for c in figures if c["case"] not in then)}


def newest(pattern: str, directory: Path = REPORTS_DIR) -> Path | None:
    found = sorted(directory.glob(pattern), key=lambda p: p.name)
    return found[-1] if found else None


def cpu_before_after(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """CPU seconds by role in two benchmark results (the harness's own as a role): (role, before, after)."""
    def roles(result: dict[str, Any]) -> dict[str, float]:
        out = {role: r["cpu_seconds"] for role, r in (result.get("cpu_by_role") or {}).items()}
        if "harness_cpu_seconds" in (result.get("summary") or {}):
            out["harness"] = result["summary"]["harness_cpu_seconds"]
        return out

    b, a = roles(before), roles(after)
    return [(role, b.get(role), a.get(role)) for role in sorted(set(b) | set(a), key=lambda r: -(b.get(r) or 0.0))]
