"""Shards: the matrix's cases split into N parts of about equal duration, one per machine.

``partition`` is a longest-processing-time schedule: the cases, longest first, each given to the
shard with the least time so far.  A case's time is what its turn took in the newest journal that
ran it (``estimate``: from the case's turn to its journal line, the median where that journal has
several rounds; a shard's own journal counts once merged with the others), and its bound where no
journal has it.  The split is a pure function of the
cases and the journals, with ties broken by case id, so every shard job of a run computes the same
one from the same journals (the nightly restores one cache for all of them).  Each journal line
names its shard, the plan's fingerprint and the cases planned for the shard, so the merge (the
report over the shard journals) names a case that is missing or that ran twice.

Why not pytest-split (0.11, maintained; its ``least_duration`` is the same schedule): it reads
node-id durations that its own ``--store-durations`` writes from pytest's timings, into a file to
commit or to gather from every shard in an extra job; it gives a case it has not seen the average
duration, where a chaos case's bound says far more (5 s to 420 s here); and it loads that file
when pytest starts, before the matrix's cases exist.  The journals are already the record of what
each case took, and CI already keeps them.  pytest-shard splits by a hash of the node id, with
no durations at all.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from harness.model import journal as journal_mod

Key = tuple[str, str]  # (scenario id, backend)


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    of: int

    def __str__(self) -> str:
        return f"{self.index}/{self.of}"


def parse(text: str) -> Shard:
    """'2/4' -> Shard(2, 4); anything else is a ValueError that says what is wanted."""
    index, sep, of = str(text).partition("/")
    try:
        shard = Shard(int(index), int(of))
    except ValueError:
        shard = None
    if not sep or shard is None or not 1 <= shard.index <= shard.of:
        raise ValueError(f"{text!r} is not a shard: give I/N with 1 <= I <= N, e.g. 2/4")
    return shard


@dataclass(frozen=True)
class Estimate:
    seconds: float
    source: str  # the journal it was measured in, or "bound"


def case_seconds(entry: dict[str, Any]) -> float | None:
    """How long a journalled case's turn took: from its start to its journal line."""
    try:
        seconds = float(entry["finished_at"]) - float(entry["timing"]["turn_started_at"])
    except (KeyError, TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def journal_files(paths: Iterable[Path | str], exclude: Path | None = None) -> list[Path]:
    """The journals under ``paths`` (files, or directories holding ``journal-*.jsonl``), newest
    first: by the UTC stamp in the name, which sorts as time does, then by modification time."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found.update(p.glob("journal-*.jsonl"))
        elif p.is_file():
            found.add(p)
    if exclude is not None:
        found = {p for p in found if p.resolve() != exclude.resolve()}
    return sorted(found, key=lambda p: (p.name, p.stat().st_mtime), reverse=True)


def measured(journals: Iterable[Path], prefect_version: str | None = None) -> dict[Key, Estimate]:
    """Per case, its time in the newest journal that ran it (on ``prefect_version`` where a
    journal has that version's run of it, else on any).  A journal holding only some shards of a
    split run is skipped: that run is still going (the other shards, run after it, must plan as it
    did), and its times count once the shards are merged into one journal.  Unreadable lines and
    files are skipped: a missing measurement only falls back to the bound."""
    same: dict[Key, Estimate] = {}
    other: dict[Key, Estimate] = {}
    for path in journals:  # newest first: the first journal to have a case decides it
        times: dict[tuple[Key, bool], list[float]] = {}
        splits: dict[str, tuple[int, set[int]]] = {}  # plan -> (of, the shards this journal holds)
        try:
            for entry in journal_mod.read(path):
                seconds = case_seconds(entry) if isinstance(entry, dict) else None
                if seconds is None or not isinstance(entry.get("scenario"), str) or not isinstance(entry.get("backend"), str):
                    continue
                shard = entry.get("shard")
                if isinstance(shard, dict) and isinstance(shard.get("of"), int):
                    splits.setdefault(str(shard.get("plan")), (shard["of"], set()))[1].add(shard.get("index"))
                match = prefect_version is None or entry.get("prefect_version") == prefect_version
                times.setdefault(((entry["scenario"], entry["backend"]), match), []).append(seconds)
        except (OSError, UnicodeDecodeError):
            continue
        if any(held != set(range(1, of + 1)) for of, held in splits.values()):
            continue
        for (key, match), values in sorted(times.items()):
            into = same if match else other
            into.setdefault(key, Estimate(round(statistics.median(values), 1), str(path)))
    return {**other, **same}


def bound_seconds(scenario: Any, backend: str, prefect_version: str | None) -> float:
    """What a case may take at the most: its bound, its quiet period, and a bound per follow-up."""
    bound = scenario.expect.for_backend(backend, prefect_version).settle_within_seconds
    return float(bound * (1 + len(scenario.then)) + scenario.quiet_seconds)


def estimate(cases: list[tuple[Any, str]], journals: Iterable[Path], prefect_version: str | None) -> dict[Key, Estimate]:
    """Every case's expected time: measured where a journal has it, else its bound."""
    found = measured(journals, prefect_version)
    return {(s.id, b): found.get((s.id, b)) or Estimate(bound_seconds(s, b, prefect_version), "bound")
            for s, b in cases}


def partition(seconds: dict[Key, float], parts: int) -> list[list[Key]]:
    """The keys in ``parts`` groups, longest first each to the group with the least time so far
    (ties: the lower group).  Deterministic: the same times give the same groups everywhere."""
    if parts < 1:
        raise ValueError("a partition needs at least one part")
    groups: list[list[Key]] = [[] for _ in range(parts)]
    loads = [0.0] * parts
    for key in sorted(seconds, key=lambda k: (-seconds[k], k)):
        i = min(range(parts), key=lambda j: (loads[j], j))
        groups[i].append(key)
        loads[i] += seconds[key]
    return groups


def loads(groups: list[list[Key]], seconds: dict[Key, float]) -> list[float]:
    return [round(sum(seconds[k] for k in g), 1) for g in groups]


def ideal(seconds: dict[Key, float], parts: int) -> float:
    """No split can end sooner than this: an equal share of the time, or the longest case."""
    return max(sum(seconds.values()) / parts, max(seconds.values(), default=0.0))


def fingerprint(groups: list[list[Key]]) -> str:
    """A short id of a split: shards of one plan share it, a shard planned otherwise does not."""
    text = json.dumps([sorted(f"{s}@{b}" for s, b in g) for g in groups])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass
class Plan:
    """This shard's part of a split, and what its journal lines record of it."""

    shard: Shard
    groups: list[list[Key]]
    estimates: dict[Key, Estimate]

    @property
    def mine(self) -> list[Key]:
        return self.groups[self.shard.index - 1]

    @property
    def seconds(self) -> dict[Key, float]:
        return {k: e.seconds for k, e in self.estimates.items()}

    def record(self) -> dict[str, Any]:
        """The journal's ``shard`` field."""
        return {"index": self.shard.index, "of": self.shard.of, "plan": fingerprint(self.groups),
                "cases": sorted(f"{s}@{b}" for s, b in self.mine)}

    def describe(self) -> str:
        load = loads(self.groups, self.seconds)
        measured_n = sum(1 for k in self.mine if self.estimates[k].source != "bound")
        return (f"shard {self.shard}: {len(self.mine)} of {len(self.estimates)} cases, about "
                f"{load[self.shard.index - 1]:.0f} s ({measured_n} measured in earlier journals, "
                f"{len(self.mine) - measured_n} at their bound); the shards' estimates: "
                + ", ".join(f"{x:.0f} s" for x in load))


def plan(shard: Shard, cases: list[tuple[Any, str]], journals: Iterable[Path], prefect_version: str | None) -> Plan:
    estimates = estimate(cases, journals, prefect_version)
    return Plan(shard, partition({k: e.seconds for k, e in estimates.items()}, shard.of), estimates)
