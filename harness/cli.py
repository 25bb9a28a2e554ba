"""Command line: ``chaos-harness`` (or ``python -m harness``) ``validate|run|report|image build|bench|
explore|kind config|findings|export-ctk``; every subcommand's ``--help`` says what it writes.

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
``findings`` writes ``docs/findings.md`` from the matrix (``--check``: exit 1 when it is stale).
The run command and the exit codes are in ``harness.command_run``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from harness.command_run import EXIT_CODES, FAILED, OK, UNAVAILABLE, USAGE, journals_in, prune_journals, run
from harness.model.fields import BACKENDS
from harness.model.matrix import MatrixError, load_matrix
from harness.paths import ROOT


def validate(paths: list[str]) -> int:
    try:
        scenarios = load_matrix(*paths)
    except MatrixError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print(f"{len(exc.errors)} error(s)", file=sys.stderr)
        return USAGE
    print(f"ok: {len(scenarios)} scenario(s) in {', '.join(paths)}")
    return OK


def report(args: argparse.Namespace) -> int:
    from harness.report import html as htmlreport

    journals = journals_in(args.journals)
    mutants = None
    if args.mutants:
        from harness.report.mutants import read

        try:
            mutants = read(args.mutants)
        except ValueError as exc:
            print(f"error: --mutants: {exc}", file=sys.stderr)
            return USAGE
    out, built = htmlreport.write(journals, args.output, journals_in(args.previous or []), mutants)
    for problem in built.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not built.entries:
        out.unlink(missing_ok=True)
        print("error: no usable scenario results in " + ", ".join(args.journals), file=sys.stderr)
        return USAGE
    print(f"report: {out} ({len(built.entries)} scenario runs{', partial' if built.problems else ''})")
    if args.journal_out:
        from harness.model.journal import merge, stamped_path

        target = Path(args.journal_out)
        if args.journal_out.endswith(("/", os.sep)) and not target.exists():  # a directory to make
            target.mkdir(parents=True)
        if target.is_dir():  # named after the run's start, as a run's own journal is
            target = stamped_path(target, min(e.started_at for e in built.entries))
        print(f"journal: {target} ({merge(journals, target)} lines of {len(journals)} journal(s))")
        if args.keep_journals is not None:
            for old in prune_journals(target.parent, args.keep_journals):
                print(f"pruned: {old}")
    return 0


def image(args: argparse.Namespace) -> int:
    from harness.backends.docker import engine

    try:
        client = engine.ensure_engine()
        tag = engine.ensure_image(client)
    except engine.Unavailable as exc:
        print(f"docker backend unavailable: {exc}", file=sys.stderr)
        return OK if args.if_possible else UNAVAILABLE
    print(tag)
    return 0


def bench(args: argparse.Namespace) -> int:
    from harness.run import bench as bench_mod

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
    from harness.run import explore as explore_mod
    from harness.run.session import ChaosSession

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
    return FAILED


def kind_config(args: argparse.Namespace) -> int:
    """A kind cluster config for an existing cluster the harness may later be allowed to use:
    the harness's directories mounted at the same paths, the shared directory for ledgers."""
    import yaml

    from harness.backends.docker.system import HARNESS_PKG
    from harness.backends.kind.cluster import Mount
    from harness.backends.kind.cluster import kind_config as config_of
    from harness.model.scenario import FLOWS_DIR

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
        return USAGE
    except ValueError as exc:  # no such scenario
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
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
    from harness.report import findings as page

    matrix, output = Path(args.matrix), Path(args.output)
    try:
        load_matrix(matrix)  # every error of every file, named, before anything is written
        files = sorted(matrix.glob("*.yaml")) if matrix.is_dir() else [matrix]
        text = page.render(page.findings(files), ROOT)
    except MatrixError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return USAGE
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


def list_scenarios(args: argparse.Namespace) -> int:
    """The cases a run with the same selection would run: id, backend, fault kinds, the claim and
    its verdict in the matrix, the time it took in the newest journal that ran it."""
    from harness.command_run import unmatched
    from harness.model.matrix import select
    from harness.run.shard import journal_files, measured
    from harness.run.session import prefect_version

    try:
        scenarios = load_matrix(args.matrix)
    except MatrixError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return USAGE
    mistyped = unmatched(args)
    if mistyped:
        print(mistyped, file=sys.stderr)
        return USAGE
    cases = select(scenarios, args.scenario, args.backend or ["local"], args.tier or "full")
    took = measured(journal_files([ROOT / "reports"]), prefect_version())
    print(f"{'case':52} {'faults':24} {'last':>7}  claim")
    for s, backend in cases:
        kinds = ",".join(dict.fromkeys(f.kind for f in s.faults)) or "-"
        last = took.get((s.id, backend))
        claim = f'"{s.claim.text[:70]}"' if s.claim else ""
        print(f"{s.id + '@' + backend:52} {kinds:24} {f'{last.seconds:.0f} s' if last else '-':>7}  {claim}")
    print(f"{len(cases)} case(s); 'last': the time each took in the newest journal of reports/ that ran it")
    return OK


