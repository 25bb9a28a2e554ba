"""The run command: the chaos matrix through pytest in this process, its repeats, the journals
it keeps, and the exit codes every command shares (``chaos-harness --help`` lists them)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

from harness.model.journal import JOURNAL_ENV, ROUND_ENV, default_path, unwritable
from harness.paths import PACKAGE, ROOT

# Exit codes, the same for every command (and ``chaos-harness``, the same CLI):
OK = 0           # everything held (run: every case passed; findings --check: the page is current)
FAILED = 1       # a verdict failed (run: a case failed; explore: an invariant broke; a stale page)
USAGE = 2        # a usage or matrix error, named before anything ran (argparse's own code too)
UNAVAILABLE = 3  # infrastructure unavailable: a backend that could not start here (its cases skipped)
INTERRUPTED = 130  # Ctrl-C or SIGTERM; what finished is in the journal


EXIT_CODES = (f"exit codes: {OK} all held, {FAILED} a verdict failed, {USAGE} a usage or matrix error, "
              f"{UNAVAILABLE} infrastructure unavailable (a backend could not start), {INTERRUPTED} interrupted")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    import pytest

    if extra[:1] == ["--"]:  # `run ... -- -x`: what follows goes to pytest as it is
        extra = extra[1:]

    if args.repeat < 1:
        print(f"error: --repeat must be at least 1, got {args.repeat}", file=sys.stderr)
        return USAGE
    if args.shard:
        from harness.run.shard import parse

        try:
            parse(args.shard)
        except ValueError as exc:
            print(f"error: --shard: {exc}", file=sys.stderr)
            return USAGE
    mistyped = unmatched(args)
    if mistyped:
        print(mistyped, file=sys.stderr)
        return USAGE
    if args.repeat > 1:
        return repeat(args, extra)
    journal = Path(args.journal or default_path()).resolve()
    why = unwritable(journal)
    if why:
        print(f"error: --journal {journal}: cannot be written: {why}", file=sys.stderr)
        return USAGE
    os.environ[JOURNAL_ENV] = str(journal)
    argv = [str(PACKAGE / "matrix_test.py"), "-m", "chaos", "--rootdir", str(ROOT),
            "--chaos-matrix", args.matrix,
            # harness itself is imported before pytest loads it as a plugin: nothing to rewrite
            "-W", "ignore::pytest.PytestAssertRewriteWarning", *extra, *passed_on(args, pytest_options=True)]
    concurrency, why = cases_at_once(args, extra)
    if concurrency is not None:
        argv += ["--chaos-concurrency", str(concurrency)]
        print(f"{concurrency} case(s) at once: {why}", flush=True)
    os.environ["CHAOS_REPORT_QUIET"] = "1"  # printed below, after the journal's path
    skipped = UnavailableSkips()
    code = pytest.main(argv, plugins=[skipped])
    print(f"journal: {journal}" if journal.is_file() else "journal: none (no scenario finished)")
    from harness.plugin import report_path

    if report_path(journal).is_file():
        print(f"report: {report_path(journal)}")
    if args.keep_journals is not None:
        for old in prune_journals(journal.parent, args.keep_journals):
            print(f"pruned: {old}")
    return exit_code(int(code), skipped.backends)


def unmatched(args: argparse.Namespace) -> str | None:
    """A --scenario that selects nothing, in the words the user typed, with the nearest ids; None
    when every one selects something (or the matrix has errors: pytest's session names them all)."""
    import difflib

    from harness.model.matrix import MatrixError, elsewhere, load_matrix, select

    try:
        scenarios = load_matrix(args.matrix)
    except MatrixError:
        return None
    backends, tier = args.backend or ["local"], args.tier or "full"
    for pattern in args.scenario or []:
        if select(scenarios, [pattern], backends, tier):
            continue
        others, in_full = elsewhere(scenarios, pattern, backends, tier)
        near = difflib.get_close_matches(pattern, [s.id for s in scenarios], n=3, cutoff=0.6)
        if others:
            hint = f"it does on {', '.join(others)}: add --backend {others[0]}"
        elif in_full:
            hint = "it is not in the quick tier"
        elif near:
            hint = f"did you mean {' or '.join(near)}?"
        else:
            hint = "python -m harness validate lists the matrix's errors; scenarios/ its rows"
        return f"error: --scenario {pattern!r} matches no scenario of {args.matrix} on {', '.join(backends)} ({hint})"
    return None


class UnavailableSkips:
    """A pytest plugin of the run command: the backends whose cases skipped because they could
    not start here (``test_chaos_matrix`` skips them saying so)."""

    def __init__(self) -> None:
        self.backends: set[str] = set()

    def pytest_runtest_logreport(self, report) -> None:
        if report.skipped and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2])
            found = re.search(r"backend (\w+) unavailable", message)
            if found:
                self.backends.add(found.group(1))


