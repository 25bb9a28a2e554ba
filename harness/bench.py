"""The benchmark: how much time and memory the harness itself costs, in printed figures.

``python -m harness bench`` runs the selected cases (default: the whole local matrix) the way the
main job does, ``--concurrency`` at a time, each case's deployment prepared ``--ahead`` (as the
scheduler does), and prints per case and overall:

- harness overhead = the case's turn (from when it began, its worker deployed ahead or not, to its
  journal line) minus the scenario's own time: from the main flow run's creation to the last thing
  the scenario waits for (the last run's terminal state, the last fault's heal; the bound for a
  run that stays stuck), and minus the quiet period the scenario declares (``quiet_seconds``: it
  watches the settled run for a late change, as it waits its bound for a stuck one; only the part
  after the scenario's own time counts, should a late change have moved its end); median and
  worst, and the median counting the quiet period as harness time too.  Deploying (before the
  case's turn when it was prepared ahead; ``waited`` is what its turn still spent on it) and
  cleanup (after the journal line, while the next case runs) are shown beside it;
- the matrix's wall time (to the last cleanup) against its longest single case (target: at most
  1.5x), and the least time the processes under test needed on this machine's cores (their CPU
  seconds / cores); with it, how many cores the target needs at the least for the CPU the matrix
  used, so that a target no schedule can meet on this machine says so;
- state-observation lag: when the harness first saw the main run terminal, minus the time Prefect
  recorded that state; beside it how the polls went: how many the server did not answer (the
  harness asks it directly, not through the fault proxy: a server a scenario stops counts too)
  and the longest the harness went without an answer, from the creation of the case's runs on;
- the harness process's peak RSS and CPU seconds (and its children's);
- where the CPU went: every process of the session sampled each second, by role (the server, the
  workers, the flow-run processes, the task workers, a database, the harness itself), so the least
  time the matrix needs on this machine's cores can be read against what the harness costs.

``python -m harness bench --journal FILE`` prints the same figures for a run that already
happened (the main job's journal), without cleanup and usage, which a journal does not record.

Targets are printed beside the figures, never asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from harness import procs
from harness.journal import REPORTS_DIR, Journal
from harness.run import Runner
from harness.scenario import load_matrix, select
from harness.schedule import Scheduler, by_system, plan
from harness.session import ChaosSession, prefect_version

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
            "polls": timing.get("polls")}  # None in a journal from before polls were counted


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


def shard_estimates(cases: list[dict[str, Any]], startup: float, counts: tuple[int, ...] = SHARD_COUNTS
                    ) -> list[dict[str, Any]]:
    """What the matrix would take as N shards (N machines, each its cases one at a time, as the
    nightly's shard jobs run them): the split ``harness.shard`` makes of these cases' walls, its
    longest shard plus one session's start-up (a server and the first worker), against the
    longest case."""
    from harness import shard

    seconds = {c["case"]: c["wall"] for c in cases}
    longest = max(seconds.values(), default=0.0)
    out = []
    for n in counts:
        if not seconds:
            break
        wall = max(shard.loads(shard.partition(seconds, n), seconds)) + startup
        ratio = round(wall / longest, 2) if longest else None
        out.append({"shards": n, "wall": round(wall, 1), "over_longest": ratio,
                    "ideal": round(shard.ideal(seconds, n) + startup, 1),
                    "target_met": None if n != max(counts) else ratio is not None and ratio <= MATRIX_TARGET})
    return out


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
        return cores, f"one case per core ({cores}): no earlier benchmark to measure a case's CPU by"
    demand = used / walls
    chosen = max(1, math.ceil(cores / (FLOOR_TARGET * demand)))
    return chosen, (f"a case kept {demand:.2f} cores busy on average ({used:.0f} CPU s over {walls:.0f} s of turns, "
                    f"{previous.get('path', 'an earlier benchmark')}): {chosen} at once could end within "
                    f"{FLOOR_TARGET:g}x the CPU floor on {cores} cores")


def compare_verdicts(figures: list[dict[str, Any]], journal: Path) -> dict[str, Any]:
    """This run's verdicts against another run's journal (a sequential one): which cases differ."""
    from harness import journal as journal_mod

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


def usage_now() -> dict[str, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"harness_peak_rss_mib": round(me.ru_maxrss / 1024, 1), "harness_cpu_seconds": round(me.ru_utime + me.ru_stime, 1),
            "children_cpu_seconds": round(kids.ru_utime + kids.ru_stime, 1)}


ROLES = [  # (role, what its command line contains), the first match wins
    ("server", ("server start", "prefect.server")),
    ("worker", ("worker start",)),
    ("flow run", ("prefect.engine", "_workspace_supervisor", "flow-run execute")),
    ("task worker", ("task serve",)),
    ("database", ("postgres", "pg_ctl")),
]


def role_of(cmdline: list[str]) -> str:
    """The role of a process of the session, from its command line."""
    line = " ".join(cmdline)
    return next((role for role, marks in ROLES if any(m in line for m in marks)), "other")


class CpuSampler:
    """Each process of a session, sampled every ``interval`` seconds: its own CPU seconds (its
    children apart), summed by role.  A process's last moments after its last sample are missed
    (less than ``interval`` each); the exact total of the harness's children is ``usage_now``'s."""

    def __init__(self, session: str, interval: float = 1.0) -> None:
        self.session, self.interval = session, interval
        self.seen: dict[tuple[int, float], list] = {}  # (pid, start) -> [role, cpu seconds]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def sample(self) -> None:
        for proc in procs.find(self.session):
            try:
                with proc.oneshot():
                    key, times = (proc.pid, proc.create_time()), proc.cpu_times()
                    if key not in self.seen:
                        self.seen[key] = [role_of(proc.cmdline()), 0.0]
                    self.seen[key][1] = times.user + times.system
            except (psutil.Error, OSError):
                pass  # it ended between the scan and the read

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def by_role(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for role, cpu in self.seen.values():
            row = out.setdefault(role, {"processes": 0, "cpu_seconds": 0.0})
            row["processes"] += 1
            row["cpu_seconds"] = round(row["cpu_seconds"] + cpu, 1)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["cpu_seconds"]))


def run(matrix: str, patterns: list[str] | None, backend: str, concurrency: int | None, out: Path | None = None,
        ahead: int = 1, compare: Path | None = None, baseline: Path | None = None, tier: str = "full") -> dict[str, Any]:
    """Run the cases and measure; ``concurrency`` None picks it (``pick_concurrency``) from the
    newest earlier benchmark.  The verdicts are compared with ``compare`` (default: the newest
    journal, the main job's, which runs one case at a time) and the CPU by role with ``baseline``
    (an earlier benchmark's figures), if given."""
    cases = select(load_matrix(matrix), patterns, [backend], tier)
    previous = json.loads(baseline.read_text()) if baseline else None
    picked = None
    if concurrency is None:
        latest = newest("bench-*.json")
        concurrency, picked = pick_concurrency(json.loads(latest.read_text()) if latest else None)
    compare = compare or newest("journal-*.jsonl")
    if not cases:
        raise SystemExit(f"no case of the matrix matches {patterns or '*'} on {backend}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    journal = Journal(REPORTS_DIR / f"bench-journal-{stamp}.jsonl")
    version, entries, errors = prefect_version(), {}, {}
    session = ChaosSession()
    scheduler = Scheduler(session, Runner(journal, version), concurrency, ahead)
    order = plan(cases) if concurrency > 1 else by_system(cases)  # as the main job orders them
    scheduler.planned = order
    started = time.time()
    sampler = CpuSampler(session.id)
    try:
        with sampler:
            for case in order:
                try:
                    entries[(case[0].id, case[1])] = scheduler.result(case)
                except Exception as exc:
                    errors[f"{case[0].id}@{case[1]}"] = f"{type(exc).__name__}: {exc}"
    finally:
        failed = scheduler.close()  # the last cleanups are the matrix's time too
        matrix_wall = time.time() - started
        session.close()
    errors.update({f"{k[0]}@{k[1]} (cleanup)": why for k, why in failed.items()})
    figures = [case_figures(e, scheduler.cleanup_seconds.get(key)) for key, e in entries.items()]
    turns = [e["timing"]["turn_started_at"] for e in entries.values() if (e.get("timing") or {}).get("turn_started_at")]
    startup = round(min(turns) - started, 1) if turns else 0.0  # the server's start, before the first turn
    result = {"prefect_version": version, "backend": backend, "concurrency": concurrency, "concurrency_picked": picked,
              "ahead": ahead, "summary": summarize(figures, matrix_wall, usage_now()), "cpu_by_role": sampler.by_role(),
              "cases": figures, "errors": errors, "startup_seconds": startup,
              "shards": shard_estimates(figures, startup),
              "verdicts": compare_verdicts(figures, compare) if compare else None,
              "baseline": str(baseline) if baseline else None, "journal": str(journal.path)}
    if previous is not None:
        result["cpu_before_after"] = cpu_before_after(previous, result)
    path = out or REPORTS_DIR / f"bench-{stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    result["path"] = str(path)
    return result


def from_journal(path: Path) -> dict[str, Any]:
    """The benchmark's figures for a run that already happened (the main job's journal): the
    cases' turns and own times as journalled; cleanup and the processes' usage were not recorded."""
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    entries = [e for e in entries if (e.get("timing") or {}).get("turn_started_at") is not None]
    if not entries:
        raise SystemExit(f"{path}: no journal line with the timing the benchmark needs (turn_started_at)")
    figures = [case_figures(e) for e in entries]
    wall = max(e["finished_at"] for e in entries) - min(e["timing"]["turn_started_at"] for e in entries)
    versions = sorted({str(e.get("prefect_version")) for e in entries})
    return {"prefect_version": ", ".join(versions), "backend": ", ".join(sorted({e["backend"] for e in entries})),
            "concurrency": "as run", "ahead": "as run", "summary": summarize(figures, wall, {}), "cases": figures,
            "errors": {}, "journal": str(path), "path": str(path), "startup_seconds": None,
            "shards": shard_estimates(figures, 0.0)}


def _num(value: float | None, width: int, digits: int = 2) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def render(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [f"{'case':48} {'outcome':8} {'wall':>7} {'own':>7} {'quiet':>6} {'overhead':>8} {'deploy':>7} "
             f"{'waited':>7} {'ahead':>5} {'collect':>7} {'cleanup':>7} {'lag':>6}"]
    for c in sorted(result["cases"], key=lambda c: -c["wall"]):
        ahead = {True: "yes", False: "no", None: "-"}[c.get("prepared_ahead")]
        lines.append(f"{c['case']:48} {c['outcome']:8} {c['wall']:7.1f} {c['own']:7.1f} {_num(c.get('quiet'), 6, 1)} "
                     f"{c['overhead']:8.2f} {_num(c['deploy'], 7)} {_num(c.get('deploy_waited'), 7)} {ahead:>5} "
                     f"{_num(c['collect'], 7)} {_num(c['cleanup'], 7)} {_num(c['lag'], 6)}")
    for case, why in result["errors"].items():
        lines.append(f"{case:48} error    {why}")
    met = {True: "met", False: "NOT met"}
    floor = (f"; the processes under test used {s['children_cpu_seconds']} CPU s, at least {s['cpu_floor_seconds']} s "
             f"of {s['cores']} cores" if "cpu_floor_seconds" in s else "")
    cleanup = ("not in a journal" if s["cleanup_median"] is None else f"median {s['cleanup_median']} s")
    lines += [
        "",
        f"Prefect {result['prefect_version']}, backend {result['backend']}, concurrency {result['concurrency']}, "
        f"prepared ahead {result.get('ahead', '-')}, {s['cases']} cases",
        f"harness overhead per case (its turn minus its own time and quiet period): median {s['overhead_median']} s, "
        f"worst {s['overhead_worst']} s (target: median < {OVERHEAD_TARGET:g} s: {met[s['overhead_target_met']]})",
        f"  counting the quiet period as harness time: median {s['overhead_with_quiet_median']} s",
        f"  deploying: median {s['deploy_median']} s, {s['prepared_ahead']} of {s['cases']} cases deployed before "
        f"their turn; cleanup after the journal line: {cleanup}",
        f"matrix wall time {s['matrix_wall']} s, longest case {s['longest_case']} s: {s['matrix_over_longest']}x "
        f"(target: <= {MATRIX_TARGET:g}x: {met[s['matrix_target_met']]}){floor}",
        f"state-observation lag: median {s['lag_median']} s, worst {s['lag_worst']} s",
    ]
    if "polls" in s:
        lines.append(f"  polls: {s['polls_unanswered']} of {s['polls']} unanswered (a stopped server's too); the longest "
                     f"without an answer {s['blind_worst']} s ({s['blind_worst_case']})")
    if "harness_peak_rss_mib" in s:
        lines.append(f"harness process: peak RSS {s['harness_peak_rss_mib']} MiB, CPU {s['harness_cpu_seconds']} s "
                     f"(its children: {s['children_cpu_seconds']} CPU s)")
    if "target_cores_needed" in s:
        lines.append(
            f"  the {MATRIX_TARGET:g}x target means the matrix within {s['target_wall_seconds']} s; the CPU it used "
            f"({s['target_cpu_seconds']:.0f} s, the harness's and its children's) needs at least "
            f"{s['target_cores_needed']} cores for that, packed perfectly: {s['cores']} here, so "
            + ("some schedule might" if s["matrix_target_reachable"] else "no schedule can meet it on this machine"))
    if result.get("concurrency_picked"):
        lines.append(f"concurrency {result['concurrency']}, picked: {result['concurrency_picked']}")
    if s.get("matrix_over_floor") is not None:
        lines.append(f"matrix wall time against its CPU floor (the CPU it used over {s['cores']} cores): "
                     f"{s['matrix_over_floor']}x (target: <= {FLOOR_TARGET:g}x: {met[s['floor_target_met']]}); "
                     f"the harness's own share of that CPU: {100 * (s.get('harness_cpu_share') or 0):.1f}%")
    verdicts = result.get("verdicts")
    if verdicts and "error" not in verdicts:
        differ = verdicts["differ"]
        lines.append(f"verdicts against {verdicts['journal']}: {verdicts['compared'] - len(differ)} of "
                     f"{verdicts['compared']} the same" + (": every one" if not differ else
                     "; differ: " + ", ".join(f"{k} {v['now']} (was {'/'.join(v['then'])})" for k, v in differ.items()))
                     + (f"; not in it: {len(verdicts['not_in_it'])}" if verdicts["not_in_it"] else ""))
    for est in result.get("shards") or []:
        startup = result.get("startup_seconds")
        target = "" if est["target_met"] is None else \
            f" (target: <= {MATRIX_TARGET:g}x: {met[est['target_met']]})"
        lines.append(f"as {est['shards']} shards: {est['wall']} s (the split's longest shard"
                     + (f" + {startup} s start-up" if startup else ", no start-up counted") +
                     f"; ideal {est['ideal']} s), {est['over_longest']}x the longest case{target}")
    if result.get("cpu_before_after"):
        lines.append(f"CPU by role, before ({result.get('baseline')}) -> now: " + ", ".join(
            f"{role} {_num(b, 1, 0).strip()} -> {_num(a, 1, 0).strip()} s" for role, b, a in result["cpu_before_after"]))
    if result.get("cpu_by_role"):
        usage = dict(result["cpu_by_role"])
        if "harness_cpu_seconds" in s:
            usage["harness"] = {"processes": 1, "cpu_seconds": s["harness_cpu_seconds"]}
        total = sum(r["cpu_seconds"] for r in usage.values())
        lines.append(f"CPU by role (sampled each second): {total:.0f} CPU s, at least {total / s['cores']:.0f} s of "
                     f"{s['cores']} cores: " + ", ".join(
                         f"{role} {r['cpu_seconds']:.0f} s ({r['processes']} processes)" for role, r in usage.items()))
    lines.append(f"figures: {result['path']}")
    return "\n".join(lines)
