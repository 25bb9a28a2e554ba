"""The data model of the reliability report, built from run journals alone.

``build(current, previous)`` reads journals (this run's, and earlier ones for the trend) and
returns a :class:`Report`: the matrix (scenario x (backend, Prefect version)), figures per fault
kind, claims, and the trend.  A line that cannot be used (torn, not JSON, missing a field) is
skipped and named in ``Report.problems``; a journal that cannot be read is named there too.
Nothing here raises on bad input, so a malformed journal gives a partial report, not a traceback.
Pure: no Prefect, no network, tested on hand-written journals.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

REQUIRED = ("scenario", "backend", "verdict", "history", "started_at")
Column = tuple[str, str]  # (backend, Prefect version)
Key = tuple[str, str, str]  # (scenario, backend, Prefect version)


@dataclass
class Entry:
    """One journal line: one scenario run on one backend."""

    scenario: str
    title: str
    backend: str
    prefect_version: str
    harness_version: str
    started_at: float
    outcome: str
    reasons: list[str]
    figures: dict[str, Any]
    claim: dict[str, Any] | None
    claim_verdict: str | None
    claim_reasons: list[str]
    expectation: dict[str, Any]
    history: dict[str, Any]
    source: str  # file:line
    logs: dict[str, Any] | None = None  # the logs it kept (a case that did not pass): dir (absolute), files, problems
    shard: dict[str, Any] | None = None  # the shard of a split run it ran in: index, of, plan, cases

    @property
    def column(self) -> Column:
        return (self.backend, self.prefect_version)

    @property
    def key(self) -> Key:
        return (self.scenario, self.backend, self.prefect_version)

    @property
    def unverified(self) -> str | None:
        """What the expectation rests on while no real run has confirmed it (None: measured)."""
        value = self.expectation.get("unverified")
        return value if isinstance(value, str) and value else None

    @property
    def fault_kinds(self) -> list[str]:
        return sorted({f.get("kind", "?") for f in self.history.get("faults", [])})

    @property
    def unchanged_as(self) -> str:
        """What must be equal for a changed verdict to count as flaky: versions and expectation."""
        return json.dumps([self.prefect_version, self.harness_version, self.expectation], sort_keys=True)


def _logs(raw: Any, journal_dir: Path | None) -> dict[str, Any] | None:
    """A journal line's ``logs``, its directory made absolute (it is written relative to the journal)."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("dir"), str):
        raise ValueError("logs is not an object with a dir")
    for name in ("files", "problems"):
        if not isinstance(raw.get(name) or [], list):
            raise ValueError(f"logs.{name} is not a list")
    where = Path(raw["dir"])
    if journal_dir is not None and not where.is_absolute():
        where = journal_dir / where
    return {"dir": str(where), "files": [str(f) for f in raw.get("files") or []],
            "problems": [str(p) for p in raw.get("problems") or []]}