def mutate(args: argparse.Namespace) -> int:
    from harness.run import mutate as mutants

    if args.list:
        for m in mutants.CATALOGUE:
            print(f"{m.id:30} {'(equivalent) ' if m.equivalent else ''}{m.what}  [rows: {', '.join(m.rows)}]")
        return OK
    try:
        load_matrix(args.matrix)
        summary = mutants.mutate(args.mutant, Path(args.matrix), baseline=not args.no_baseline)
    except MatrixError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return USAGE
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    print(mutants.render(summary))
    print(f"figures: {mutants.write(summary)}")
    bad = [r for r in summary["results"] if r["status"] in ("survived", "false alarm", "not judged", "error")]
    return FAILED if bad else OK


class Parser(argparse.ArgumentParser):
    """argparse's, with a did-you-mean for a near miss among a flag's or a command's choices
    (``--backend dockr``: did you mean 'docker'?), as Python 3.12's ``suggest_on_error`` gives."""

    def error(self, message: str):  # type: ignore[override]
        import difflib

        found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if found:
            choices = re.findall(r"'([^']*)'", found[2])
            near = difflib.get_close_matches(found[1], choices, n=1, cutoff=0.6)
            if near:
                message += f"; did you mean '{near[0]}'?"
        super().error(message)


def command(sub, name: str, does: str, writes: str) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does, what it writes and what its exit codes mean."""
    return sub.add_parser(name, help=does, description=f"{does[0].upper()}{does[1:]}. Writes: {writes}.",
                          epilog=EXIT_CODES)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog=os.path.basename(sys.argv[0]) if os.path.basename(sys.argv[0]) == "chaos-harness" else "python -m harness",
        description="Crash-chaos harness for Prefect: run the expected-state matrix against a real Prefect server "
                    "and real workers, break them on cue, and report what held.",
        epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    v = command(sub, "validate", 'validate matrix files or directories',
                  'nothing; prints ok, or every error naming the file, the scenario and the field')
    v.add_argument("paths", nargs="+", help="matrix files (.yaml) or directories of them")
    r = command(sub, "run", 'run the chaos matrix (extra arguments go to pytest)',
                  'reports/journal-<UTC time>.jsonl (one line per finished case) and reports/report-<UTC time>.html; prints both paths')
    r.add_argument("--backend", action="append", choices=BACKENDS, help="local (default), docker, kind")
    r.add_argument("--scenario", action="append", help="scenario id or glob (repeatable)")
    r.add_argument("--matrix", default=str(ROOT / "scenarios"), help="the matrix: a directory of YAML files, or one file (default: this repository's scenarios/)")
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
    r.add_argument("--concurrency", default="auto", type=concurrency_arg, metavar="auto|N",
                   help="cases at once (default auto: what the newest benchmark says brings the matrix within "
                        "twice its CPU floor on this machine's cores; 1: one after another)")
    r.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run the selection N times, each round its own session, into one journal; then "
                        "print each case's outcomes over the rounds (default 1)")
    rp = command(sub, "report", 'render the HTML reliability report from journals',
                  'the HTML file given by -o; with --journal-out, the journals merged into one')
    rp.add_argument("journals", nargs="+", help="this run's journal(s), or directories of them (a split run's shards)")
    rp.add_argument("-o", "--output", required=True, help="the HTML file to write")
    rp.add_argument("--previous", nargs="*", help="earlier journals, or directories of them, for the trend")
    rp.add_argument("--journal-out", metavar="PATH",
                    help="also write this run's journals as one (a split run's shards, merged: one journal per "
                         "run for later trends and splits); a directory gets journal-<UTC time of the run>.jsonl")
    rp.add_argument("--mutants", metavar="JSON", help="a mutate run's figures (reports/mutate-*.json): a section "
                                                      "of seeded regressions, caught or not")
    rp.add_argument("--keep-journals", type=int, metavar="N",
                    help="with --journal-out: afterwards keep only the newest N journals beside it")
    i = command(sub, "image", 'the Prefect image of the docker backend',
                  'a Docker image chaos-harness/prefect:<version>-<hash> (starting a Docker engine where none answers); prints its tag')
    i.add_argument("action", choices=["build"], help="build: the image of the installed Prefect, if not built yet")
    i.add_argument("--if-possible", action="store_true",
                   help="exit 0 when no engine can be had here (docker scenarios then skip, saying why)")
    b = command(sub, "bench", "measure the harness's own overhead, wall time, lag, memory and CPU",
                  'reports/bench-<UTC time>.json and reports/bench-journal-<UTC time>.jsonl; prints the figures and targets')
    b.add_argument("--backend", default="local", choices=["local", "docker", "kind"], help="the backend it measures (default local)")
    b.add_argument("--scenario", action="append", help="scenario id or glob (repeatable; default: all)")
    b.add_argument("--matrix", default=str(ROOT / "scenarios"), help="the matrix: a directory of YAML files, or one file (default: this repository's scenarios/)")
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
    e = command(sub, "explore", 'randomized fault schedules (Hypothesis) on the local backend',
                  'reports/explore-seed<N>.yaml, the shrunk failing schedule as a scenario, when an invariant breaks')
    e.add_argument("--seed", type=int, default=0, help="Hypothesis's seed (default 0): the same seed draws the same schedules")
    e.add_argument("--examples", type=int, default=10, help="schedules to try (default 10)")
    e.add_argument("--steps", type=int, default=6, help="rules per schedule at most (default 6)")
    e.add_argument("--out", help="where to write the shrunk schedule (default reports/explore-seed<N>.yaml)")
    k = command(sub, "kind", "the kind backend's cluster config, for a cluster you create yourself",
                  'the config on stdout; creates the shared directory it mounts')
    k.add_argument("action", choices=["config"], help="config: print a kind cluster config with the mounts the harness needs")
    k.add_argument("--name", default="chaos-harness", help="the kind cluster's name")
    k.add_argument("--shared-dir", default=str(Path.home() / ".cache" / "chaos-harness" / "kind-shared"),
                   help="a host directory every node mounts at the same path (ledgers, results)")
    f = command(sub, "findings", 'write docs/findings.md from the matrix: each claim, held or refuted, per backend and Prefect version, beside what was measured',
                  'docs/findings.md (or -o); with --check, nothing')
    f.add_argument("--matrix", default=str(ROOT / "scenarios"), help="matrix file or directory (default: scenarios/)")
    f.add_argument("-o", "--output", default=str(ROOT / "docs" / "findings.md"), help="the page to write")
    f.add_argument("--check", action="store_true", help="write nothing; exit 1 when the page is not what it would write")
    ls = command(sub, "list", "list the scenarios a run with the same selection would run",
                 "nothing; prints each case (scenario@backend), its fault kinds, its last measured time and its claim")
    ls.add_argument("--backend", action="append", choices=BACKENDS, help="local (default), docker, kind")
    ls.add_argument("--scenario", action="append", help="scenario id or glob (repeatable)")
    ls.add_argument("--tier", choices=["quick", "full"], help="quick: the quick tier's rows; full (default): all")
    ls.add_argument("--matrix", default=str(ROOT / "scenarios"), help="the matrix: a directory of YAML files, or one file (default: this repository's scenarios/)")
    m = command(sub, "mutate", "run seeded regressions of the installed Prefect against the rows meant to catch them "
                               "(each in a throwaway environment of its own, local backend)",
                "reports/mutate-<UTC time>.json; prints the table: mutant, rows, verdicts, caught or survived")
    m.add_argument("--mutant", action="append", help="a mutant's id (repeatable; default: the whole catalogue)")
    m.add_argument("--list", action="store_true", help="list the catalogue and exit")
    m.add_argument("--matrix", default=str(ROOT / "scenarios"), help="the matrix: a directory of YAML files, or one file (default: this repository's scenarios/)")
    m.add_argument("--no-baseline", action="store_true",
                   help="skip running the rows against the unpatched Prefect first")
    x = command(sub, "export-ctk", 'write a scenario as a Chaos Toolkit experiment (JSON)',
                  'the experiment to -o, or to stdout')
    x.add_argument("scenario", help="the scenario's id")
    x.add_argument("--backend", default="local", choices=["local", "docker", "kind"], help="the backend the experiment runs on (default local)")
    x.add_argument("--matrix", help="matrix file or directory (default: the repository's scenarios/)")
    x.add_argument("-o", "--output", help="the experiment file to write (default: stdout)")
    args, extra = parser.parse_known_args(argv)
    if args.command == "run":
        return run(args, extra)  # the rest goes to pytest
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handlers = {"report": report, "image": image, "kind": kind_config, "validate": lambda a: validate(a.paths),
                "bench": bench, "explore": explore, "export-ctk": export_ctk, "findings": findings, "mutate": mutate, "list": list_scenarios}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
