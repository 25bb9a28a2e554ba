"""The report's drawings and the escaping its HTML shares: a scenario's SVG timeline (state bands,
task executions, fault marks, the detection span) and the trend's sparkline."""

from __future__ import annotations

import html
import json
import time
import zlib
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


# -- the timeline ------------------------------------------------------------------------------
# One lane per process the harness knows (each flow run, each task's executions, the worker, the
# server, and the task workers, database or node where a fault touches one), as Jepsen's
# timeline gives each process its own; faults that last (a freeze, an outage, an API fault, a
# database down) are spans in their target's lane, named; those that do not (a kill) are a mark
# across every lane.  The start-up before the first fault (Scheduled, Pending, the worker's
# submission: most of a case's time) is folded into one narrow segment, which a click unfolds.
LEFT, WIDTH, LANE, TOP = 150, 820, 22, 34
RIGHT = LEFT + WIDTH  # the plot's right edge; the drawing is RIGHT + 20 wide
FOLD_WIDTH = 112  # the folded start-up's share of the plot
CHAR = 6.6  # an 11 px system-ui character's width, generously: labels are kept inside by it
INSTANT = {"kill", "terminate", "oom", "kill-worker", "evict", "cancel"}  # faults with no window
LANE_OF = {"flow-run": "flow", "worker": "worker", "server": "server", "api": "server",
           "database": "database", "task-worker": "task workers", "node": "node"}


def text_width(text: str) -> float:
    return len(text) * CHAR + 2


def clip(text: str, width: float) -> str:
    """``text`` cut to fit ``width`` pixels, with an ellipsis (its whole is in the element's title)."""
    most = max(int((width - 2) / CHAR), 1)
    return text if len(text) <= most else text[:max(most - 1, 1)] + "…"


def placed(x: float, y: float, text: str, cls: str = "", colour: str | None = None,
           low: float = LEFT, high: float = RIGHT + 16) -> str:
    """A label at ``x`` kept inside [low, high]: right of x if it fits, else ending at x, else
    clipped; never past the drawing's edge."""
    w = text_width(text)
    if x + 3 + w <= high:
        at, anchor_ = x + 3, "start"
    elif x - 3 - w >= low:
        at, anchor_ = x - 3, "end"
    else:
        text, at, anchor_ = clip(text, high - low), low, "start"
    fill = f' fill="{colour}"' if colour else ""
    return (f'<text class="{cls}" x="{round(at, 1)}" y="{y}" text-anchor="{anchor_}"{fill}>{e(text)}</text>')


class Axis:
    """Seconds since the case began -> x: linear, or with [t0, fold) squeezed into FOLD_WIDTH."""

    def __init__(self, t0: float, end: float, fold: float | None):
        self.t0, self.end, self.fold = t0, end, fold
        self.segments = ([(t0, fold, LEFT, LEFT + FOLD_WIDTH), (fold, end, LEFT + FOLD_WIDTH, RIGHT)]
                         if fold is not None else [(t0, end, LEFT, RIGHT)])

    def x(self, t: float) -> float:
        t = min(max(t, self.t0), self.end)
        for a, b, xa, xb in self.segments:
            if t <= b:
                return round(xa + (t - a) / max(b - a, 1e-9) * (xb - xa), 1)
        return float(RIGHT)

    @property
    def shown_from(self) -> float:
        """The first second drawn at full scale."""
        return self.fold if self.fold is not None else self.t0


def fold_point(entry: Entry, bounds: tuple[float, float] | None = None) -> float | None:
    """Where the folded start-up ends: a few seconds before the first fault (10% of what follows
    it, at least 3 s), when that start-up is worth folding (over 5 s and a fifth of the case).
    ``bounds``: ``_bounds(entry)``, where the caller has it already."""
    h = entry.history
    t0, end = bounds or _bounds(entry)
    injected = [f["injected_at"] for f in h.get("faults") or [] if f.get("injected_at")]
    if not injected:
        return None
    first = min(injected)
    fold = first - max(3.0, 0.1 * (end - first))
    return fold if fold - t0 > max(5.0, 0.2 * (end - t0)) else None


def _bounds(entry: Entry) -> tuple[float, float]:
    h = entry.history
    t0 = float(h.get("started_at") or entry.started_at)
    times = [t0]
    times += [s["timestamp"] for r in h.get("flow_runs") or [] for s in r.get("states", []) if s.get("timestamp")]
    times += [l["time"] for l in h.get("ledger") or [] if isinstance(l, dict) and "time" in l]
    times += [f[k] for f in h.get("faults") or [] for k in ("injected_at", "healed_at") if f.get(k)]
    return t0, max(times) + 2


