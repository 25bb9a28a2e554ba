"""The pytest plugin: options, markers, matrix validation and parametrization.  Wiring only.

The matrix is loaded and validated in ``pytest_configure``: a bad row stops pytest with a usage
error naming the file, scenario and field before any test (or server) starts.  Each selected
(scenario, backend) pair becomes one ``chaos``-marked case of ``harness/matrix_test.py`` (collected
through ``tests/test_chaos_matrix.py`` here, and added to what pytest collects given ``--chaos-matrix``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from harness.model import journal as journal_mod
from harness.model.fields import BACKENDS
from harness.model.journal import JOURNAL_ENV
from harness.model.matrix import MatrixError, elsewhere, load_matrix, select
from harness.paths import PACKAGE, ROOT

pytest_plugins = ["harness.fixtures"]

MATRIX_KEY = pytest.StashKey[list]()
SHARD_KEY = pytest.StashKey["Shard | None"]()  # --chaos-shard, parsed
PLAN_KEY = pytest.StashKey["Plan | None"]()  # this shard's part of the split, once the cases are collected
ROUND_KEY = pytest.StashKey["dict[str, int] | None"]()  # this session's run --repeat round
ABANDONED_KEY = pytest.StashKey[list]()  # what the session removed of an earlier, killed one


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "Prefect crash-chaos harness")
    group.addoption("--chaos-backend", action="append", choices=BACKENDS, default=None,
                    help="backend(s) to run scenarios on (repeatable; default: local)")
    group.addoption("--chaos-scenario", action="append", default=None, metavar="ID_OR_GLOB",
                    help="run only scenarios whose id matches (repeatable; globs like 'kill-*')")
    group.addoption("--chaos-tier", choices=["quick", "full"], default="full",
                    help="quick: the rows that together try every fault kind on each backend in a few minutes; "
                         "full (default): every row")
    group.addoption("--chaos-matrix", default=None, metavar="PATH",
                    help="matrix file or directory (default: <rootdir>/scenarios)")
    group.addoption("--chaos-journal", default=None, metavar="FILE",
                    help="run journal to append to (default: reports/journal-<UTC time>.jsonl)")
    group.addoption("--chaos-database", choices=["sqlite", "postgres"], default="sqlite",
                    help="the servers' database: sqlite (default) or postgres (testcontainers' PostgreSQL "
                         "where an image is present, else a private local cluster); a scenario may require one")
    group.addoption("--chaos-concurrency", type=int, default=1, metavar="N",
                    help="run up to N cases at once in this process, against one server per backend "
                         "(longest first; a case that faults the server gets its own); default 1")
    group.addoption("--chaos-prepare-ahead", type=int, default=1, metavar="N",
                    help="deploy up to N of the next cases (their workers) while the current ones run, and "
                         "clean a finished case up while the next runs; 0 does each in its case's turn; default 1")
    group.addoption("--chaos-shard", default=None, metavar="I/N",
                    help="run shard I of N: the selected cases split into N parts of about equal duration "
                         "(each case's time from the newest journal that ran it, else its bound); every "
                         "shard of a run must be given the same selection and journals")
    group.addoption("--chaos-durations", action="append", default=None, metavar="PATH",
                    help="journals (files, or directories of journal-*.jsonl) that --chaos-shard takes the "
                         "cases' durations from (repeatable; default: the journal's directory)")
    group.addoption("--chaos-kube-context", default=None, metavar="NAME",
                    help="kind: use this existing kind context instead of creating a cluster "
                         "(refused unless --chaos-allow-context names it too)")
    group.addoption("--chaos-allow-context", action="append", default=[], metavar="NAME",
                    help="kind: allow the harness to create, fault and delete its objects in this "
                         "existing context (exact name; repeatable)")
    group.addoption("--chaos-kube-version", default=None, metavar="VERSION",
                    help="kind: the Kubernetes version of the cluster the harness creates (a kindest/node tag)")


def backend_options(config: pytest.Config) -> dict:
    return {"database": config.getoption("--chaos-database"),
            "kube_context": config.getoption("--chaos-kube-context"),
            "allow_context": config.getoption("--chaos-allow-context"),
            "kube_version": config.getoption("--chaos-kube-version")}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: a (scenario, backend) of the matrix against real Prefect")
    config.addinivalue_line("markers", "integration: starts real Prefect processes; slower than unit tests")
    config.addinivalue_line("markers", "kind: needs a kind cluster (skips, saying why, where none can start)")
    wanted = os.environ.get("CHAOS_PREFECT_VERSION")
    if wanted:  # a dependency must not silently swap the Prefect version under test
        from harness.run.session import prefect_version

        if prefect_version() != wanted:
            raise pytest.UsageError(f"CHAOS_PREFECT_VERSION={wanted}, but Prefect {prefect_version()} is installed "
                                    "(a dependency upgraded it?): the run would measure the wrong version")
    try:
        config.stash[ROUND_KEY] = journal_mod.repeat_round()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    context = config.getoption("--chaos-kube-context")
    if context:  # the interlock, before anything runs: an existing context must be allowed by name
        from harness.backends.kind.cluster import ContextRefused, check_context

        try:
            check_context(context, config.getoption("--chaos-allow-context"), created=None)
        except ContextRefused as exc:
            raise pytest.UsageError(str(exc)) from None
    config.stash[SHARD_KEY] = config.stash[PLAN_KEY] = None
    if config.getoption("--chaos-shard"):
        from harness.run.shard import parse

        try:
            config.stash[SHARD_KEY] = parse(config.getoption("--chaos-shard"))
        except ValueError as exc:
            raise pytest.UsageError(f"--chaos-shard: {exc}") from None
    concurrency = config.getoption("--chaos-concurrency")
    if concurrency < 1:
        raise pytest.UsageError(f"--chaos-concurrency must be at least 1, got {concurrency}")
    if config.getoption("--chaos-prepare-ahead") < 0:
        raise pytest.UsageError(f"--chaos-prepare-ahead must be at least 0, got {config.getoption('--chaos-prepare-ahead')}")
    if concurrency > 1 and (config.getoption("numprocesses", None) or hasattr(config, "workerinput")):
        raise pytest.UsageError("--chaos-concurrency runs cases concurrently in one process; with pytest-xdist "
                                "(-n) each worker runs its own, one at a time: use one or the other")
    explicit = config.getoption("--chaos-matrix")
    if explicit and not any(Path(a.split("::")[0]).name in (SHIPPED.name, "test_chaos_matrix.py") for a in config.args):
        # a matrix of your own: its cases run as the test that ships with the plugin, no file to copy
        config.args.append(str(SHIPPED))
    matrix = Path(explicit) if explicit else config.rootpath / "scenarios"
    if explicit or matrix.exists():
        try:
            config.stash[MATRIX_KEY] = load_matrix(matrix)
        except MatrixError as exc:
            raise pytest.UsageError(str(exc)) from None
        _check_patterns(config.stash[MATRIX_KEY], matrix, config.getoption("--chaos-scenario") or [],
                        config.getoption("--chaos-backend") or ["local"], config.getoption("--chaos-tier"))
    else:
        config.stash[MATRIX_KEY] = []
    if not hasattr(config, "workerinput"):  # xdist workers inherit the controller's choice
        # a project of your own keeps its journals in its own reports/
        path = (config.getoption("--chaos-journal") or os.environ.get(JOURNAL_ENV)
                or journal_mod.default_path(None if config.rootpath == ROOT else config.rootpath / "reports"))
        if config.stash[MATRIX_KEY] and (why := journal_mod.unwritable(path)):
            raise pytest.UsageError(f"the journal {path} cannot be written: {why}")
        os.environ[JOURNAL_ENV] = str(Path(path).resolve())


def _check_patterns(scenarios: list, matrix: Path, patterns: list[str], backends: list[str], tier: str) -> None:
    """A --chaos-scenario that selects nothing is a usage error (a typo would otherwise pass as a
    run of nothing), saying where the pattern does match when another backend or tier has it."""
    for pattern in patterns:
        if select(scenarios, [pattern], backends, tier):
            continue
        others, in_full = elsewhere(scenarios, pattern, backends, tier)
        where = (f" on {', '.join(backends)} (it does on {', '.join(others)}: add --chaos-backend)" if others
                 else f" in the {tier} tier (it does in the full tier: drop --chaos-tier)" if in_full else "")
        raise pytest.UsageError(f"--chaos-scenario {pattern!r} matches no scenario of {matrix}{where}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chaos_case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    pairs = select(config.stash[MATRIX_KEY], config.getoption("--chaos-scenario"),
                   config.getoption("--chaos-backend") or ["local"], config.getoption("--chaos-tier"))
    metafunc.parametrize("chaos_case", [pytest.param(p, id=f"{p[0].id}@{p[1]}") for p in pairs])


CASES_KEY = pytest.StashKey[list]()
SHIPPED = PACKAGE / "matrix_test.py"  # the matrix's test, in the package


def _case_of(item: pytest.Item):
    """The (scenario, backend) a collected item runs, or None for any other test."""
    return getattr(getattr(item, "callspec", None), "params", {}).get("chaos_case")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    """The cases are known before any runs, in the order they will run (the scheduler prepares the
    next while one runs): one at a time, each system's cases together; with --chaos-concurrency,
    longest first."""
    from harness.run.schedule import by_system, plan

    seen, twice = set(), []
    for item in items:  # the shipped test collected twice (also through a file that imports it): once
        case = _case_of(item)
        if case is not None and (case[0].id, case[1]) in seen:
            twice.append(item)
        elif case is not None:
            seen.add((case[0].id, case[1]))
    if twice:
        items[:] = [i for i in items if i not in twice]
        config.hook.pytest_deselected(items=twice)
    cases = [c for c in map(_case_of, items) if c is not None]
    if config.stash.get(SHARD_KEY, None) is not None:
        cases = _keep_shard(config, items, cases)
    # one at a time, each system's cases together (a system is retired after its last case);
    # at once, longest first
    cases = by_system(cases) if config.getoption("--chaos-concurrency") <= 1 else plan(cases)
    config.stash[CASES_KEY] = cases
    _console(config, cases, {i.nodeid for i in items if _case_of(i) is not None},
             any("chaos" in getattr(i, "fixturenames", ()) for i in items))
    rank = {(s.id, b): i for i, (s, b) in enumerate(cases)}
    # a stable sort: other tests keep their order, first
    items.sort(key=lambda item: -1 if (c := _case_of(item)) is None else rank[(c[0].id, c[1])])


def _keep_shard(config: pytest.Config, items: list, cases: list) -> list:
    """Deselect the cases of the other shards; the split is the same in every shard job given the
    same selection and journals (and in every xdist worker, which collects for itself)."""
    from harness.run import shard as shard_mod
    from harness.run.session import prefect_version

    journal = Path(os.environ.get(JOURNAL_ENV) or journal_mod.default_path())
    sources = config.getoption("--chaos-durations") or [journal.parent]
    plan = shard_mod.plan(config.stash[SHARD_KEY], cases, shard_mod.journal_files(sources, exclude=journal),
                          prefect_version())
    config.stash[PLAN_KEY] = plan
    mine = set(plan.mine)
    keep = [i for i in items if (c := _case_of(i)) is None or (c[0].id, c[1]) in mine]
    dropped = [i for i in items if (c := _case_of(i)) is not None and (c[0].id, c[1]) not in mine]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and not hasattr(config, "workerinput"):
        reporter.write_line(plan.describe())
    return [c for c in cases if (c[0].id, c[1]) in mine]


REPORT_KEY = pytest.StashKey[str]()


CONSOLE_KEY = pytest.StashKey[object]()
STARTED_KEY = pytest.StashKey[float]()


def _console(config: pytest.Config, cases: list, nodeids: set[str], fixture_runs: bool = False) -> None:
    """Live progress (``harness.run.progress``) on the terminal, unless ``-q``: each case's start,
    faults and end here; under pytest-xdist the controller prints each case's end from its worker's
    report (a worker's own lines would not reach the terminal).  The cases' own dots (and their
    file's name) are left out, unless ``-v``: they would break into those lines, which say more.
    Runs of the ``chaos`` fixture have their lines too (not counted among the cases)."""
    import time

    from harness.run import progress

    config.stash[STARTED_KEY] = time.time()
    if not (cases or fixture_runs) or config.getoption("verbose", 0) < 0 or hasattr(config, "workerinput"):
        return
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is None:
        return
    capture = config.pluginmanager.getplugin("capturemanager")
    lock = threading.Lock()

    def out(line: str) -> None:  # flushed: a pipe (a CI log) buffers, and a second Ctrl-C ends at once
        reporter.ensure_newline()
        if getattr(getattr(reporter, "_tw", None), "width_of_current_line", 0):  # after another test's dot
            reporter.write("\n")
        reporter.write(line + "\n", flush=True)

    def write(line: str) -> None:
        with lock:
            if capture is not None:  # from a case's thread, mid-test: past the test's capture
                with capture.global_and_fixture_disabled():
                    out(line)
            else:
                out(line)

    from harness.run import shard
    from harness.run.session import prefect_version

    journal = Path(os.environ.get(JOURNAL_ENV) or journal_mod.default_path())
    try:
        found = shard.estimate(cases, shard.journal_files([journal.parent], exclude=journal), prefect_version())
        estimates = {k: e.seconds for k, e in found.items()}
    except Exception:
        estimates = {}
    xdist = config.getoption("numprocesses", None)
    at_once = config.getoption("--chaos-concurrency") if not xdist else (xdist if isinstance(xdist, int) else 2)
    console = progress.Console(write, [(s.id, b) for s, b in cases], estimates, at_once)
    config.stash[CONSOLE_KEY] = console
    if config.getoption("verbose", 0) == 0:
        config.pluginmanager.register(_NoDots(nodeids), "chaos-no-dots")
        reporter.showfspath = False  # nor the file name pytest writes before a file's first test
    if xdist:
        config.pluginmanager.register(_WorkerEnds(console), "chaos-worker-ends")
    else:
        progress.listen(console)


class _NoDots:
    """A case's passed or failed call reported with no letter: the terminal counts it in its
    summary (and lists a failure there) but writes no dot; the console's end line stands for it."""

    def __init__(self, nodeids: set[str]) -> None:
        self.nodeids = nodeids

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report, config):  # noqa: ARG002
        if report.when == "call" and report.nodeid in self.nodeids and report.outcome in ("passed", "failed"):
            return report.outcome, "", ""
        return None


class _WorkerEnds:
    """Under pytest-xdist: a case's end, from its worker's report (``matrix_test`` attaches it)."""

    def __init__(self, console) -> None:
        self.console = console

    def pytest_runtest_logreport(self, report) -> None:
        ended = dict(getattr(report, "user_properties", None) or []).get("chaos_end")
        if report.when == "call" and ended is not None:
            self.console.ended(ended["case"], ended["entry"], ended.get("line"))


def report_path(journal: Path) -> Path:
    """reports/journal-<stamp>.jsonl -> reports/report-<stamp>.html"""
    stem = journal.stem.replace("journal-", "report-", 1) if journal.stem.startswith("journal-") else f"{journal.stem}-report"
    return journal.with_name(stem + ".html")


def earlier_journals(journal: Path) -> list[Path]:
    """The other journals beside this one, older first: the report's trend."""
    others = [p for p in journal.parent.glob("journal-*.jsonl") if p.resolve() != journal.resolve()]
    return sorted((p for p in others if p.stat().st_mtime <= journal.stat().st_mtime), key=lambda p: p.stat().st_mtime)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller writes the HTML report once every scenario of the session has finished."""
    config = session.config
    plan = config.stash.get(PLAN_KEY, None)
    if plan is not None and not plan.mine and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK  # more shards than cases: this one has nothing to do
    path = Path(os.environ.get(JOURNAL_ENV, ""))
    if hasattr(config, "workerinput") or not path.is_file():
        return
    from harness.report import html as htmlreport

    try:
        out, report = htmlreport.write([path], report_path(path), earlier_journals(path))
        config.stash[REPORT_KEY] = str(out) + (f" ({len(report.problems)} journal problem(s) listed in it)"
                                               if report.problems else "")
    except Exception as exc:  # a report that cannot be written must not hide the results
        config.stash[REPORT_KEY] = f"not written: {type(exc).__name__}: {exc}"


def _summary(terminalreporter, config: pytest.Config, path: Path) -> None:
    """This session's refuted claims, stuck runs and failed verdicts, with their journal lines."""
    from harness.run import progress

    since = config.stash.get(STARTED_KEY, None)
    if since is None or config.getoption("verbose", 0) < 0:
        return
    entries = []
    try:
        for number, entry in enumerate(journal_mod.read(path), 1):
            if (entry.get("started_at") or 0) >= since:
                entries.append((number, entry))
    except OSError:
        return
    if entries:
        terminalreporter.write_sep("-", "chaos summary")
        for line in progress.final_summary(entries):
            terminalreporter.write_line(line)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    removed = config.stash.get(ABANDONED_KEY, [])
    if removed:  # an earlier harness was killed before its cleanup: say what it had left running
        terminalreporter.write_sep("-", "left by an earlier, killed harness session, and removed")
        for item in removed:
            terminalreporter.write_line(item)
    path = Path(os.environ.get(JOURNAL_ENV, ""))
    if not hasattr(config, "workerinput") and path.is_file():
        _summary(terminalreporter, config, path)
        terminalreporter.write_sep("-", "chaos journal")
        terminalreporter.write_line(str(path))


def pytest_unconfigure(config: pytest.Config) -> None:
    """The report's path is the session's last line."""
    from harness.run import progress

    console = config.stash.get(CONSOLE_KEY, None)
    if console is not None:
        progress.unlisten(console)
    line = config.stash.get(REPORT_KEY, None)
    if line is not None and not os.environ.get("CHAOS_REPORT_QUIET"):
        writer = config.get_terminal_writer()
        writer.line(f"chaos report: {line}")
