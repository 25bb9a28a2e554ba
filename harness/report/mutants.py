"""The report's section of seeded regressions: ``chaos-harness mutate``'s table, from its JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.report.svg import e

STATUS_CLASS = {"caught": "t-pass", "quiet": "t-pass", "pass": "t-pass", "survived": "t-fail",
                "false alarm": "t-fail", "fail": "t-fail"}


def read(path: Path | str) -> dict[str, Any]:
    """A mutate run's figures; a file that is not one is a ValueError naming it."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a mutate run's figures ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ValueError(f"{path}: not a mutate run's figures (no results)")
    return data


def section(summary: dict[str, Any]) -> str:
    rows = []
    for r in summary["results"]:
        verdicts = ", ".join(f"{c.split('@')[0]}: {v}" for c, v in (r.get("verdicts") or {}).items()) or "—"
        why = "; ".join(w for ws in (r.get("reasons") or {}).values() for w in ws[:1])
        note = r.get("note") if r.get("status") in ("does not apply", "not judged", "error") else ""
        rows.append(f"<tr><td><code>{e(r.get('mutant'))}</code>{' <span class=muted>(equivalent)</span>' if r.get('equivalent') else ''}"
                    f"<br><span class='small muted'>{e(r.get('what'))}</span></td>"
                    f"<td class='{STATUS_CLASS.get(r.get('status'), 't-unknown')}'>{e(r.get('status'))}</td>"
                    f"<td class='small'>{e(verdicts)}{('<br>' + e(why)) if why else ''}{('<br>' + e(note)) if note else ''}</td></tr>")
    return (f"<p class='small muted'>Seeded regressions of Prefect {e(summary.get('prefect_version'))}, each in a "
            "throwaway environment, against the rows meant to catch them (<code>chaos-harness mutate</code>).</p>"
            "<div class='scroll'><table><thead><tr><th>mutant</th><th>status</th><th>rows</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")
