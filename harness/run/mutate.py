"""Seeded regressions of Prefect: would the matrix notice?

Each mutant is a small patch to the installed Prefect's source, written from reading it (the
orchestration policies, the engine, the runner and worker crash reports, heartbeats, caching,
retries, the client's retries, cancellation), and names the rows meant to catch it.  A mutant is
applied to a copy of the ``prefect`` package in a throwaway virtual environment of its own (its
``site-packages`` holds the patched copy and reaches every other package of the environment under
test through ``site.addsitedir``), never to the environment under test; its rows run there, with
the server, worker and flow runs all started from that interpreter.  *Caught* means a row failed;
*survived*, every row passed.  An equivalent mutant (a change no row may notice: a log line, a
docstring) that fails a row is a false alarm.  A patch whose text is not in this Prefect version
is reported as not applying, never silently skipped.

Only the local backend: the docker and kind backends run the Prefect of their image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import prefect

from harness.model import journal as journal_mod
from harness.paths import REPORTS_DIR


@dataclass(frozen=True)
class Mutant:
    id: str
    what: str  # the regression, as a user would meet it
    file: str  # relative to the prefect package
    find: str
    replace: str
    rows: tuple[str, ...]
    equivalent: bool = False  # must not be noticed
    every: bool = False  # replace every occurrence (the sync and async twins of one function)


CATALOGUE: tuple[Mutant, ...] = (
    Mutant("retry-after-crash", "the server schedules a flow retry (AwaitingRetry) after a Crashed report, "
           "as it does after Failed", "server/orchestration/core_policy.py",
           "instructed to transition into a scheduled state to retry flow execution.\n    \"\"\"\n\n"
           "    FROM_STATES = {StateType.RUNNING}\n    TO_STATES = {StateType.FAILED}",
           "instructed to transition into a scheduled state to retry flow execution.\n    \"\"\"\n\n"
           "    FROM_STATES = {StateType.RUNNING}\n    TO_STATES = {StateType.FAILED, StateType.CRASHED}",
           ("kill-flow-process-with-retries",)),
    Mutant("flow-retries-off-by-one", "a flow gets one retry fewer than its retries", "server/orchestration/core_policy.py",
           "if run_settings.retries is None or run_count > run_settings.retries:",
           "if run_settings.retries is None or run_count >= run_settings.retries:",
           ("raise-with-retries",)),
    Mutant("crash-reported-as-failed", "the runner reports a killed flow-run process as Failed, not Crashed",
           "runner/_state_proposer.py",
           "self._client, Crashed(message=message), flow_run_id=flow_run.id",
           "self._client, __import__('prefect.states', fromlist=['Failed']).Failed(message=message), "
           "flow_run_id=flow_run.id",
           ("kill-flow-process",)),
    Mutant("no-heartbeats", "a flow run sends no heartbeats, whatever its heartbeat setting", "flow_engine.py",
           "    heartbeat_seconds = engine.heartbeat_seconds\n    if heartbeat_seconds is None:",
           "    heartbeat_seconds = None\n    if heartbeat_seconds is None:",
           # the zombie automation arms on a heartbeat: a run that never sent one is never marked
           # Crashed, so a healthy row cannot tell (cpu-starve-flow-run-zombie-automation survived
           # it); the frozen run, which the automation should crash, stays Running
           ("freeze-zombie-automation",)),
    Mutant("cache-always-misses", "the inputs cache policy computes a new key every time: nothing is reused",
           "cache_policies.py",
           "return hash_objects(hashed_inputs, raise_on_failure=True)",
           "return hash_objects(hashed_inputs, __import__('uuid').uuid4().hex, raise_on_failure=True)",
           ("resume-after-crash-cache-inputs",)),
    Mutant("client-gives-up-on-503", "the client no longer retries 503 Service Unavailable", "client/base.py",
           "                status.HTTP_503_SERVICE_UNAVAILABLE,\n", "", ("api-503-brief",), every=True),
    Mutant("task-retries-off-by-one", "a task gets one retry fewer than its retries", "task_engine.py",
           "if self.retries < self.task.retries and", "if self.retries < self.task.retries - 1 and",
           ("task-retries-ride-out", "task-retries-run-out"), every=True),
    Mutant("runner-ignores-cancellation", "the runner finds no process to stop when a run is cancelled",
           "runner/_cancellation_manager.py",
           "        handle = self._process_manager.get(flow_run.id)\n        pid = handle.pid if handle else None",
           "        handle = None\n        pid = None",
           ("cancel-flow-run",)),
    # equivalent: changes that no row may notice
    Mutant("log-wording", "a debug log line worded otherwise", "flow_engine.py",
           '"Started flow run heartbeat context"', '"Started the heartbeat context of the flow run"',
           ("kill-flow-process", "raise-with-retries"), equivalent=True),
    Mutant("retry-rule-docstring", "the flow-retry rule's docstring reworded", "server/orchestration/core_policy.py",
           "instructed to transition into a scheduled state to retry flow execution.",
           "instructed to transition into a scheduled state to retry the flow's execution.",
           ("raise-with-retries",), equivalent=True),
)


class DoesNotApply(Exception):
    """The mutant's text is not in this Prefect version's source (or not once)."""


def apply(mutant: Mutant, package: Path) -> int:
    """Patch the copy of Prefect at ``package``; return how many places changed."""
    path = package / mutant.file
    if not path.is_file():
        raise DoesNotApply(f"{mutant.file} is not in Prefect {prefect.__version__}")
    text = path.read_text()
    found = text.count(mutant.find)
    if found == 0 or (found > 1 and not mutant.every):
        raise DoesNotApply(f"{mutant.file}: the text to change is found {found} times in Prefect {prefect.__version__}"
                           + ("" if found == 0 else ", not once"))
    path.write_text(text.replace(mutant.find, mutant.replace))
    shutil.rmtree(path.parent / "__pycache__", ignore_errors=True)
    return found


def environment(workdir: Path, mutant: Mutant | None) -> Path:
    """A throwaway virtual environment whose Prefect is a patched copy; returns its python."""
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # every other package, and the harness itself, from the environment under test (its .pth too)
    (site / "_chaos_mutant.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    if mutant is not None:
        copy = site / "prefect"
        shutil.copytree(Path(prefect.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
        apply(mutant, copy)
    return python


@dataclass
class Result:
    mutant: str
    what: str
    rows: list[str]
    equivalent: bool
    status: str  # caught | survived | false alarm | quiet (equivalent, as it must) | does not apply | error
    verdicts: dict[str, str] = field(default_factory=dict)  # case -> outcome
    reasons: dict[str, list[str]] = field(default_factory=dict)  # case -> why it failed
    seconds: float = 0.0
    note: str = ""


def run_rows(python: Path, rows: list[str], workdir: Path, matrix: Path) -> tuple[dict[str, str], dict[str, list[str]], str]:
    """The rows on local with ``python``; their outcomes, the reasons of those that did not pass,
    and the output's tail when no row finished."""
    journal = workdir / "journal.jsonl"
    command = [str(python), "-m", "harness", "run", "--backend", "local", "--matrix", str(matrix),
               "--journal", str(journal)]
    for row in rows:
        command += ["--scenario", row]
    done = subprocess.run(command + ["--", "-p", "no:cacheprovider", "-q"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    verdicts, reasons = {}, {}
    if journal.is_file():
        for e in journal_mod.read(journal):
            if isinstance(e, dict) and isinstance(e.get("verdict"), dict):
                case = f"{e.get('scenario')}@{e.get('backend')}"
                verdicts[case] = e["verdict"].get("outcome")
                if verdicts[case] != "pass":
                    reasons[case] = list(e["verdict"].get("reasons") or [])[:4]
    return verdicts, reasons, "" if verdicts else (done.stdout + done.stderr)[-2000:]


def judge(mutant: Mutant, verdicts: dict[str, str]) -> str:
    if not verdicts:  # no row finished: nothing was judged
        return "not judged"
    noticed = any(v == "fail" for v in verdicts.values())
    if mutant.equivalent:
        return "false alarm" if noticed else "quiet"
    if noticed:
        return "caught"
    return "survived" if verdicts and all(v == "pass" for v in verdicts.values()) else "not judged"


def mutate(ids: list[str] | None, matrix: Path, baseline: bool = True) -> dict[str, Any]:
    """Run each chosen mutant's rows against it (and, first, every chosen row against the
    unpatched Prefect: a row that fails there cannot catch anything)."""
    chosen = [m for m in CATALOGUE if not ids or m.id in ids]
    unknown = sorted(set(ids or []) - {m.id for m in CATALOGUE})
    if unknown:
        raise ValueError(f"no mutant {', '.join(unknown)} (known: {', '.join(m.id for m in CATALOGUE)})")
    results: list[Result] = []
    base: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="chaos-harness-mutate-") as tmp:
        if baseline:
            rows = sorted({r for m in chosen for r in m.rows})
            work = Path(tmp) / "baseline"
            work.mkdir()
            started = time.monotonic()
            base, why, tail = run_rows(environment(work, None), rows, work, matrix)
            results.append(Result("(none)", "the installed Prefect, unpatched", rows, False,
                                   "pass" if base and all(v == "pass" for v in base.values()) else "fail",
                                   base, why, round(time.monotonic() - started, 1), tail))
        for m in chosen:
            work = Path(tmp) / m.id
            work.mkdir()
            started = time.monotonic()
            result = Result(m.id, m.what, list(m.rows), m.equivalent, "error")
            try:
                python = environment(work, m)
            except DoesNotApply as exc:
                result.status, result.note = "does not apply", str(exc)
            else:
                result.verdicts, result.reasons, result.note = run_rows(python, list(m.rows), work, matrix)
                result.status = judge(m, result.verdicts)
                broken = [c for c, v in base.items() if v != "pass" and c in result.verdicts]
                if broken and result.status in ("caught", "false alarm"):
                    result.note = f"not judged: {', '.join(broken)} did not pass unpatched either"
                    result.status = "not judged"
            result.seconds = round(time.monotonic() - started, 1)
            results.append(result)
            shutil.rmtree(work, ignore_errors=True)
    return {"prefect_version": prefect.__version__, "results": [asdict(r) for r in results]}


def render(summary: dict[str, Any]) -> str:
    lines = [f"mutants of Prefect {summary['prefect_version']} (local backend)", "",
             f"{'mutant':30} {'status':15} {'time':>6}  rows: verdicts"]
    for r in summary["results"]:
        verdicts = ", ".join(f"{c.split('@')[0]} {v}" for c, v in r["verdicts"].items()) or ", ".join(r["rows"])
        mark = " (equivalent)" if r["equivalent"] else ""
        lines.append(f"{r['mutant'] + mark:30} {r['status']:15} {r['seconds']:>5.0f}s  {verdicts}")
        for case, why in r["reasons"].items():
            lines += [f"{'':52}{case}: {w}" for w in why[:2]]
        if r["note"] and r["status"] != "pass":
            lines.append(f"{'':52}{r['note'].strip().splitlines()[-1][:160]}")
    judged = [r for r in summary["results"] if r["mutant"] != "(none)"]
    caught = sum(r["status"] == "caught" for r in judged)
    real = sum(not r["equivalent"] and r["status"] != "does not apply" for r in judged)
    alarms = sum(r["status"] == "false alarm" for r in judged)
    lines += ["", f"caught {caught} of {real} applicable mutants; false alarms: {alarms}"]
    return "\n".join(lines)


def write(summary: dict[str, Any], out: Path | None = None) -> Path:
    path = out or REPORTS_DIR / f"mutate-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path
