"""Command line: ``python -m harness validate|run|report|image build``.

``validate PATH...`` checks matrix files and prints every error (file, scenario, field).
``run`` is the main job: the chaos matrix through pytest (``-m chaos``), ending with the
journal's path.
``report JOURNAL... -o FILE.html`` renders the HTML reliability report from journals alone
(``--previous`` adds earlier journals for the trend).
``image build`` starts a Docker engine where none answers and builds (or finds) the harness's
Prefect image without a registry; it prints the image's tag.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.journal import JOURNAL_ENV, default_path
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
    os.environ["CHAOS_REPORT_QUIET"] = "1"  # printed below, after the journal's path
    code = pytest.main(argv)
    print(f"journal: {journal}" if journal.is_file() else "journal: none (no scenario finished)")
    from harness.plugin import report_path

    if report_path(journal).is_file():
        print(f"report: {report_path(journal)}")
    return int(code)


def report(args: argparse.Namespace) -> int:
    from harness import htmlreport

    out, built = htmlreport.write(args.journals, args.output, args.previous or [])
    for problem in built.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not built.entries:
        out.unlink(missing_ok=True)
        print("error: no usable scenario results in " + ", ".join(args.journals), file=sys.stderr)
        return 1
    print(f"report: {out} ({len(built.entries)} scenario runs{', partial' if built.problems else ''})")
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
    rp = sub.add_parser("report", help="render the HTML reliability report from journals")
    rp.add_argument("journals", nargs="+", help="this run's journal(s)")
    rp.add_argument("-o", "--output", required=True, help="the HTML file to write")
    rp.add_argument("--previous", nargs="*", help="earlier journals, for the trend")
    i = sub.add_parser("image", help="the Prefect image of the docker backend")
    i.add_argument("action", choices=["build"])
    i.add_argument("--if-possible", action="store_true",
                   help="exit 0 when no engine can be had here (docker scenarios then skip, saying why)")
    args, extra = parser.parse_known_args(argv)
    if args.command == "report":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return report(args)
    if args.command == "image":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return image(args)
    if args.command == "validate":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return validate(args.paths)
    return run(args, extra)


if __name__ == "__main__":
    sys.exit(main())
