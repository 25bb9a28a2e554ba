"""Command line: ``python -m harness validate|run|report|image build|bench|explore|kind config|export-ctk``.

``validate PATH...`` checks matrix files and prints every error (file, scenario, field).
``run`` is the main job: the chaos matrix through pytest (``-m chaos``), ending with the
journal's path; ``run --repeat N`` runs the selection N times into one journal and prints each
case's outcomes over the rounds.
``report JOURNAL... -o FILE.html`` renders the HTML reliability report from journals alone
(``--previous`` adds earlier journals for the trend).
``image build`` starts a Docker engine where none answers and builds (or finds) the harness's
Prefect image without a registry; it prints the image's tag.
``bench`` runs cases the way the main job does and prints the harness's own cost: overhead per
case, matrix wall time against its longest case, observation lag, peak RSS and CPU.
``kind config`` prints a kind cluster config with the mounts the kind backend needs, for a
cluster the user creates and then allows (``--chaos-allow-context``).
``export-ctk SCENARIO`` writes the scenario as a Chaos Toolkit experiment (JSON) that ``chaos run``
plays with the harness's own actions and probes (``harness.ctk``), or says which of its fields
an experiment cannot express.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from harness.journal import JOURNAL_ENV, ROUND_ENV, default_path
from harness.scenario import MatrixError, load_matrix

ROOT = Path(__file__).resolve().parent.parent


def validate(paths: list[str]) -> int:
    try:
        scenarios = load_matrix(*paths)
    except MatrixError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print(f"{len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    print(f"ok: {len(scenarios)} scenario(s) in {', '.join(paths)}")
    return 0


def run(args: argparse.Namespace, extra: list[str]) -> int:
    import pytest

    if args.repeat < 1:
        print(f"error: --repeat must be at least 1, got {args.repeat}", file=sys.stderr)
        return 4
    if args.shard:
        from harness.shard import parse

        try:
            parse(args.shard)
        except ValueError as exc:
            print(f"error: --shard: {exc}", file=sys.stderr)
            return 4
    if args.repeat > 1:
        return repeat(args, extra)
    journal = Path(args.journal or default_path()).resolve()
    os.environ[JOURNAL_ENV] = str(journal)
    argv = [str(ROOT / "tests" / "test_chaos_matrix.py"), "-m", "chaos", "--rootdir", str(ROOT),
            "--chaos-matrix", args.matrix,
            # harness itself is imported before pytest loads it as a plugin: nothing to rewrite
            "-W", "ignore::pytest.PytestAssertRewriteWarning", *extra]
    for b in args.backend or []:
        argv += ["--chaos-backend", b]
    for s in args.scenario or []:
        argv += ["--chaos-scenario", s]
    if args.tier:
        argv += ["--chaos-tier", args.tier]
    if args.shard:
        argv += ["--chaos-shard", args.shard]
    for d in args.durations or []:
        argv += ["--chaos-durations", d]
    os.environ["CHAOS_REPORT_QUIET"] = "1"  # printed below, after the journal's path
    code = pytest.main(argv)
    print(f"journal: {journal}" if journal.is_file() else "journal: none (no scenario finished)")
    from harness.plugin import report_path

    if report_path(journal).is_file():
        print(f"report: {report_path(journal)}")
    if args.keep_journals is not None:
        for old in prune_journals(journal.parent, args.keep_journals):
            print(f"pruned: {old}")
    return int(code)


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
    command = [sys.executable, "-m", "harness", "run", "--journal", str(journal), "--matrix", args.matrix]
    for b in args.backend or []:
        command += ["--backend", b]
    for sc in args.scenario or []:
        command += ["--scenario", sc]
    if args.tier:
        command += ["--tier", args.tier]
    if args.shard:
        command += ["--shard", args.shard]
    for d in args.durations or []:
        command += ["--durations", d]
    command += extra

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
            if codes[-1] not in (0, 1):  # 2 interrupted, 3 internal error, 4 usage, 5 nothing selected
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
    if len(codes) < args.repeat or codes[-1] not in (0, 1):  # stopped: say why in the exit status
        return next((c for c in reversed(codes) if c not in (0, 1)), 2)
    return 0 if all(c == 0 for c in codes) else 1


def repeat_summary(journal: Path, since: float, rounds: int) -> str:
    """Per case (scenario@backend), its outcomes over the rounds, from the journal lines written
    since ``since``; a case whose rounds disagree is marked, naming the rounds (from each line's
    ``round``) of its less common outcomes."""
    from collections import Counter

    from harness import journal as journal_mod

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
    from harness.caselogs import journal_logs
    from harness.plugin import report_path

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


def report(args: argparse.Namespace) -> int:
    from harness import htmlreport

    journals = journals_in(args.journals)
    out, built = htmlreport.write(journals, args.output, journals_in(args.previous or []))
    for problem in built.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not built.entries:
        out.unlink(missing_ok=True)
        print("error: no usable scenario results in " + ", ".join(args.journals), file=sys.stderr)
        return 1
    print(f"report: {out} ({len(built.entries)} scenario runs{', partial' if built.problems else ''})")
    if args.journal_out:
        from harness.journal import merge, stamped_path

        target = Path(args.journal_out)
        if target.is_dir():  # named after the run's start, as a run's own journal is
            target = stamped_path(target, min(e.started_at for e in built.entries))
        print(f"journal: {target} ({merge(journals, target)} lines of {len(journals)} journal(s))")
        if args.keep_journals is not None:
            for old in prune_journals(target.parent, args.keep_journals):
                print(f"pruned: {old}")
    return 0


def image(args: argparse.Namespace) -> int:
    from harness import engine

    try:
        client = engine.ensure_engine()
        tag = engine.ensure_image(client)
    except engine.Unavailable as exc:
        print(f"docker backend unavailable: {exc}", file=sys.stderr)
        return 0 if args.if_possible else 1
    print(tag)
    return 0


def bench(args: argparse.Namespace) -> int:
    from harness import bench as bench_mod

    if args.journal:
        result = bench_mod.from_journal(Path(args.journal))
    else:
        concurrency = None if args.concurrency == "auto" else args.concurrency
        result = bench_mod.run(args.matrix, args.scenario, args.backend, concurrency, ahead=args.ahead,
                               compare=Path(args.compare) if args.compare else None,
                               baseline=Path(args.baseline) if args.baseline else None, tier=args.tier)
    print(bench_mod.render(result))
    return 0


def explore(args: argparse.Namespace) -> int:
    from harness import explore as explore_mod
    from harness.session import ChaosSession

    session = ChaosSession()
    try:
        found, replays = explore_mod.explore(session.system("local"), args.seed, args.examples, args.steps)
    finally:
        session.close()
    if not found:
        print(f"seed {args.seed}: {args.examples} schedule(s) of up to {args.steps} steps, every invariant held")
        return 0
    out = Path(args.out or ROOT / "reports" / f"explore-seed{args.seed}.yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(replays[-1])
    print(f"seed {args.seed}: {found}\nthe shrunk schedule, as a scenario ({out}):\n")
    print(replays[-1])
    print(f"replay it: python -m harness run --matrix {out}")
    return 1


def kind_config(args: argparse.Namespace) -> int:
    """A kind cluster config for an existing cluster the harness may later be allowed to use:
    the harness's directories mounted at the same paths, the shared directory for ledgers."""
    import yaml

    from harness.backends.docker import HARNESS_PKG
    from harness.kind import Mount, kind_config as config_of
    from harness.scenario import FLOWS_DIR

    shared = Path(args.shared_dir).resolve()
    shared.mkdir(parents=True, exist_ok=True)  # kind mounts only what exists
    mounts = [Mount(FLOWS_DIR, True), Mount(HARNESS_PKG, True), Mount(shared)]
    print(f"# kind create cluster --config THIS_FILE; then run with --chaos-kube-context kind-{args.name} "
          f"--chaos-allow-context kind-{args.name} and CHAOS_KIND_SHARED_DIR={shared}")
    print(yaml.safe_dump(config_of(args.name, "shared", mounts), sort_keys=False), end="")
    return 0


