"""What a person watching a run reads: a line when a case starts, when each of its faults fires
and heals, and when it ends (its verdict, its claim, how fast Prefect detected the fault and
settled), each end followed by how many cases are done, the time so far and the time left, from
the earlier journals' durations; at the end, the refuted claims, the stuck runs and the failed
verdicts, each with its journal line.

The cases emit events (``emit``) wherever they run, in whatever thread; a listener (the pytest
plugin's: ``Console`` writing through pytest's terminal reporter) turns them into lines.  Plain
text, no control characters: the same in a terminal and in a CI log.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

_listeners: list[Callable[[str, dict[str, Any]], None]] = []
_lock = threading.Lock()


def listen(listener: Callable[[str, dict[str, Any]], None]) -> None:
    with _lock:
        _listeners.append(listener)


def unlisten(listener: Callable[[str, dict[str, Any]], None]) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def emit(event: str, **data: Any) -> None:
    """An event of a case (``start``, ``fault``, ``heal``, ``end``); a listener's failure never
    reaches the case."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(event, data)
        except Exception:
            pass


def clock(seconds: float) -> str:
    """1:02:03, 4:05: a duration as a person reads it."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _num(value: Any, unit: str = " s") -> str:
    return f"{value:.1f}{unit}" if isinstance(value, (int, float)) else "-"


def brief(entry: dict[str, Any]) -> dict[str, Any]:
    """What a case's end line needs of its journal line (not its history): for an xdist report."""
    verdict = entry.get("verdict") or {}
    return {"scenario": entry.get("scenario"), "backend": entry.get("backend"),
            "verdict": {k: verdict.get(k) for k in ("outcome", "claim", "reasons")} | {
                "figures": {k: (verdict.get("figures") or {}).get(k)
                            for k in ("final", "stuck", "time_to_detect", "time_to_settle")}}}


def end_summary(entry: dict[str, Any]) -> str:
    """verdict, claim, detection and settling of a journal line, in one short phrase."""
    verdict = entry.get("verdict") or {}
    fig = verdict.get("figures") or {}
    parts = [verdict.get("outcome", "?").upper(), f"final {fig.get('final') or '-'}"]
    if verdict.get("claim"):
        parts.append(f"claim {verdict['claim']}")
    if fig.get("stuck"):
        parts.append("STUCK")
    if fig.get("time_to_detect") is not None:
        parts.append(f"detected in {_num(fig['time_to_detect'])}")
    if fig.get("time_to_settle") is not None:
        parts.append(f"settled in {_num(fig['time_to_settle'])}")
    return ", ".join(parts)


class Console:
    """Events as lines, through ``write(line)``.  ``estimates``: each case's expected seconds
    (``harness.run.shard.estimate``: its time in an earlier journal, else its bound), for the
    time left; ``concurrency``: how many run at once."""

    def __init__(self, write: Callable[[str], None], cases: list[tuple[str, str]],
                 estimates: dict[tuple[str, str], float], concurrency: int = 1):
        self.write, self.estimates = write, estimates
        self.total, self.concurrency = len(cases), max(1, concurrency)
        self.left = {c: estimates.get(c, 0.0) for c in cases}
        self.since: dict[tuple[str, str], float] = {}  # cases running: when they started
        self.done, self.began = 0, time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        case = data.get("case", "?")
        if event == "start":
            with self._lock:
                self.since[tuple(case.rsplit("@", 1))] = time.monotonic()  # type: ignore[index]
            self.write(f"  start   {case}  (bound {data.get('bound', 0):g} s)")
        elif event in ("fault", "heal"):
            what = f"{data.get('kind')} -> {data.get('target')}"
            error = f"  FAILED: {data['error']}" if data.get("error") else ""
            verb = "fault  " if event == "fault" else "healed "
            self.write(f"  {verb} {case}  {what} at +{_num(data.get('at'))}{error}")
        elif event == "end":
            self.ended(case, data.get("entry") or {}, data.get("line"))

    def ended(self, case: str, entry: dict[str, Any], line: int | None) -> None:
        """A case's end line; then, for a case of the plan, the count and the time left (a run of
        the ``chaos`` fixture is not one of the counted cases: its end line is all)."""
        with self._lock:
            key = (entry.get("scenario"), entry.get("backend"))
            planned = key in self.left
            self.done += planned
            self.left.pop(key, None)
            self.since.pop(key, None)
            now = time.monotonic()
            # what is left of each case: a running one's estimate less the time it has run already
            work = sum(max(seconds - (now - self.since[k]), 0.0) if k in self.since else seconds
                       for k, seconds in self.left.items())
            done, left = self.done, work / min(self.concurrency, max(1, len(self.left)))
        where = f" (journal line {line})" if line else ""
        self.write(f"  end     {case}  {end_summary(entry)}{where}")
        if planned:
            self.write(f"[{done}/{self.total}] {clock(time.monotonic() - self.began)} elapsed"
                       + (f", about {clock(left)} left" if self.left else ""))


def final_summary(entries: list[tuple[int, dict[str, Any]]]) -> list[str]:
    """The lines that close a run: its refuted claims, stuck runs and failed verdicts, each with
    its journal line (``entries``: (line number, journal line))."""
    out: list[str] = []
    refuted = [(n, e) for n, e in entries if (e.get("verdict") or {}).get("claim") == "refuted"]
    stuck = [(n, e) for n, e in entries if ((e.get("verdict") or {}).get("figures") or {}).get("stuck")]
    failed = [(n, e) for n, e in entries if (e.get("verdict") or {}).get("outcome") not in ("pass", None)]

    def case(e: dict[str, Any]) -> str:
        return f"{e.get('scenario')}@{e.get('backend')}"

    held = sum(1 for _, e in entries if (e.get("verdict") or {}).get("claim") == "held")
    out.append(f"{len(entries)} case(s): {len(entries) - len(failed)} as the matrix expects, {len(failed)} not; "
               f"claims {held} held, {len(refuted)} refuted; {len(stuck)} stuck run(s)")
    for title, group, say in (
            ("refuted claims", refuted, lambda e: f"\"{((e.get('claim') or {}).get('text') or '')[:90]}\""),
            ("stuck runs", stuck, lambda e: f"still {((e.get('verdict') or {}).get('figures') or {}).get('final')}"
                                            " at its bound"),
            ("failed verdicts", failed, lambda e: "; ".join((e.get("verdict") or {}).get("reasons") or [])[:160])):
        if group:
            out.append(f"{title}:")
            out += [f"  {case(e)}: {say(e)} (journal line {n})" for n, e in group]
    return out
