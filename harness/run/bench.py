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
import resource
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from harness.model.journal import REPORTS_DIR, Journal
from harness.model.matrix import load_matrix, select
from harness.run.case import Runner
from harness.run.figures import (FLOOR_TARGET, MATRIX_TARGET, OVERHEAD_TARGET, auto_concurrency, case_figures,
                                 compare_verdicts, cpu_before_after, newest, shard_estimates, summarize)
from harness.run.schedule import Scheduler, by_system, plan
from harness.run.session import ChaosSession, prefect_version
from harness.sut import procs


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
        concurrency, picked = auto_concurrency()
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
              "shards": shard_estimates(figures, startup, parallelism=overlap(figures, matrix_wall - startup)),
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
            "shards": shard_estimates(figures, 0.0, parallelism=overlap(figures, wall))}


def overlap(figures: list[dict[str, Any]], wall: float) -> float:
    """How many cases' turns ran at once on average: their walls over the matrix's wall."""
    return sum(c["wall"] for c in figures) / wall if wall > 0 else 1.0


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
    compared = [c for c in result["cases"] if c.get("tracer") is not None]
    if compared:
        differ = [c["case"] for c in compared if not c["tracer"]]
        lines.append(f"execution tracer: its counts equal the hand-kept ledger's on {len(compared) - len(differ)} of "
                     f"{len(compared)} cases that executed task bodies" + (f"; differ: {', '.join(differ)}" if differ else ""))
    for est in result.get("shards") or []:
        startup = result.get("startup_seconds")
        target = "" if est["target_met"] is None else \
            f" (target: <= {MATRIX_TARGET:g}x: {met[est['target_met']]})"
        if "shards_needed" in est:
            target += (f"; {est['shards_needed']} shards would meet it" if est["shards_needed"] else
                       "; no number of shards can: the longest case and a start-up already take longer")
        each = (f", each {est['parallelism']:g} cases' turns at once as here" if est.get("parallelism", 1) > 1
                else ", each one case at a time")
        lines.append(f"as {est['shards']} shards: {est['wall']} s (the split's longest shard{each}"
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
