"""pytest fixtures of the harness: the session (systems under test, cleanup) and the journal."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from harness.model.journal import JOURNAL_ENV, Journal
from harness.run.case import Runner
from harness.run.schedule import Scheduler
from harness.run.session import ChaosSession, prefect_version


@pytest.fixture(scope="session")
def chaos_session(pytestconfig: pytest.Config) -> Iterator[ChaosSession]:
    """One harness session per pytest process; torn down on failure and on Ctrl-C too."""
    from harness.plugin import backend_options
    from harness.run import guard

    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    if capture is not None:  # the guardian's report goes to the terminal, not to a test's capture
        with capture.global_and_fixture_disabled():
            guard.start()
    session = ChaosSession(backend_options(pytestconfig))
    from harness.plugin import ABANDONED_KEY

    pytestconfig.stash[ABANDONED_KEY] = session.abandoned
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(scope="session")
def chaos_journal(pytestconfig: pytest.Config) -> Journal:
    from harness.plugin import PLAN_KEY, ROUND_KEY

    plan = pytestconfig.stash.get(PLAN_KEY, None)
    return Journal(os.environ[JOURNAL_ENV], pytestconfig.stash[ROUND_KEY],  # checked in pytest_configure
                   plan.record() if plan is not None else None)


@pytest.fixture(scope="session")
def chaos_scheduler(pytestconfig: pytest.Config, chaos_session: ChaosSession, chaos_journal: Journal) -> Iterator[Scheduler]:
    """Runs the session's cases, --chaos-concurrency at a time; stopped before the session closes."""
    from harness.plugin import CASES_KEY

    # an xdist worker collects every case but runs a share of them: it cannot know what comes next
    ahead = 0 if hasattr(pytestconfig, "workerinput") else pytestconfig.getoption("--chaos-prepare-ahead")
    scheduler = Scheduler(chaos_session, Runner(chaos_journal, prefect_version()),
                          pytestconfig.getoption("--chaos-concurrency"), ahead)
    scheduler.planned = pytestconfig.stash.get(CASES_KEY, [])
    try:
        yield scheduler
    finally:
        failed = scheduler.close()
        if failed:  # a case's result is journalled; what it left behind is not silently ignored
            raise RuntimeError("cleanup failed after: " + "; ".join(f"{k[0]}@{k[1]}: {why}" for k, why in failed.items()))


@pytest.fixture
def chaos(request: pytest.FixtureRequest, chaos_session: ChaosSession, chaos_journal: Journal):
    """Your own flows under faults (``harness.chaos``): ``chaos.run(flow, parameters=...,
    faults=[kill(when=task_running("load"))])`` and ``chaos.rerun(result)``, on the session's
    system of the first ``--chaos-backend`` (local by default), each run a line in the journal
    and the HTML report.  A backend that cannot start here skips the test, saying why."""
    from harness.backends import Unavailable
    from harness.chaos import Chaos

    backend = (request.config.getoption("--chaos-backend") or ["local"])[0]
    made = Chaos(backend, journal=chaos_journal, session=chaos_session, name=request.node.name)
    try:
        made.__enter__()
    except Unavailable as exc:
        pytest.skip(f"backend {backend} unavailable: {exc}")
    return made
