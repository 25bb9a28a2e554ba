"""The findings page, generated from the matrix: every claim, its source, whether it holds per
backend and Prefect version, and what was measured instead.

The matrix keeps the observation (``expect``) and names the claim (``claim.predicts``); this
module compares the two field by field, with no run: the expectation *is* what real runs
measured (or, marked ``unverified``, what one still has to).  ``python -m harness findings``
writes ``docs/findings.md``; a test fails when the committed page is not what it writes, so the
page cannot drift from the rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.model.expectation import Expectation, Prediction, RunExpectation
from harness.model.matrix import load_file
from harness.model.scenario import Scenario

# The Prefect releases the matrix is measured on: the tox environments (tox.ini), oldest first.
VERSIONS = ("3.6.29", "3.7.8", "3.8.8", "3.9.1")

HELD, REFUTED, SOMETIMES, OPEN, UNVERIFIED = "held", "refuted", "sometimes", "open", "unverified"
# how the page orders claims and words their cells
ORDER = {REFUTED: 0, SOMETIMES: 1, HELD: 2, OPEN: 3, UNVERIFIED: 4}
HEADINGS = {
    REFUTED: "Refuted wherever measured",
    "depends": "Holds on some backends or Prefect versions, not others",
    SOMETIMES: "Holds in some runs, not others",
    HELD: "Held wherever measured",
    OPEN: "Not decided by the fields the claim predicts",
    UNVERIFIED: "Not measured yet",
}

COUNTED = {REFUTED: "refuted", "depends": "depend on the backend or Prefect version", SOMETIMES: "hold in some runs only",
           HELD: "held", OPEN: "open", UNVERIFIED: "not measured yet"}


def _values(value: Any) -> set:
    return set(value) if isinstance(value, list) else {value}


def _show(value: Any) -> str:
    return " or ".join(map(str, value)) if isinstance(value, list) else str(value)


def _one(name: str, predicted: Any, measured: Any, out: list[tuple[str, str]]) -> None:
    """Compare one field: measured values all among the predicted ones (agree), none (disagree),
    some (partial); a field the expectation leaves open decides nothing."""
    if predicted is None:
        return
    if measured is None:
        out.append(("open", f"{name}: not measured"))
        return
    p, m = _values(predicted), _values(measured)
    if m <= p:
        out.append(("agree", f"{name} {_show(measured)}"))
    elif not (m & p):
        out.append(("disagree", f"{name} {_show(measured)}, not {_show(predicted)}"))
    else:
        out.append(("partial", f"{name} {_show(measured)}; predicted {_show(predicted)}"))


def _run(prefix: str, predicted: RunExpectation, measured: RunExpectation | None, out: list[tuple[str, str]]) -> None:
    for name in ("final", "final_name", "run_count"):
        _one(prefix + name, getattr(predicted, name), getattr(measured, name, None) if measured else None, out)
    if predicted.message is not None:
        # Both are regexes.  The measured one is written from the messages seen, mostly their
        # literal words, so the prediction is searched in its text: no match, a message the claim
        # did not predict.  A row that pins no message decides nothing here.
        got = measured.message if measured else None
        if got is None:
            out.append(("open", f"{prefix}message: not pinned by the row"))
        elif got == predicted.message or re.search(predicted.message, got):
            out.append(("agree", f"{prefix}message /{got}/"))
        else:
            out.append(("disagree", f"{prefix}message /{got}/, not /{predicted.message}/"))


def compare(predicted: Prediction, measured: Expectation) -> tuple[str, list[str]]:
    """Whether the measured expectation bears the prediction out, and why, field by field."""
    if measured.unverified:
        return UNVERIFIED, [f"rests on: {measured.unverified}"]
    out: list[tuple[str, str]] = []
    _run("", predicted, measured, out)
    for task, count in predicted.executions.items():
        _one(f"{task} executed", count, measured.executions.get(task), out)
    if predicted.subflows is not None:
        _run("subflow ", predicted.subflows, measured.subflows, out)
    kinds = {k for k, _ in out}
    verdict = (REFUTED if "disagree" in kinds else SOMETIMES if "partial" in kinds
               else HELD if "agree" in kinds else OPEN)
    return verdict, [why for _, why in out]


def measured_text(e: Expectation) -> str:
    """The measured expectation, in a line: what a run of the row must end as."""
    parts = []
    if e.final is not None:
        parts.append(f"final {_show(e.final)}" + (f" ({_show(e.final_name)})" if e.final_name else ""))
    if e.run_count is not None:
        parts.append(f"run_count {_show(e.run_count)}")
    if e.executions:
        parts.append("executions " + ", ".join(f"{t} {_show(n)}" for t, n in e.executions.items()))
    for task, t in e.tasks.items():
        if t.final is not None:
            parts.append(f"task {task} {_show(t.final)}")
    if e.at_least:
        parts.append("at least " + ", ".join(f"{n} {s}" for s, n in e.at_least.items()))
    if e.faulted is not None and e.faulted.final is not None:
        parts.append(f"faulted runs {_show(e.faulted.final)}")
    if e.subflows is not None and e.subflows.final is not None:
        parts.append(f"subflow {_show(e.subflows.final)}")
    if e.message:
        parts.append(f"message /{e.message}/")
    if e.oom_killed is not None:
        parts.append(f"OOM-killed {'yes' if e.oom_killed else 'no'}")
    if e.exit_code is not None:
        parts.append(f"exit code {_show(e.exit_code)}")
    if e.detect_within_seconds is not None:
        parts.append(f"detected within {e.detect_within_seconds:g} s")
    return "; ".join(parts)


@dataclass
class Cell:
    backend: str
    versions: list[str]
    verdict: str
    measured: str
    why: list[str]


@dataclass
class Finding:
    scenario: Scenario
    path: Path
    line: int
    cells: list[Cell] = field(default_factory=list)

    @property
    def overall(self) -> str:
        verdicts = {c.verdict for c in self.cells} - {UNVERIFIED}
        if not verdicts:
            return UNVERIFIED
        if len(verdicts) == 1:
            return verdicts.pop()
        return "depends"


def _line(text: str, sid: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*-\s+id:\s*['\"]?{re.escape(sid)}['\"]?\s*(#.*)?$", line):
            return number
    return 1


def findings(files: Iterable[Path], versions: tuple[str, ...] = VERSIONS) -> list[Finding]:
    """The matrix's claims, each compared per backend and Prefect version; versions whose cell
    reads the same are one cell."""
    found = []
    for path in files:
        scenarios, errors = load_file(path)
        if errors:
            raise ValueError("\n".join(errors))
        text = path.read_text()
        for s in scenarios:
            if s.claim is None:
                continue
            f = Finding(s, path, _line(text, s.id))
            for backend in s.backends:
                for version in versions:
                    e = s.expect.for_backend(backend, version)
                    if s.claim.predicts is None:
                        verdict, why = OPEN, ["the claim predicts no field"]
                    else:
                        verdict, why = compare(s.claim.predicts, e)
                    last = f.cells[-1] if f.cells else None
                    text_now = measured_text(e)
                    if last and last.backend == backend and (last.verdict, last.measured, last.why) == (verdict, text_now, why):
                        last.versions.append(version)
                    else:
                        f.cells.append(Cell(backend, [version], verdict, text_now, why))
            found.append(f)
    return found


def _versions(cell: Cell, versions: tuple[str, ...]) -> str:
    return "all" if len(cell.versions) == len(versions) else ", ".join(cell.versions)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def predicted_text(p: Prediction | None) -> str:
    if p is None:
        return "nothing checkable"
    e = Expectation.model_validate({**p.model_dump(exclude={"subflows"}), "settle_within_seconds": 1,
                                    "subflows": p.subflows.model_dump() if p.subflows else None})
    return measured_text(e) or "nothing checkable"


def render(found: list[Finding], root: Path, versions: tuple[str, ...] = VERSIONS) -> str:
    """The page, in Markdown; links are relative to ``docs/``."""
    groups: dict[str, list[Finding]] = {}
    for f in found:
        groups.setdefault(f.overall, []).append(f)
    counts = ", ".join(f"{len(groups[k])} {COUNTED[k]}" for k in HEADINGS if k in groups)
    out = [
        "# Findings",
        "",
        "<!-- Generated by `python -m harness findings` from scenarios/: edit the rows, then rerun it. -->",
        "",
        "What real runs of the matrix showed about what users are told. Each claim is a row's "
        "`claim` (its text, its source, what it `predicts`); the *measured* column is the row's "
        "`expect`, which the nightly checks on every backend and Prefect version "
        f"({', '.join(versions)}). A claim is **held** where every measured field is among what it "
        "predicts, **refuted** where one is outside it, **sometimes** where repeated runs ended "
        "both ways. Cells marked *unverified* rest on documentation or a reading of the code, "
        "not a run here.",
        "",
        f"{len(found)} claims: {counts}.",
        "",
    ]
    for key in HEADINGS:
        if key not in groups:
            continue
        out += [f"## {HEADINGS[key]}", ""]
        for f in sorted(groups[key], key=lambda f: (str(f.path), f.line)):
            s = f.scenario
            rel = Path("..") / f.path.relative_to(root) if f.path.is_relative_to(root) else f.path
            out += [
                f"### `{s.id}`",
                "",
                f"> {_md(s.claim.text)}",
                "",
                f"Source: {_md(s.claim.source)}. Row: [{s.id}]({rel.as_posix()}#L{f.line}), {_md(s.title)}. "
                f"Predicts: {_md(predicted_text(s.claim.predicts))}.",
                "",
                "| backend | Prefect | claim | measured |",
                "|---|---|---|---|",
            ]
            for c in f.cells:
                verdict = f"**{c.verdict}**" if c.verdict in (REFUTED, SOMETIMES) else c.verdict
                if c.verdict == UNVERIFIED:
                    verdict += f" ({_md(c.why[0])})"
                out.append(f"| {c.backend} | {_versions(c, versions)} | {verdict} | {_md(c.measured)} |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"