def _entry(raw: Any, source: str, journal_dir: Path | None = None) -> Entry:
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    verdict = raw["verdict"] if isinstance(raw["verdict"], dict) else {}
    if verdict.get("outcome") not in ("pass", "fail", "unknown"):
        raise ValueError(f"verdict.outcome is {verdict.get('outcome')!r}")
    if not isinstance(raw["history"], dict):
        raise ValueError("history is not an object")
    figures = verdict.get("figures") or {}
    if not isinstance(figures, dict):
        raise ValueError("verdict.figures is not an object")
    for name in ("time_to_detect", "time_to_settle", "re_executions"):
        if figures.get(name) is not None and not isinstance(figures[name], (int, float)):
            raise ValueError(f"verdict.figures.{name} is not a number")
    for name in ("faults", "flow_runs", "ledger"):
        items = raw["history"].get(name, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ValueError(f"history.{name} is not a list of objects")
    if not isinstance(figures.get("overlaps") or [], list):
        raise ValueError("verdict.figures.overlaps is not a list")
    claim = raw.get("claim")
    if claim is not None and not isinstance(claim, dict):
        raise ValueError("claim is not an object")
    if not isinstance(raw.get("expectation") or {}, dict):
        raise ValueError("expectation is not an object")
    for name in ("reasons", "claim_reasons"):
        if not isinstance(verdict.get(name) or [], list):
            raise ValueError(f"verdict.{name} is not a list")
    return Entry(
        scenario=str(raw["scenario"]), title=str(raw.get("title") or ""), backend=str(raw["backend"]),
        prefect_version=str(raw.get("prefect_version") or "?"), harness_version=str(raw.get("harness_version") or "?"),
        started_at=float(raw["started_at"]), outcome=verdict["outcome"], reasons=[str(r) for r in verdict.get("reasons") or []],
        figures=dict(verdict.get("figures") or {}), claim=raw.get("claim") or None,
        claim_verdict=verdict.get("claim"), claim_reasons=[str(r) for r in verdict.get("claim_reasons") or []],
        expectation=dict(raw.get("expectation") or {}), history=raw["history"], source=source,
        logs=_logs(raw.get("logs"), journal_dir), shard=_shard(raw.get("shard")),
    )


def _shard(raw: Any) -> dict[str, Any] | None:
    """A line's ``shard``, or None where it has none or an unusable one (the result stands)."""
    if not isinstance(raw, dict):
        return None
    index, of, plan, cases = raw.get("index"), raw.get("of"), raw.get("plan"), raw.get("cases")
    if not (isinstance(index, int) and isinstance(of, int) and 1 <= index <= of and isinstance(plan, str)
            and isinstance(cases, list)):
        return None
    return {"index": index, "of": of, "plan": plan, "cases": [str(c) for c in cases]}


def shard_problems(entries: list[Entry]) -> list[str]:
    """What a merged split run lacks: shards that are missing, cases a present shard planned but
    did not finish, a case that ran in two shards, and shards planned differently (their splits
    came from different journals, so cases may be missing or doubled)."""
    plans: dict[str, dict[str, Any]] = {}
    for e in entries:
        if e.shard is None:
            continue
        p = plans.setdefault(e.shard["plan"], {"of": e.shard["of"], "indexes": set(), "planned": set(),
                                               "ran": defaultdict(set)})
        p["indexes"].add(e.shard["index"])
        p["planned"].update(e.shard["cases"])
        p["ran"][f"{e.scenario}@{e.backend}"].add(e.shard["index"])
    problems = []
    by_size: dict[int, list[str]] = defaultdict(list)
    for plan, p in sorted(plans.items()):
        by_size[p["of"]].append(plan)
        missing = sorted(set(range(1, p["of"] + 1)) - p["indexes"])
        if missing:
            shards = ", ".join(f"{i}/{p['of']}" for i in missing)
            problems.append(f"split run {plan}: shard(s) {shards} missing: "
                            "their cases are not in this report")
        unfinished = sorted(p["planned"] - set(p["ran"]))
        if unfinished:
            problems.append(f"split run {plan}: {len(unfinished)} planned case(s) did not finish: {', '.join(unfinished)}")
        twice = sorted(case for case, shards in p["ran"].items() if len(shards) > 1)
        if twice:
            problems.append(f"split run {plan}: case(s) ran in more than one shard: {', '.join(twice)}")
    for of, ids in sorted(by_size.items()):
        if len(ids) > 1:
            problems.append(f"shards of {of} from {len(ids)} different plans ({', '.join(ids)}): each split came "
                            "from other journals, so a case may be missing or doubled (give every shard the same "
                            "journals, --chaos-durations)")
    return problems


def load(path: Path | str, problems: list[str]) -> list[Entry]:
    """The usable entries of one journal; every skipped line or unreadable file goes to problems."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        problems.append(f"{path}: cannot be read ({exc.strerror or exc})")
        return []
    entries = []
    lines = text.splitlines()
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            entries.append(_entry(json.loads(raw), where, Path(path).resolve().parent))
        except json.JSONDecodeError:
            torn = number == len(lines) and not text.endswith("\n")
            problems.append(f"{where}: skipped, {'a torn last line (the run was cut off mid-write)' if torn else 'not JSON'}")
        except (ValueError, TypeError) as exc:
            problems.append(f"{where}: skipped, {exc}")
    if not entries and not any(p.startswith(str(path)) for p in problems):
        problems.append(f"{path}: no scenario results in it")
    return entries


@dataclass
class Cell:
    entries: list[Entry]

    @property
    def outcomes(self) -> Counter:
        return Counter(e.outcome for e in self.entries)

    @property
    def summary(self) -> str:
        """pass | fail | unknown, or mixed when repeats of this run disagree."""
        kinds = self.outcomes
        return next(iter(kinds)) if len(kinds) == 1 else "mixed"

    @property
    def latest(self) -> Entry:
        return max(self.entries, key=lambda e: e.started_at)


@dataclass
class Spread:
    n: int
    median: float | None
    worst: float | None


def spread(values: Iterable[float | None]) -> Spread:
    vals = [v for v in values if v is not None]
    return Spread(len(vals), round(statistics.median(vals), 3) if vals else None, max(vals) if vals else None)


@dataclass
class ClaimResult:
    text: str
    source: str
    scenarios: list[str]
    # per (scenario, backend, version): held | refuted | not tested, with the evidence
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        seen = {r["status"] for r in self.results}
        if "refuted" in seen:
            return "refuted" if "held" not in seen else "mixed"
        return "held" if "held" in seen else "not tested"


@dataclass
class Trend:
    newly_broke: list[dict[str, Any]] = field(default_factory=list)
    fixed: list[dict[str, Any]] = field(default_factory=list)
    flaky: list[dict[str, Any]] = field(default_factory=list)
    # key -> [(run start, time to detect)] over every journal, oldest first
    latency: dict[Key, list[tuple[float, float]]] = field(default_factory=dict)
    runs: int = 0


@dataclass
class Report:
    entries: list[Entry]
    previous: list[Entry]
    problems: list[str]
    sources: list[str]  # this run's journals
    previous_sources: list[str] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    cells: dict[tuple[str, Column], Cell] = field(default_factory=dict)
    by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    claims: list[ClaimResult] = field(default_factory=list)
    trend: Trend = field(default_factory=Trend)

    def titles(self) -> dict[str, str]:
        return {e.scenario: e.title for e in sorted(self.entries, key=lambda e: e.started_at)}

    def row_faults(self, scenario: str) -> list[str]:
        return sorted({k for e in self.entries if e.scenario == scenario for k in e.fault_kinds})

    def counts(self) -> Counter:
        return Counter(c.summary for c in self.cells.values())


def _counts(group: list[Entry]) -> dict[str, int]:
    return {
        "re_executions": sum(int(e.figures.get("re_executions") or 0) for e in group),
        "stuck": sum(1 for e in group if e.figures.get("stuck")),
        "flapping": sum(1 for e in group if e.figures.get("flapping")),
        "overlaps": sum(len(e.figures.get("overlaps") or []) for e in group),
    }


def _figures(entries: list[Entry]) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    by: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        for kind in e.fault_kinds or ["none"]:
            by[kind].append(e)
    kinds = {kind: {"runs": len(group),
                    "detect": spread(e.figures.get("time_to_detect") for e in group),
                    "settle": spread(e.figures.get("time_to_settle") for e in group),
                    **_counts(group)}
             for kind, group in sorted(by.items())}
    # an entry with two fault kinds is counted under each kind, but once in the totals
    return kinds, {"runs": len(entries), **_counts(entries)}


def _claims(entries: list[Entry]) -> list[ClaimResult]:
    found: dict[str, ClaimResult] = {}
    for e in sorted(entries, key=lambda e: (e.scenario, e.backend, e.started_at)):
        if not e.claim or not e.claim.get("text"):
            continue
        c = found.setdefault(e.claim["text"], ClaimResult(e.claim["text"], str(e.claim.get("source") or ""), []))
        if e.scenario not in c.scenarios:
            c.scenarios.append(e.scenario)
        status = e.claim_verdict if e.claim_verdict in ("held", "refuted") else "not tested"
        if e.outcome == "unknown":
            status = "not tested"  # a fault that never fired tests no claim
        c.results.append({"scenario": e.scenario, "backend": e.backend, "prefect_version": e.prefect_version,
                          "status": status, "evidence": e.claim_reasons, "source": e.source,
                          "observed": {k: e.figures.get(k) for k in ("final", "run_count", "executions")}})
    return sorted(found.values(), key=lambda c: c.text)


def _outcome(entries: list[Entry]) -> str:
    kinds = {e.outcome for e in entries}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _trend(current: list[Entry], previous: list[Entry]) -> Trend:
    trend = Trend()
    runs: dict[str, list[Entry]] = defaultdict(list)  # journal file -> entries
    for e in previous + current:
        runs[e.source.rsplit(":", 1)[0]].append(e)
    trend.runs = len(runs)
    current_files = {e.source.rsplit(":", 1)[0] for e in current}
    ordered = sorted(runs.items(), key=lambda kv: min(e.started_at for e in kv[1]))
    series: dict[Key, list[tuple[str, list[Entry]]]] = defaultdict(list)
    for name, group in ordered:
        per_key: dict[Key, list[Entry]] = defaultdict(list)
        for e in group:
            per_key[e.key].append(e)
        for key, es in per_key.items():
            series[key].append((name, es))
    for key, points in series.items():
        latency = [(min(e.started_at for e in es), statistics.median(ds))
                   for _, es in points if (ds := [e.figures["time_to_detect"] for e in es
                                                 if e.figures.get("time_to_detect") is not None])]
        if latency:
            trend.latency[key] = latency
        now = [es for name, es in points if name in current_files]
        before = [(name, es) for name, es in points if name not in current_files]
        label = {"scenario": key[0], "backend": key[1], "prefect_version": key[2]}
        if now and before:
            then_entries, now_entries = before[-1][1], [e for es in now for e in es]
            then_outcome, now_outcome = _outcome(then_entries), _outcome(now_entries)
            same = {e.unchanged_as for e in then_entries} == {e.unchanged_as for e in now_entries}
            change = {**label, "was": then_outcome, "now": now_outcome, "since": before[-1][0], "same_expectation": same}
            if then_outcome == "pass" and now_outcome in ("fail", "unknown", "mixed"):
                trend.newly_broke.append(change)
            elif then_outcome in ("fail", "unknown") and now_outcome == "pass":
                trend.fixed.append(change)
        # flaky: the verdict changed between two runs (or within one) with versions and expectation unchanged
        flat = sorted((e for _, es in points for e in es), key=lambda e: e.started_at)
        flips = [(a, b) for a, b in zip(flat, flat[1:]) if a.outcome != b.outcome and a.unchanged_as == b.unchanged_as]
        if flips:
            trend.flaky.append({**label, "outcomes": [e.outcome for e in flat], "flips": len(flips)})
    for lst in (trend.newly_broke, trend.fixed, trend.flaky):
        lst.sort(key=lambda d: (d["scenario"], d["backend"], d["prefect_version"]))
    return trend


def build(current: Iterable[Path | str], previous: Iterable[Path | str] = ()) -> Report:
    problems: list[str] = []
    current, previous = [str(p) for p in current], [str(p) for p in previous if str(p) not in map(str, current)]
    entries = [e for p in current for e in load(p, problems)]
    earlier = [e for p in previous for e in load(p, problems)]
    problems += shard_problems(entries)
    report = Report(entries, earlier, problems, current, previous)
    report.columns = sorted({e.column for e in entries})
    for e in entries:
        report.cells.setdefault((e.scenario, e.column), Cell([])).entries.append(e)
    report.rows = sorted({e.scenario for e in entries})
    for name, make in (("figures", lambda: _figures(entries)), ("claims", lambda: _claims(entries)),
                       ("trend", lambda: _trend(entries, earlier))):
        try:
            made = make()
        except Exception as exc:  # odd values deep in a journal: the rest of the report still stands
            problems.append(f"the {name} could not be computed ({type(exc).__name__}: {exc})")
            continue
        if name == "figures":
            report.by_kind, report.totals = made
        elif name == "claims":
            report.claims = made
        else:
            report.trend = made
    return report