def _lanes(entry: Entry) -> list[tuple[str, str, str]]:
    """(key, label, title) of every lane, top to bottom."""
    h = entry.history
    lanes = []
    for r in h.get("flow_runs") or []:
        lanes.append((f"run:{r.get('id')}", f"flow {r.get('role', 'run')} {str(r.get('id', ''))[:8]}",
                      f"flow run {r.get('id')} ({r.get('role', 'run')})"))
    seen: list[str] = []
    for l in h.get("ledger") or []:
        if isinstance(l, dict) and "time" in l and l.get("task") not in seen:
            seen.append(l.get("task"))
    lanes += [(f"task:{t}", f"task {t}", f"executions of task {t} (from the ledger)") for t in seen]
    targets = {LANE_OF.get(f.get("target"), f.get("target")) for f in h.get("faults") or []}
    has_task_workers = any("task_worker" in i for i in h.get("infrastructure") or [])
    for name in ("worker", "server", "database", "task workers", "node"):
        if name in ("worker", "server") or name in targets or (name == "task workers" and has_task_workers):
            lanes.append((name, name, f"the {name}: the faults it met"))
    return lanes


def _fault_label(f: dict) -> str:
    kind = f.get("kind", "?")
    if f.get("injected_at") and f.get("healed_at"):
        return f"{kind} {f['healed_at'] - f['injected_at']:.0f}s"
    return str(kind)