def export_ctk(args: argparse.Namespace) -> int:
    import json

    from harness.ctk.export import ExportRefused, export

    try:
        experiment = export(args.scenario, args.backend, args.matrix)
    except (MatrixError, ExportRefused) as exc:
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        return 1
    except ValueError as exc:  # no such scenario
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(experiment, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
        print(f"experiment: {args.output} (run it: chaos run {args.output})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def concurrency_arg(text: str) -> int | str:
    """``auto`` or a whole number of cases at once, at least 1 (argparse's type)."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of cases at once (1 or more) or auto")
    return value


def findings(args: argparse.Namespace) -> int:
    from harness import findings as page

    matrix, output = Path(args.matrix), Path(args.output)
    try:
        load_matrix(matrix)  # every error of every file, named, before anything is written
        files = sorted(matrix.glob("*.yaml")) if matrix.is_dir() else [matrix]
        text = page.render(page.findings(files), ROOT)
    except MatrixError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 2
    if args.check:
        current = output.read_text() if output.is_file() else ""
        if current != text:
            print(f"{output} is not what `python -m harness findings` writes from {matrix}: rerun it", file=sys.stderr)
            return 1
        print(f"ok: {output} matches {matrix}")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(output)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="validate matrix files or directories")
    v.add_argument("paths", nargs="+")
    r = sub.add_parser("run", help="run the chaos matrix (extra arguments go to pytest)")
    r.add_argument("--backend", action="append", help="local (default), docker, kind")
    r.add_argument("--scenario", action="append", help="scenario id or glob (repeatable)")
    r.add_argument("--matrix", default=str(ROOT / "scenarios"))
    r.add_argument("--journal", help="journal file (default: reports/journal-<UTC time>.jsonl)")
    r.add_argument("--keep-journals", type=int, metavar="N",
                   help="afterwards, keep only the newest N journals (and reports) beside this one")
    r.add_argument("--tier", choices=["quick", "full"],
                   help="quick: one row per fault kind per backend, a few minutes (the way to try the harness); "
                        "full (default): the whole matrix")
    r.add_argument("--shard", metavar="I/N",
                   help="run shard I of N: the cases split into N parts of about equal duration, from the "
                        "newest journals' times (run every I with the same selection; merge with report)")
    r.add_argument("--durations", action="append", metavar="PATH",
                   help="with --shard: the journals (files or directories) to take the cases' times from "
                        "(repeatable; default: the journal's directory)")
    r.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run the selection N times, each round its own session, into one journal; then "
                        "print each case's outcomes over the rounds (default 1)")
    rp = sub.add_parser("report", help="render the HTML reliability report from journals")
    rp.add_argument("journals", nargs="+", help="this run's journal(s), or directories of them (a split run's shards)")
    rp.add_argument("-o", "--output", required=True, help="the HTML file to write")
    rp.add_argument("--previous", nargs="*", help="earlier journals, or directories of them, for the trend")
    rp.add_argument("--journal-out", metavar="PATH",
                    help="also write this run's journals as one (a split run's shards, merged: one journal per "
                         "run for later trends and splits); a directory gets journal-<UTC time of the run>.jsonl")
    rp.add_argument("--keep-journals", type=int, metavar="N",
                    help="with --journal-out: afterwards keep only the newest N journals beside it")
    i = sub.add_parser("image", help="the Prefect image of the docker backend")
    i.add_argument("action", choices=["build"])
    i.add_argument("--if-possible", action="store_true",
                   help="exit 0 when no engine can be had here (docker scenarios then skip, saying why)")
    b = sub.add_parser("bench", help="measure the harness's own overhead, wall time, lag, memory and CPU")
    b.add_argument("--backend", default="local", choices=["local", "docker", "kind"])
    b.add_argument("--scenario", action="append", help="scenario id or glob (repeatable; default: all)")
    b.add_argument("--matrix", default=str(ROOT / "scenarios"))
    b.add_argument("--concurrency", default="auto", type=concurrency_arg,
                   help="cases at once, or auto (default): the least that could end within 2x the CPU floor, from "
                        "the newest earlier benchmark's CPU per case (without one, one per core)")
    b.add_argument("--compare", metavar="JOURNAL",
                   help="the run whose verdicts this one's must equal (default: the newest reports/journal-*.jsonl, "
                        "the main job's, one case at a time)")
    b.add_argument("--baseline", metavar="BENCH_JSON",
                   help="an earlier benchmark's figures (reports/bench-*.json): print the CPU by role before and now")
    b.add_argument("--tier", choices=["quick", "full"], default="full", help="the rows to run (default: full)")
    b.add_argument("--ahead", type=int, default=1, help="cases deployed ahead of their turn (default 1; 0: none)")
    b.add_argument("--journal", help="print the figures of this journal's run instead of running cases")
    e = sub.add_parser("explore", help="randomized fault schedules (Hypothesis) on the local backend")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--examples", type=int, default=10, help="schedules to try (default 10)")
    e.add_argument("--steps", type=int, default=6, help="rules per schedule at most (default 6)")
    e.add_argument("--out", help="where to write the shrunk schedule (default reports/explore-seed<N>.yaml)")
    k = sub.add_parser("kind", help="the kind backend's cluster config, for a cluster you create yourself")
    k.add_argument("action", choices=["config"])
    k.add_argument("--name", default="chaos-harness", help="the kind cluster's name")
    k.add_argument("--shared-dir", default=str(Path.home() / ".cache" / "chaos-harness" / "kind-shared"),
                   help="a host directory every node mounts at the same path (ledgers, results)")
    f = sub.add_parser("findings", help="write docs/findings.md from the matrix: each claim, held or refuted, per "
                                        "backend and Prefect version, beside what was measured")
    f.add_argument("--matrix", default=str(ROOT / "scenarios"), help="matrix file or directory (default: scenarios/)")
    f.add_argument("-o", "--output", default=str(ROOT / "docs" / "findings.md"), help="the page to write")
    f.add_argument("--check", action="store_true", help="write nothing; exit 1 when the page is not what it would write")
    x = sub.add_parser("export-ctk", help="write a scenario as a Chaos Toolkit experiment (JSON)")
    x.add_argument("scenario", help="the scenario's id")
    x.add_argument("--backend", default="local", choices=["local", "docker", "kind"])
    x.add_argument("--matrix", help="matrix file or directory (default: the repository's scenarios/)")
    x.add_argument("-o", "--output", help="the experiment file to write (default: stdout)")
    args, extra = parser.parse_known_args(argv)
    if args.command == "run":
        return run(args, extra)  # the rest goes to pytest
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handlers = {"report": report, "image": image, "kind": kind_config, "validate": lambda a: validate(a.paths),
                "bench": bench, "explore": explore, "export-ctk": export_ctk, "findings": findings}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
