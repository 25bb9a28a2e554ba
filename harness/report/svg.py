"""The report's drawings and the escaping its HTML shares: a scenario's SVG timeline (state bands,
task executions, fault marks, the detection span) and the trend's sparkline."""

from __future__ import annotations

import html
import json
import time
from typing import Any

from harness.report.data import Entry

STATE_COLOURS = {
    "SCHEDULED": "#c9d3de", "PENDING": "#aebfd1", "RUNNING": "#4e8fd6", "COMPLETED": "#3c9a5f",
    "FAILED": "#d9534f", "CRASHED": "#b0306b", "CANCELLED": "#7a7a7a", "CANCELLING": "#9a9a9a",
    "PAUSED": "#e0a800",
}


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def anchor(scenario: str, backend: str, prefect_version: str) -> str:
    """The id of a scenario's detail (escaped), linked from the matrix and from the claims."""
    return e(f"d-{scenario}-{backend}-{prefect_version}".replace(".", "_"))


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def timeline_svg(entry: Entry) -> str:
    """Flow-run state bands, task executions from the ledger, fault marks, the detection span."""
    h = entry.history
    t0 = float(h.get("started_at") or entry.started_at)
    runs = h.get("flow_runs") or []
    ledger = [l for l in h.get("ledger") or [] if isinstance(l, dict) and "time" in l]
    faults = h.get("faults") or []
    times = [t0]
    times += [s["timestamp"] for r in runs for s in r.get("states", []) if s.get("timestamp")]
    times += [l["time"] for l in ledger]
    times += [f[k] for f in faults for k in ("injected_at", "healed_at") if f.get(k)]
    end = max(times) + 2
    span = max(end - t0, 1.0)
    left, width, lane = 150, 820, 22
    tasks: list[str] = []
    for l in ledger:
        if l.get("task") not in tasks:
            tasks.append(l.get("task"))
    lanes = len(runs) + len(tasks)
    height = 40 + lane * max(lanes, 1) + 30

    def x(t: float) -> float:
        return round(left + (t - t0) / span * width, 1)

    out = [f'<svg class="timeline" viewBox="0 0 {left + width + 20} {height}" role="img" '
           f'aria-label="timeline of {e(entry.scenario)} on {e(entry.backend)}" xmlns="http://www.w3.org/2000/svg">']
    # axis with ticks
    step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600) if span / s <= 12)
    axis_y = height - 22
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + width}" y2="{axis_y}" stroke="#888"/>')
    t = 0.0
    while t <= span:
        out.append(f'<line x1="{x(t0 + t)}" y1="{axis_y}" x2="{x(t0 + t)}" y2="{axis_y + 4}" stroke="#888"/>'
                   f'<text x="{x(t0 + t)}" y="{axis_y + 15}" text-anchor="middle">{t:g}s</text>')
        t += step
    y = 30
    for r in runs:
        states = [s for s in r.get("states", []) if s.get("timestamp")]
        label = f"{r.get('role', 'run')} {str(r.get('id', ''))[:8]}"
        out.append(f'<text x="4" y="{y + 14}">flow {e(label)}</text>')
        for i, s in enumerate(states):
            a = s["timestamp"]
            b = states[i + 1]["timestamp"] if i + 1 < len(states) else end
            colour = STATE_COLOURS.get(s.get("type"), "#bbb")
            out.append(f'<rect class="state" data-state="{e(s.get("type"))}" x="{x(a)}" y="{y}" '
                       f'width="{max(x(b) - x(a), 1.5)}" height="{lane - 4}" fill="{colour}">'
                       f'<title>{e(s.get("type"))}/{e(s.get("name"))} at {a - t0:.2f}s'
                       f'{": " + e(s.get("message")) if s.get("message") else ""}</title></rect>')
        y += lane
    for task in tasks:
        out.append(f'<text x="4" y="{y + 14}">task {e(task)}</text>')
        open_: dict[tuple, float] = {}
        for l in ledger:
            if l.get("task") != task:
                continue
            who = (l.get("host"), l.get("pid"), l.get("pstart"), l.get("attempt"), l.get("flow_run_id"))
            if l.get("event") == "start":
                open_[who] = l["time"]
            elif l.get("event") == "end" and who in open_:
                a = open_.pop(who)
                failed = bool(l.get("error"))
                out.append(f'<rect class="execution" x="{x(a)}" y="{y + 3}" width="{max(x(l["time"]) - x(a), 2)}" '
                           f'height="{lane - 10}" fill="{"#d9534f" if failed else "#5b6b7b"}">'
                           f'<title>{e(task)} pid {e(l.get("pid"))}: {a - t0:.2f}s to {l["time"] - t0:.2f}s'
                           f'{" raised " + e(l.get("error")) if failed else ""}</title></rect>')
        for who, a in open_.items():  # started, never ended: the process died inside the body
            out.append(f'<rect class="execution killed" x="{x(a)}" y="{y + 3}" width="{max(x(end) - x(a), 2)}" '
                       f'height="{lane - 10}" fill="none" stroke="#b0306b" stroke-dasharray="4 2">'
                       f'<title>{e(task)} pid {e(who[1])}: started at {a - t0:.2f}s, never ended</title></rect>')
        y += lane
    for f in faults:
        if f.get("injected_at"):
            xi = x(f["injected_at"])
            out.append(f'<line class="inject" x1="{xi}" y1="18" x2="{xi}" y2="{axis_y}" stroke="#c62828" stroke-width="2">'
                       f'<title>inject {e(f.get("kind"))} → {e(f.get("target"))} at {f["injected_at"] - t0:.2f}s'
                       f'{e(" on " + trigger) if (trigger := (f.get("detail") or {}).get("trigger")) else ""}</title></line>'
                       f'<text x="{xi + 3}" y="12" fill="#c62828">{e(f.get("kind"))}</text>')
        if f.get("healed_at"):
            xh = x(f["healed_at"])
            out.append(f'<line class="heal" x1="{xh}" y1="18" x2="{xh}" y2="{axis_y}" stroke="#2e7d4f" '
                       f'stroke-width="2" stroke-dasharray="5 3"><title>heal {e(f.get("kind"))} at '
                       f'{f["healed_at"] - t0:.2f}s</title></line>')
    ttd = entry.figures.get("time_to_detect")
    injected = [f["injected_at"] for f in faults if f.get("injected_at")]
    if ttd is not None and injected:
        a, b = x(min(injected)), x(min(injected) + ttd)
        out.append(f'<g class="detection"><line x1="{a}" y1="24" x2="{max(b, a + 2)}" y2="24" stroke="#6a3fb5" '
                   f'stroke-width="3"/><text x="{max(b, a + 2) + 4}" y="27" fill="#6a3fb5">detected in {ttd:.2f}s</text>'
                   f'<title>fault to the first state that reflects it: {ttd:.3f}s</title></g>')
    out.append("</svg>")
    return "".join(out)


def sparkline(points: list[tuple[float, float]]) -> str:
    """Detection latency over runs, oldest first: a small inline SVG line with its values."""
    w, h, pad = 160, 34, 4
    top = max(v for _, v in points) or 1.0
    n = len(points)
    xy = [(pad + (i * (w - 2 * pad) / max(n - 1, 1)), h - pad - v / top * (h - 2 * pad)) for i, (_, v) in enumerate(points)]
    path = " ".join(f"{a:.1f},{b:.1f}" for a, b in xy)
    dots = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="#4e8fd6"><title>'
                   f'{time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))}: {v:.2f}s</title></circle>'
                   for (a, b), (t, v) in zip(xy, points))
    return (f'<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg">'
            f'<polyline points="{path}" fill="none" stroke="#4e8fd6" stroke-width="1.5"/>{dots}</svg>')