def exit_code(pytest_code: int, unavailable: set[str] = frozenset()) -> int:
    """pytest's exit code as the CLI's: a failed case first, then an unavailable backend."""
    if pytest_code == 1:  # tests failed
        return FAILED
    if pytest_code == 2:  # interrupted
        return INTERRUPTED
    if pytest_code in (4, 5):  # usage error; nothing collected (the plugin names an empty selection)
        return USAGE
    if pytest_code == 3:  # pytest's internal error: the harness itself failed
        return FAILED
    if unavailable:
        print(f"unavailable here: {', '.join(sorted(unavailable))} (its cases skipped; see the skip reasons)",
              file=sys.stderr)
        return UNAVAILABLE
    return OK


# run's selection, as run passes it on: (its attribute, run's flag, the pytest plugin's option)
_SELECTION = (("backend", "--backend", "--chaos-backend"), ("scenario", "--scenario", "--chaos-scenario"),
              ("tier", "--tier", "--chaos-tier"), ("shard", "--shard", "--chaos-shard"),
              ("durations", "--durations", "--chaos-durations"))


def passed_on(args: argparse.Namespace, pytest_options: bool) -> list[str]:
    """The selection of ``run`` as arguments: the plugin's options (``run``'s pytest), or run's own
    flags (a ``--repeat`` round's command)."""
    out: list[str] = []
    for attr, flag, option in _SELECTION:
        value = getattr(args, attr, None)
        for v in value if isinstance(value, list) else ([] if value is None else [value]):
            out += [option if pytest_options else flag, str(v)]
    return out


def cases_at_once(args: argparse.Namespace, extra: list[str]) -> tuple[int | None, str]:
    """``--concurrency``: a number, or ``auto``, what the newest benchmark (``harness.run.figures.
    pick_concurrency``) says brings the matrix within twice its CPU floor here.  None where the
    pytest arguments already decide: their own ``--chaos-concurrency``, or pytest-xdist's ``-n``."""
    if any(a.startswith(("--chaos-concurrency", "-n", "--numprocesses", "--dist")) for a in extra):
        return None, "as the pytest arguments say"
    if args.concurrency != "auto":
        return int(args.concurrency), "--concurrency"
    from harness.run.figures import auto_concurrency

    return auto_concurrency()


