"""The HTML reliability report: one self-contained file, rendered from a :class:`Report`.

No network request, no external script, font or stylesheet: the CSS and the few lines of
script (filters, print) are inline and every chart is inline SVG, so the file can be mailed,
archived as a CI artifact and opened on a phone.  Every string from a journal is escaped.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.report.data import Cell, Entry, Report, build
from harness.report.mutants import section as mutants_section
from harness.report.svg import STATE_COLOURS, _fmt, _seconds, anchor, e, sparkline, timeline_html

VERDICT_TEXT = {"pass": "pass", "fail": "FAIL", "unknown": "unknown", "mixed": "mixed"}
CSS = """
:root{--pass:#2e7d4f;--fail:#c62828;--unknown:#8a6d00;--mixed:#6a3fb5;--line:#d7dce2;--muted:#5b6570}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;background:#fff}
header,main{padding:12px 20px;max-width:1200px;margin:auto}
h1{font-size:1.45em;margin:.2em 0}h2{font-size:1.2em;margin:1.6em 0 .5em;border-bottom:1px solid var(--line)}
h3{font-size:1.02em;margin:1em 0 .3em}
.muted{color:var(--muted)}.small{font-size:.85em}
.counts span{display:inline-block;margin:.2em .5em .2em 0;padding:.1em .6em;border-radius:1em;color:#fff}
.v-zero{background:#8a949e}.v-pass{background:var(--pass)}.v-fail{background:var(--fail)}.v-unknown{background:var(--unknown)}.v-mixed{background:var(--mixed)}
.t-pass{color:var(--pass)}.t-fail,.t-refuted{color:var(--fail)}.t-unknown,.t-not-tested{color:var(--unknown)}
.t-held{color:var(--pass)}.t-mixed{color:var(--mixed)}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;margin:.4em 0}
th,td{border:1px solid var(--line);padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f5f7;font-weight:600}
td.cell{text-align:center;font-weight:600;color:#fff;white-space:nowrap}
td.cell a{color:#fff;text-decoration:none;display:block}.cellnote{display:block;font-weight:400}
.unverified{font-size:.7em;font-weight:600;border:1px dashed currentColor;border-radius:3px;padding:0 .25em;white-space:nowrap}
.unverified-note .unverified{color:#8a5a00}
td.none{background:#f7f7f7;color:#aaa;text-align:center}
.filters{display:flex;flex-wrap:wrap;gap:.6em;align-items:center;margin:.5em 0}
.filters label{display:flex;gap:.3em;align-items:center}
select{font:inherit;padding:.2em}
details.scenario{border:1px solid var(--line);border-radius:6px;margin:.6em 0;padding:.2em .8em}
details.scenario>summary{cursor:pointer;padding:.3em 0;font-weight:600}
.diff td.bad{background:#fdecea}
svg.timeline{width:100%;height:auto;max-width:1000px;display:block;margin:.4em 0}
.tl.unfolded>svg.folded{display:none}
g.fold:hover rect,g.fold:focus rect{stroke:#4e8fd6}
svg text{font:11px system-ui,sans-serif;fill:#1d232a}
ul.tight{margin:.2em 0;padding-left:1.2em}
.problems{border-left:4px solid var(--unknown);background:#fff8e1;padding:.5em 1em;margin:.8em 0}
code{font-size:.9em;background:#f3f5f7;padding:0 .2em;border-radius:3px;word-break:break-word}
@media (max-width:640px){body{font-size:14px}header,main{padding:8px 10px}th,td{padding:.25em .3em}
#matrix .title{display:none}#matrix td:first-child{word-break:break-word;min-width:8em}#matrix td:last-child,#matrix th:last-child{display:none}}
.legend span{display:inline-block;margin-right:.8em;font-size:.85em}.legend i{display:inline-block;width:.9em;height:.9em;vertical-align:-.1em;margin-right:.25em;border-radius:2px}
@media print{.filters,.noprint{display:none}details.scenario{break-inside:avoid}a{color:inherit}
td.cell{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""
SCRIPT = """
(function(){
  var sel=document.querySelectorAll('.filters select');
  function apply(){
    var v=document.getElementById('f-verdict').value,b=document.getElementById('f-backend').value,
        k=document.getElementById('f-fault').value,shown=0;
    document.querySelectorAll('[data-row]').forEach(function(el){
      var ok=(!v||el.dataset.verdicts.split(' ').indexOf(v)>=0)&&(!b||el.dataset.backends.split(' ').indexOf(b)>=0)
             &&(!k||el.dataset.faults.split(' ').indexOf(k)>=0);
      el.hidden=!ok; if(ok&&el.tagName==='TR')shown++;
    });
    document.getElementById('shown').textContent=shown;
  }
  var body=document.querySelector('#matrix tbody'),order=body?Array.prototype.slice.call(body.rows):[];
  function sort(){
    var k=document.getElementById('f-sort').value,rows=order.slice();
    if(k)rows.sort(function(a,b){return parseFloat(b.dataset[k])-parseFloat(a.dataset[k])});
    rows.forEach(function(r){body.appendChild(r)});
  }
  sel.forEach(function(s){s.addEventListener('change',s.id==='f-sort'?sort:apply)});
  window.addEventListener('beforeprint',function(){document.querySelectorAll('details').forEach(function(d){d.open=true})});
  function fold(ev){
    var t=ev.target.closest&&ev.target.closest('[data-unfold],[data-fold]');
    if(!t||(ev.type==='keydown'&&ev.key!=='Enter'&&ev.key!==' '))return;
    var tl=t.closest('.tl'),unfold=t.hasAttribute('data-unfold');
    tl.classList.toggle('unfolded',unfold);tl.querySelector('.tl-full').hidden=!unfold;ev.preventDefault();
  }
  document.addEventListener('click',fold);document.addEventListener('keydown',fold);
  apply();
})();
"""


# -- the timeline ------------------------------------------------------------------------------


# -- sections ------------------------------------------------------------------------------------

def _cell(report: Report, scenario: str, column) -> str:
    cell: Cell | None = report.cells.get((scenario, column))
    if cell is None:
        return '<td class="none">·</td>'
    s = cell.summary
    counts = cell.outcomes
    text = VERDICT_TEXT[s] + (f" ×{len(cell.entries)}" if len(cell.entries) > 1 else "")
    tip = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    basis = cell.latest.unverified
    mark = ""
    if basis:  # the expectation was never measured: a pass confirms it, a fail may be the matrix's
        tip += f"; expectation unverified: {basis}"
        mark = ' <span class="unverified">unverified</span>'
    # beside the verdict, what it means for the row's claim and how fast Prefect detected the fault:
    # "pass" beside a refuted claim is Prefect doing what the matrix recorded, not what users are told
    latest = cell.latest
    claim = latest.claim_verdict if latest.claim_verdict in ("held", "refuted") else None
    ttd = latest.figures.get("time_to_detect")
    extra = (f'<span class="small cellnote">claim <b>{claim}</b></span>' if claim else "") + (
        f'<span class="small cellnote">detected {ttd:.1f} s</span>' if isinstance(ttd, (int, float)) else "")
    return (f'<td class="cell v-{s}" data-verdict="{s}" title="{e(tip)}">'
            f'<a href="#{anchor(*cell.latest.key)}">{e(text)}{mark}</a>{extra}</td>')


def matrix(report: Report) -> str:
    backends = sorted({b for b, _ in report.columns})
    kinds = sorted({k for s in report.rows for k in report.row_faults(s)})
    head = "".join(f"<th>{e(b)}<br><span class='small muted'>Prefect {e(v)}</span></th>" for b, v in report.columns)
    opts = lambda values: "".join(f'<option value="{e(v)}">{e(v)}</option>' for v in values)  # noqa: E731
    out = ['<div class="filters noprint" role="group" aria-label="filters">',
           f'<label>verdict <select id="f-verdict"><option value="">all</option>{opts(["pass", "fail", "unknown", "mixed"])}</select></label>',
           f'<label>backend <select id="f-backend"><option value="">all</option>{opts(backends)}</select></label>',
           f'<label>fault <select id="f-fault"><option value="">all</option>{opts(kinds)}</select></label>',
           '<label>sort <select id="f-sort"><option value="">as the matrix</option>'
           '<option value="settle">time to settle, longest first</option>'
           '<option value="detect">time to detect, slowest first</option></select></label>',
           f'<span class="muted small"><span id="shown">{len(report.rows)}</span> of {len(report.rows)} scenarios shown</span></div>',
           f'<div class="scroll"><table id="matrix"><thead><tr><th>scenario</th>{head}<th>faults</th></tr></thead><tbody>']
    titles = report.titles()
    for s in report.rows:
        cells = [report.cells.get((s, c)) for c in report.columns]
        verdicts = sorted({c.summary for c in cells if c} | {o for c in cells if c for o in c.outcomes})
        backends_here = sorted({c.latest.backend for c in cells if c})
        faults = report.row_faults(s)
        sort_keys = {name: max((v for c in cells if c and isinstance(v := c.latest.figures.get(f"time_to_{name}"),
                                                                             (int, float))), default=-1)
                     for name in ("settle", "detect")}  # the row's slowest cell; -1: none measured
        out.append(f'<tr data-row data-verdicts="{e(" ".join(verdicts))}" data-backends="{e(" ".join(backends_here))}" '
                   f'data-settle="{sort_keys["settle"]:g}" data-detect="{sort_keys["detect"]:g}" '
                   f'data-faults="{e(" ".join(faults))}"><td><strong>{e(s)}</strong><br>'
                   f'<span class="small muted title">{e(titles.get(s))}</span></td>'
                   + "".join(_cell(report, s, c) for c in report.columns)
                   + f'<td class="small">{e(", ".join(faults) or "none")}</td></tr>')
    out.append("</tbody></table></div>")
    return "".join(out)


def figures_section(report: Report) -> str:
    rows = []
    for kind, f in report.by_kind.items():
        d, s = f["detect"], f["settle"]
        rows.append(f"<tr><td>{e(kind)}</td><td>{f['runs']}</td><td>{_seconds(d.median)}</td><td>{_seconds(d.worst)}</td>"
                    f"<td>{_seconds(s.median)}</td><td>{_seconds(s.worst)}</td><td>{f['re_executions']}</td>"
                    f"<td>{f['stuck']}</td><td>{f['flapping']}</td><td>{f['overlaps']}</td></tr>")
    t = report.totals
    return ('<div class="scroll"><table id="figures"><thead><tr><th>fault kind</th><th>runs</th><th>detect median</th>'
            '<th>detect worst</th><th>settle median</th><th>settle worst</th><th>re-executions</th><th>stuck</th>'
            '<th>flapping</th><th>overlapping executions</th></tr></thead><tbody>' + "".join(rows) +
            f'<tr><th>all</th><th>{t.get("runs", 0)}</th><td colspan="4"></td><th>{t.get("re_executions", 0)}</th>'
            f'<th>{t.get("stuck", 0)}</th><th>{t.get("flapping", 0)}</th><th>{t.get("overlaps", 0)}</th></tr>'
            '</tbody></table></div><p class="small muted">Time to detect: from the fault to the first flow-run '
            'state that reflects it. Time to settle: from the run\'s first state to its terminal one. A run '
            'with two fault kinds counts under each.</p>')


def claims_section(report: Report) -> str:
    if not report.claims:
        return "<p class='muted'>No scenario of this run names a claim.</p>"
    out = []
    for c in report.claims:
        status = c.status
        out.append(f'<div class="claim" data-status="{e(status)}"><h3><span class="t-{e(status.replace(" ", "-"))}">'
                   f'{e(status)}</span>: “{e(c.text)}”</h3><p class="small muted">source: {e(c.source)}; '
                   f'tested by {e(", ".join(c.scenarios))}</p><ul class="tight">')
        for r in c.results:
            ev = "; ".join(r["evidence"]) if r["evidence"] else "observed as predicted"
            out.append(f'<li><span class="t-{e(r["status"].replace(" ", "-"))}">{e(r["status"])}</span> by '
                       f'<a href="#{anchor(r["scenario"], r["backend"], r["prefect_version"])}">{e(r["scenario"])}</a> on {e(r["backend"])} (Prefect '
                       f'{e(r["prefect_version"])}): {e(ev)}</li>')
        out.append("</ul></div>")
    return "".join(out)


def trend_section(report: Report) -> str:
    tr = report.trend
    if not report.previous:
        return ("<p class='muted'>No earlier journals were given: the trend needs at least one earlier run "
                "(<code>python -m harness report NEW.jsonl --previous OLD.jsonl ...</code>; at the end of a "
                "pytest session the other journals in <code>reports/</code> are used).</p>")

    def listing(title: str, items: list[dict[str, Any]], fmt) -> str:
        body = "".join(f"<li>{fmt(i)}</li>" for i in items) or "<li class='muted'>none</li>"
        return f"<h3>{e(title)} ({len(items)})</h3><ul class='tight'>{body}</ul>"

    who = lambda i: f"<strong>{e(i['scenario'])}</strong> on {e(i['backend'])} (Prefect {e(i['prefect_version'])})"  # noqa: E731
    out = [f"<p class='muted small'>{tr.runs} runs compared, oldest first.</p>",
           listing("Newly broke", tr.newly_broke, lambda i: f"{who(i)}: was {e(i['was'])}, now {e(i['now'])}"
                   + ("" if i.get("same_expectation", True) else " (the expectation or a version changed meanwhile)")),
           listing("Fixed", tr.fixed, lambda i: f"{who(i)}: was {e(i['was'])}, now {e(i['now'])}"
                   + ("" if i.get("same_expectation", True) else " (the expectation or a version changed meanwhile)")),
           listing("Flaky (verdict changed, versions and expectation unchanged)", tr.flaky,
                   lambda i: f"{who(i)}: {e(' → '.join(i['outcomes']))}")]
    rows = [(k, pts) for k, pts in sorted(tr.latency.items()) if len(pts) >= 2]
    if rows:
        out.append("<h3>Detection latency over time</h3><div class='scroll'><table id='latency'><thead><tr>"
                   "<th>scenario</th><th>backend</th><th>Prefect</th><th>runs</th><th>first</th><th>latest</th>"
                   "<th>over time</th></tr></thead><tbody>")
        for (s, b, v), pts in rows:
            out.append(f"<tr><td>{e(s)}</td><td>{e(b)}</td><td>{e(v)}</td><td>{len(pts)}</td>"
                       f"<td>{pts[0][1]:.2f}s</td><td>{pts[-1][1]:.2f}s</td><td>{sparkline(pts)}</td></tr>")
        out.append("</tbody></table></div>")
    return "".join(out)


EXPECT_FIELDS = ("final", "final_name", "message", "run_count", "at_least", "executions", "tasks",
                 "passes_through", "never", "detected_as", "reported_by",
                 "detect_within_seconds", "settle_within_seconds", "overlap", "flapping", "oom_killed", "exit_code")
OBSERVED_OF = {"final": "final", "final_name": "final_name", "run_count": "run_count", "executions": "executions",
               "passes_through": "path", "never": "path", "detected_as": "detected_as", "reported_by": "reported_by",
               "detect_within_seconds": "time_to_detect", "settle_within_seconds": "time_to_settle",
               "overlap": "overlaps", "flapping": "flapping", "oom_killed": "oom_killed", "exit_code": "exit_code"}


def _mains(entry: Entry) -> list[dict]:
    return [r for r in entry.history.get("flow_runs") or [] if r.get("role") == "main"]


def _last_message(run: dict) -> str | None:
    states = run.get("states")
    return states[-1].get("message") if states else None


def _final_message(entry: Entry) -> str | None:
    runs = _mains(entry)
    return _last_message(runs[0]) if runs else None


STORM_MESSAGE_CHARS = 90


def _storm_observed(entry: Entry, name: str) -> dict[str, int]:
    """How all of a storm's runs ended on ``name`` (message or run_count): each value's count;
    a long message is cut, an empty one shows as "(none)"."""
    def value(run: dict) -> str:
        if name == "run_count":
            return str(run.get("run_count"))
        text = _last_message(run) or "(none)"
        return text if len(text) <= STORM_MESSAGE_CHARS else text[:STORM_MESSAGE_CHARS - 1] + "…"
    return dict(Counter(value(r) for r in _mains(entry)))


def _infra_name(i: dict) -> str:
    if "task_worker" in i:
        who = "foreign task worker" if i.get("foreign") else "task worker"  # another service's replica
        return f"{who} {e(i['task_worker'])} (generation {e(i.get('generation'))}, pid {e(i.get('pid'))})"
    if i.get("pod"):
        return f"pod <code>{e(i['pod'])}</code> on <code>{e(i.get('node'))}</code>"
    return f"container <code>{e(i.get('container'))}</code>"


def _infra_reason(i: dict) -> str:
    reasons = [r for r in (i.get("reason"), i.get("container_reason")) if r]
    extra = f" ({e(', '.join(reasons))})" if reasons else ""
    if i.get("restarts"):
        extra += f", {e(i['restarts'])} restarts"
    return extra


def logs_html(entry: Entry, out_dir: Path | None) -> str:
    """Where a case that did not pass kept its logs: a link relative to the report, and the files."""
    logs = entry.logs
    if not logs:
        return ""
    where = Path(logs["dir"])
    href = os.path.relpath(where, out_dir) if out_dir is not None and where.is_absolute() else str(where)
    files = ", ".join(f"<a href='{e(quote(Path(href, f).as_posix()))}'><code>{e(f)}</code></a>" for f in logs["files"])
    problems = "".join(f"<li>{e(p)}</li>" for p in logs["problems"])
    return (f"<h3>Logs</h3><p class='small'>Kept in <a href='{e(quote(Path(href).as_posix()))}'><code>{e(href)}</code></a>"
            + (f": {files}" if files else ": none could be kept") + "</p>"
            + (f"<ul class='tight small'>{problems}</ul>" if problems else ""))


def detail(entry: Entry, repeats: int, out_dir: Path | None = None) -> str:
    exp = entry.expectation
    rows = []
    reasons = " ".join(entry.reasons)
    for name in EXPECT_FIELDS:
        want = exp.get(name)
        if name == "tasks" and want:  # only the fields a task's row sets
            want = {task: {k: v for k, v in row.items() if v is not None} for task, row in want.items()}
        if want in (None, {}, False, []) and name not in ("overlap", "flapping"):
            if name == "passes_through" and entry.figures.get("path") and not exp.get("never"):
                want = None  # the path is shown whether or not the row expects anything of it
            else:
                continue
        got = _final_message(entry) if name == "message" else entry.figures.get(OBSERVED_OF.get(name, name))
        storm = entry.figures.get("storm")
        if isinstance(storm, dict) and name in ("final", "at_least"):  # a storm: how all its runs ended
            got = storm.get("final")
        elif isinstance(storm, dict) and name in ("message", "run_count"):
            got = _storm_observed(entry, name)
        if name == "overlap":
            got = bool(got)
        words = {"final": "final state", "final_name": "final state name", "message": "final message",
                 "executions": "task ", "detect_within_seconds": "detected", "settle_within_seconds": "settled",
                 "overlap": "overlapping", "flapping": "flapping", "at_least": "at least",
                 "passes_through": "never entered", "never": "expected never", "detected_as": "detected as",
                 "reported_by": "reported by"}.get(name, name)
        bad = words in reasons or (name == "detect_within_seconds" and "no state reflected" in reasons)
        label = "path" if name == "passes_through" and want is None else name
        rows.append(f'<tr><td>{e(label)}</td><td><code>{e(_fmt(want))}</code></td>'
                    f'<td{" class=bad" if bad else ""}><code>{e(_fmt(got))}</code></td></tr>')
    reasons_html = ("<ul class='tight reasons'>" + "".join(f"<li>{e(r)}</li>" for r in entry.reasons) + "</ul>"
                    if entry.reasons else "<p class='t-pass'>Every expectation held.</p>")
    messages = []
    for r in entry.history.get("flow_runs") or []:
        for s in r.get("states") or []:
            if s.get("message"):
                messages.append(f"<li><code>{e(r.get('role'))}</code> {e(s.get('type'))}/{e(s.get('name'))} at "
                                f"{s['timestamp'] - entry.history.get('started_at', s['timestamp']):.2f}s: {e(s['message'])}</li>")
    infra = entry.history.get("infrastructure") or []
    infra_html = ("<h3>Infrastructure</h3><ul class='tight'>" + "".join(
        f"<li>{_infra_name(i)}: " + (("running at the end" if i.get("exit_code") is None else
                                      f"exit code {e(i.get('exit_code'))}") if "task_worker" in i else
                                     f"{e(i.get('status'))}{_infra_reason(i)}, exit code {e(i.get('exit_code'))}, "
                                     f"OOMKilled {e(i.get('oom_killed'))}") + "</li>" for i in infra) + "</ul>") if infra else ""
    executed_by = entry.figures.get("executed_by")
    if executed_by:  # background tasks: which replica (and generation) ran each task body
        infra_html += "<p class='small'>Task bodies executed by: " + "; ".join(
            f"<code>{e(task)}</code> {e(', '.join(who))}" for task, who in executed_by.items()) + "</p>"
    unverified = (f"<p class='unverified-note'><span class='unverified'>unverified</span> This expectation has not "
                  f"been confirmed by a real run yet; it rests on: {e(entry.unverified)}. A fail here may be the "
                  f"matrix's error, not Prefect's.</p>") if entry.unverified else ""
    notes = entry.history.get("notes") or []
    claim = ""
    if entry.claim:
        claim = (f"<p>Claim <span class='t-{e((entry.claim_verdict or 'not tested').replace(' ', '-'))}'>"
                 f"{e(entry.claim_verdict or 'not tested')}</span>: “{e(entry.claim.get('text'))}”"
                 + (f" — {e('; '.join(entry.claim_reasons))}" if entry.claim_reasons else "") + "</p>")
    outcome = entry.outcome
    return (f'<details class="scenario" id="{anchor(*entry.key)}" data-row data-verdicts="{outcome}" '
            f'data-backends="{e(entry.backend)}" data-faults="{e(" ".join(entry.fault_kinds))}"'
            # open: a failed or unknown case, and one that refuted its claim (what the run found)
            f'{" open" if outcome != "pass" or entry.claim_verdict == "refuted" else ""}><summary>'
            f'<span class="t-{outcome}">{VERDICT_TEXT[outcome]}</span> '
            f'{e(entry.scenario)} on {e(entry.backend)} (Prefect {e(entry.prefect_version)})'
            f'{f" — latest of {repeats} runs" if repeats > 1 else ""}</summary>'
            f'<p class="small muted">{e(entry.title)} · {e(entry.source)} · '
            f'{time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(entry.started_at))}</p>'
            f'{unverified}{timeline_html(entry)}{reasons_html}'
            f'<div class="scroll"><table class="diff"><thead><tr><th>expectation</th><th>expected</th><th>observed</th></tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table></div>{claim}'
            + (f"<h3>State messages</h3><ul class='tight'>{''.join(messages)}</ul>" if messages else "")
            + infra_html
            + ("<h3>Notes</h3><ul class='tight'>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>" if notes else "")
            + logs_html(entry, out_dir)
            + "</details>")


def legend() -> str:
    states = "".join(f'<span><i style="background:{c}"></i>{e(k.lower())}</span>' for k, c in STATE_COLOURS.items())
    return (f'<p class="legend">{states}<span><i style="background:#5b6b7b"></i>task execution</span>'
            '<span><i style="border:1px dashed #b0306b"></i>execution that never ended</span>'
            '<span><i style="background:#c62828"></i>fault injected</span><span><i style="background:#2e7d4f">'
            '</i>healed</span><span><i style="background:#6a3fb5"></i>detection latency</span></p>')


def found_section(report: Report) -> str:
    """What the run found, first: each refuted claim as a headline linked to its case's timeline,
    then the cases that did not do what the matrix records."""
    refuted = [c.latest for c in report.cells.values() if c.latest.claim_verdict == "refuted" and c.latest.claim]
    failed = [c.latest for c in report.cells.values() if c.latest.outcome != "pass"]
    if not refuted and not failed:
        return ""
    out = ["<section class='found'><h2>What this run found</h2>"]
    if refuted:
        out.append("<ul class='tight'>" + "".join(
            f"<li><strong>Refuted</strong>: “{e(x.claim.get('text'))}” — <a href='#{anchor(*x.key)}'>{e(x.scenario)} on "
            f"{e(x.backend)}</a>" + (f": {e(x.claim_reasons[0])}" if x.claim_reasons else "") + "</li>"
            for x in sorted(refuted, key=lambda x: x.key)) + "</ul>")
    if failed:
        out.append("<p>Not as the matrix records: " + ", ".join(
            f"<a href='#{anchor(*x.key)}'>{e(x.scenario)} on {e(x.backend)}</a> ({e(VERDICT_TEXT[x.outcome])})"
            for x in sorted(failed, key=lambda x: x.key)) + "</p>")
    return "".join(out) + "</section>"


def render(report: Report, title: str = "Prefect crash-chaos reliability report", out_dir: Path | None = None,
           mutants: dict | None = None) -> str:
    """The report's page; ``out_dir`` is where it will be written (links to kept logs are relative to it)."""
    counts = report.counts()
    # a zero is neutral: "0 FAIL" in red reads as an alarm
    summary = "".join(f'<span class="v-{k if counts.get(k) else "zero"}">{counts.get(k, 0)} {VERDICT_TEXT[k]}</span>'
                      for k in ("pass", "fail", "unknown", "mixed") if counts.get(k) or k in ("pass", "fail"))
    details = []
    for s in report.rows:
        for c in report.columns:
            cell = report.cells.get((s, c))
            if cell:
                try:
                    details.append(detail(cell.latest, len(cell.entries), out_dir))
                except Exception as exc:  # a malformed history draws as a message, never a traceback
                    report.problems.append(f"{cell.latest.source}: could not be drawn ({type(exc).__name__}: {exc})")
                    details.append(f"<details class='scenario' id='{anchor(*cell.latest.key)}' open><summary>"
                                   f"{e(cell.latest.scenario)} on {e(cell.latest.backend)}: could not be drawn</summary>"
                                   f"<p>{e(type(exc).__name__)}: {e(exc)}</p></details>")
    sections = {}
    for name, make in (("matrix", matrix), ("figures", figures_section), ("claims", claims_section),
                       ("trend", trend_section)):
        try:
            sections[name] = make(report)
        except Exception as exc:  # odd values in a journal: say so, draw the rest
            report.problems.append(f"the {name} section could not be drawn ({type(exc).__name__}: {exc})")
            sections[name] = f"<p class='t-unknown'>The {name} could not be drawn: {e(exc)}</p>"
    problems = ""
    if report.problems:
        problems = ("<div class='problems' id='problems'><strong>Some input could not be used; this report is "
                    "partial.</strong><ul class='tight'>" + "".join(f"<li>{e(p)}</li>" for p in report.problems)
                    + "</ul></div>")
    versions = sorted({v for _, v in report.columns})
    body = (f"<header><h1>{e(title)}</h1><p class='muted small'>generated "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from {len(report.entries)} scenario runs in "
            f"{e(', '.join(Path(s).name for s in report.sources))}"
            f"{f' (trend over {len(report.previous_sources)} earlier journals)' if report.previous_sources else ''}; "
            f"Prefect {e(', '.join(versions) or '—')}</p><div class='counts'>{summary}</div>{problems}</header><main>"
            f"{found_section(report)}"
            f"<h2 id='matrix-h'>Matrix</h2>{sections['matrix']}"
            f"<h2>Figures</h2>{sections['figures']}"
            f"<h2>Claims</h2>{sections['claims']}"
            f"<h2>Trend</h2>{sections['trend']}"
            + (f"<h2>Seeded regressions</h2>{mutants_section(mutants)}" if mutants else "") +
            f"<h2>Scenarios</h2><p class='small muted noprint'>Failed and unknown scenarios, and those that refuted their "
            f"claim, are open; click any "
            f"other to see its timeline.</p>{legend()}{''.join(details)}</main>")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; "
            f"script-src 'unsafe-inline'; img-src data:\">"
            f"<title>{e(title)}</title><style>{CSS}</style></head><body>{body}<script>{SCRIPT}</script></body></html>")


def write(current: list[Path | str], out: Path | str, previous: list[Path | str] = (),
          mutants: dict | None = None) -> tuple[Path, Report]:
    report = build(current, previous)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(render(report, out_dir=out.resolve().parent, mutants=mutants), encoding="utf-8")
    tmp.replace(out)  # a reader never sees half a report
    return out, report