def timeline_svg(entry: Entry, folded: bool = True) -> str:
    """The case's timeline: lanes, state bands, executions, fault spans and marks, detection."""
    h = entry.history
    t0, end = _bounds(entry)
    fold = fold_point(entry, (t0, end))
    axis = Axis(t0, end, fold if folded else None)
    x = axis.x
    runs = h.get("flow_runs") or []
    ledger = [l for l in h.get("ledger") or [] if isinstance(l, dict) and "time" in l]
    faults = h.get("faults") or []
    lanes = _lanes(entry)
    row = {key: TOP + i * LANE for i, (key, _, _) in enumerate(lanes)}
    height = TOP + LANE * max(len(lanes), 1) + 28
    axis_y = height - 24
    cls = "timeline folded" if axis.fold is not None else "timeline"
    out = [f'<svg class="{cls}" viewBox="0 0 {RIGHT + 20} {height}" role="img" '
           f'aria-label="timeline of {e(entry.scenario)} on {e(entry.backend)}" xmlns="http://www.w3.org/2000/svg">']
    for i, (key, label, title) in enumerate(lanes):
        y = row[key]
        if i % 2:
            out.append(f'<rect class="lane" x="0" y="{y - 1}" width="{RIGHT + 20}" height="{LANE}" fill="#f6f8fa"/>')
        out.append(f'<text class="lane-label" x="4" y="{y + 14}">{e(clip(label, LEFT - 8))}<title>{e(title)}</title></text>')
        if key in ("worker", "server", "database", "task workers", "node"):  # alive throughout, unless a fault says
            out.append(f'<line class="alive" x1="{LEFT}" y1="{y + 10}" x2="{RIGHT}" y2="{y + 10}" stroke="#b8c2cc"/>')
    # the axis: ticks over the part drawn at full scale
    shown = end - axis.shown_from
    step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600) if shown / s <= 10)
    out.append(f'<line x1="{LEFT}" y1="{axis_y}" x2="{RIGHT}" y2="{axis_y}" stroke="#888"/>')
    t = (int((axis.shown_from - t0) / step) + 1) * step if axis.fold is not None else 0.0
    while t0 + t <= end:
        out.append(f'<line x1="{x(t0 + t)}" y1="{axis_y}" x2="{x(t0 + t)}" y2="{axis_y + 4}" stroke="#888"/>'
                   f'<text class="tick" x="{x(t0 + t)}" y="{axis_y + 15}" text-anchor="middle">{t:g}s</text>')
        t += step
    for r in runs:
        y = row[f"run:{r.get('id')}"]
        states = [s for s in r.get("states", []) if s.get("timestamp")]
        for i, s in enumerate(states):
            a = s["timestamp"]
            b = states[i + 1]["timestamp"] if i + 1 < len(states) else end
            colour = STATE_COLOURS.get(s.get("type"), "#bbb")
            out.append(f'<rect class="state" data-state="{e(s.get("type"))}" x="{x(a)}" y="{y}" '
                       f'width="{max(x(b) - x(a), 1.5)}" height="{LANE - 4}" fill="{colour}">'
                       f'<title>{e(s.get("type"))}/{e(s.get("name"))} at {a - t0:.2f}s'
                       f'{": " + e(s.get("message")) if s.get("message") else ""}</title></rect>')
    for task in [k[5:] for k, _, _ in lanes if k.startswith("task:")]:
        y = row[f"task:{task}"]
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
                           f'height="{LANE - 10}" fill="{"#d9534f" if failed else "#5b6b7b"}">'
                           f'<title>{e(task)} pid {e(l.get("pid"))}: {a - t0:.2f}s to {l["time"] - t0:.2f}s'
                           f'{" raised " + e(l.get("error")) if failed else ""}</title></rect>')
        for who, a in open_.items():  # started, never ended: the process died inside the body
            out.append(f'<rect class="execution killed" x="{x(a)}" y="{y + 3}" width="{max(x(end) - x(a), 2)}" '
                       f'height="{LANE - 10}" fill="none" stroke="#b0306b" stroke-dasharray="4 2">'
                       f'<title>{e(task)} pid {e(who[1])}: started at {a - t0:.2f}s, never ended</title></rect>')
    first_run = next((k for k, _, _ in lanes if k.startswith("run:")), None)
    for f in faults:
        if not f.get("injected_at"):
            continue
        lane = LANE_OF.get(f.get("target"), f.get("target"))
        y = row.get(first_run if lane == "flow" else lane, TOP)
        a = f["injected_at"]
        xi = x(a)
        trigger = (f.get("detail") or {}).get("trigger")
        what = (f'{e(f.get("kind"))} → {e(f.get("target"))} at {a - t0:.2f}s{e(" on " + trigger) if trigger else ""}'
                + (f', healed at {f["healed_at"] - t0:.2f}s' if f.get("healed_at") else ""))
        out.append(f'<line class="inject" x1="{xi}" y1="{TOP - 4}" x2="{xi}" y2="{axis_y}" stroke="#c62828" '
                   f'stroke-width="2"><title>inject {what}</title></line>')
        if f.get("kind") not in INSTANT:  # a window: to its heal, or to the case's end
            b = f.get("healed_at") or end
            out.append(f'<rect class="fault-window" data-kind="{e(f.get("kind"))}" x="{xi}" y="{y + 1}" '
                       f'width="{max(x(b) - xi, 2)}" height="{LANE - 6}" fill="#c62828" fill-opacity=".16" '
                       f'stroke="#c62828" stroke-dasharray="3 2"><title>{what}</title></rect>')
        out.append(placed(xi, y + 14, _fault_label(f), "fault-label", "#a11d1d"))
        if f.get("healed_at"):
            xh = x(f["healed_at"])
            out.append(f'<line class="heal" x1="{xh}" y1="{TOP - 4}" x2="{xh}" y2="{axis_y}" stroke="#2e7d4f" '
                       f'stroke-width="2" stroke-dasharray="5 3"><title>heal {e(f.get("kind"))} at '
                       f'{f["healed_at"] - t0:.2f}s</title></line>')
    ttd = entry.figures.get("time_to_detect")
    injected = [f["injected_at"] for f in faults if f.get("injected_at")]
    if ttd is not None and injected:
        a, b = x(min(injected)), x(min(injected) + ttd)
        out.append(f'<g class="detection"><title>fault to the first state that reflects it: {ttd:.3f}s</title>'
                   f'<line x1="{a}" y1="{TOP - 8}" x2="{max(b, a + 2)}" y2="{TOP - 8}" stroke="#6a3fb5" '
                   f'stroke-width="3"/>{placed(max(b, a + 2), TOP - 13, f"detected in {ttd:.2f}s", "", "#6a3fb5")}</g>')
    if axis.fold is not None:  # the folded start-up: hatched, labelled, a click unfolds it
        fold_x = LEFT + FOLD_WIDTH
        hatch = f"hatch-{zlib.crc32(anchor(*entry.key).encode()):08x}"  # one page holds many drawings
        out.append(f'<g class="fold" data-unfold tabindex="0" role="button" style="cursor:pointer">'
                   f'<title>start-up, {axis.fold - t0:.0f} s folded: click to show it at full scale</title>'
                   f'<rect x="{LEFT}" y="{TOP - 4}" width="{FOLD_WIDTH}" height="{axis_y - TOP + 4}" '
                   f'fill="url(#{hatch})" stroke="#9aa5b1"/>'
                   f'<text class="fold-label" x="{LEFT + 4}" y="{axis_y + 15}">{e(clip(f"start-up {axis.fold - t0:.0f}s ▸", FOLD_WIDTH - 6))}</text>'
                   f'</g><line x1="{fold_x}" y1="{TOP - 4}" x2="{fold_x}" y2="{axis_y}" stroke="#9aa5b1"/>')
        out.insert(1, f'<defs><pattern id="{hatch}" width="6" height="6" patternUnits="userSpaceOnUse" '
                      'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff" fill-opacity=".55"/>'
                      '<line x1="0" y1="0" x2="0" y2="6" stroke="#c3ccd5" stroke-width="2"/></pattern></defs>')
    elif fold is not None:  # drawn whole, where a folded drawing stands beside it
        out.append(f'<text class="fold-label" data-fold tabindex="0" role="button" style="cursor:pointer" '
                   f'x="4" y="{TOP - 13}" fill="#4a5866">◂ fold the start-up</text>')
    out.append("</svg>")
    return "".join(out)


def timeline_html(entry: Entry) -> str:
    """The timeline as the report shows it: folded at first where there is a start-up to fold,
    with the whole of it beside, shown instead on a click (and in print, the folded one)."""
    if fold_point(entry) is None:
        return timeline_svg(entry, folded=False)
    return (f'<div class="tl">{timeline_svg(entry, folded=True)}'
            f'<div class="tl-full" hidden>{timeline_svg(entry, folded=False)}</div></div>')


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
