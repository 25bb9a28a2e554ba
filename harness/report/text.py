"""Reading results: a plain-text account of one journal entry (what failed, and the timeline).

The HTML reliability report builds on the same journal entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.model.history import History


def describe(entry: dict[str, Any], timeline: bool = True, journal: Path | None = None) -> str:
    """``journal``: the journal the entry is in (kept logs are named relative to its directory)."""
    verdict = entry["verdict"]
    fig = verdict["figures"]
    lines = [f"{entry['scenario']} on {entry['backend']} (Prefect {entry.get('prefect_version')}): "
             f"{verdict['outcome'].upper()}"]
    lines += [f"  - {reason}" for reason in verdict["reasons"]]
    lines.append(f"  observed: final={fig['final']}/{fig['final_name']} run_count={fig['run_count']} "
                 f"executions={fig['executions']} detect={fig['time_to_detect']}s settle={fig['time_to_settle']}s")
    if verdict.get("claim"):
        lines.append(f"  claim {verdict['claim']}: {entry['claim']['text']!r}")
    if timeline:
        history = History.from_dict(entry["history"])
        lines.append("  timeline (seconds from the run's creation):")
        for at, source, text in history.timeline():
            lines.append(f"    {at - history.started_at:7.2f}  {source:<24} {text[:160]}")
        lines += [f"  note: {n}" for n in history.notes]
    logs = entry.get("logs")
    if logs:
        where = journal.parent / logs["dir"] if journal is not None else f"{logs['dir']} (beside the journal)"
        lines.append(f"  logs kept in {where}: {', '.join(logs['files']) or 'none'}")
        lines += [f"    could not keep {p}" for p in logs.get("problems") or []]
    return "\n".join(lines)