def repeat(args: argparse.Namespace, extra: list[str]) -> int:
    """``run --repeat N``: the same selection N times, each round a session of its own (its own
    server, a fresh start) appending to one journal; then, per case, how often each outcome came.
    A round that fails goes on to the next (that is what repeats are for); an interrupted round, a
    usage error or an empty selection stops.  Ctrl-C or SIGTERM is passed to the running round
    once, and its cleanup is waited for."""
    import signal
    import subprocess
    import time

    journal = Path(args.journal or default_path()).resolve()
    began = time.time()
    command = [sys.executable, "-m", "harness", "run", "--journal", str(journal), "--matrix", args.matrix,
               *passed_on(args, pytest_options=False), "--concurrency", str(args.concurrency), *extra]

    def interrupted(signum, frame):  # noqa: ARG001 - SIGTERM as Ctrl-C: into the wait below
        raise KeyboardInterrupt

    def wait(child: subprocess.Popen) -> int:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:  # already passed on: the round is cleaning up
                continue

    previous = signal.signal(signal.SIGTERM, interrupted)
    codes: list[int] = []
    child = None
    try:
        for round_ in range(1, args.repeat + 1):
            print(f"round {round_} of {args.repeat}", flush=True)
            # its own process group: a terminal's Ctrl-C reaches this process only, which passes it on
            # once; no stdin (a background process group reading the terminal would be stopped)
            child = subprocess.Popen(command, process_group=0, stdin=subprocess.DEVNULL,
                                     env={**os.environ, ROUND_ENV: f"{round_}/{args.repeat}"})
            codes.append(child.wait())
            if codes[-1] not in (OK, FAILED, UNAVAILABLE):  # interrupted or a usage error: stop
                break
    except KeyboardInterrupt:  # whenever it came: a round still running gets it and is waited for
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGINT)
            codes.append(wait(child))
    finally:
        signal.signal(signal.SIGTERM, previous)
    if journal.is_file():
        print(repeat_summary(journal, since=began, rounds=len(codes)))
    if args.keep_journals is not None:
        for old in prune_journals(journal.parent, args.keep_journals):
            print(f"pruned: {old}")
    if len(codes) < args.repeat or codes[-1] not in (OK, FAILED, UNAVAILABLE):  # stopped: say why
        return next((c for c in reversed(codes) if c not in (OK, FAILED, UNAVAILABLE)), INTERRUPTED)
    if FAILED in codes:
        return FAILED
    return UNAVAILABLE if UNAVAILABLE in codes else OK


def repeat_summary(journal: Path, since: float, rounds: int) -> str:
    """Per case (scenario@backend), its outcomes over the rounds, from the journal lines written
    since ``since``; a case whose rounds disagree is marked, naming the rounds (from each line's
    ``round``) of its less common outcomes."""
    from collections import Counter

    from harness.model import journal as journal_mod

    outcomes: dict[str, list[tuple[str, int | None]]] = {}
    for entry in journal_mod.read(journal):
        if entry.get("started_at", 0) >= since and "verdict" in entry:
            case = f"{entry['scenario']}@{entry['backend']}"
            index = (entry.get("round") or {}).get("index")
            outcomes.setdefault(case, []).append((entry["verdict"]["outcome"], index))
    lines = [f"repeats: {rounds} round(s) in {journal}"]
    for case, seen in sorted(outcomes.items()):
        counts = Counter(outcome for outcome, _ in seen)
        told = ", ".join(f"{n} of {len(seen)} {outcome}" for outcome, n in counts.most_common())
        if len(counts) > 1:
            rounds_of: dict[str, set[int]] = {}
            for outcome, index in seen:
                if index is not None:  # a journal from before rounds were recorded has none
                    rounds_of.setdefault(outcome, set()).add(index)
            odd = [f"{outcome} in round {', '.join(map(str, sorted(rounds_of[outcome])))}"
                   for outcome, _ in counts.most_common()[1:] if outcome in rounds_of]
            told += "  (the rounds disagree" + (f": {'; '.join(odd)}" if odd else "") + ")"
        lines.append(f"  {case}: {told}")
    return "\n".join(lines)


def prune_journals(directory: Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` journals (their reports and kept logs too) of
    ``directory``: the nightly keeps a bounded history for the trend.  Newest by the UTC stamp in
    the name."""
    from harness.plugin import report_path
    from harness.sut.caselogs import journal_logs

    journals = sorted(directory.glob("journal-*.jsonl"), key=lambda p: p.name, reverse=True)
    removed = []
    for old in journals[max(keep, 1):]:
        for path in (old, report_path(old)):
            if path.is_file():
                path.unlink()
                removed.append(path)
        logs = journal_logs(old)
        if logs.is_dir():
            shutil.rmtree(logs)
            removed.append(logs)
    return removed


def journals_in(paths: list[str]) -> list[str]:
    """Journal files as given, a directory standing for the ``journal-*.jsonl`` in it (oldest first)."""
    found = []
    for p in map(Path, paths):
        found += sorted(map(str, p.glob("journal-*.jsonl"))) if p.is_dir() else [str(p)]
    return found
