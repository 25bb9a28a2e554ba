"""Reading results: a plain-text account of one journal entry (what failed, and the timeline).

The HTML reliability report builds on the same journal entries.
"""

from __future__ import annotations

from typing import Any

from harness.history import History


def describe(entry: dict[str, Any], timeline: bool = True) -> str:
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
    return "\n".join(lines)
