"""pytest fixtures of the harness: the session (systems under test, cleanup) and the journal."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from harness.journal import JOURNAL_ENV, Journal
from harness.session import ChaosSession


@pytest.fixture(scope="session")
def chaos_session(pytestconfig: pytest.Config) -> Iterator[ChaosSession]:
    """One harness session per pytest process; torn down on failure and on Ctrl-C too."""
    from harness.plugin import backend_options

    session = ChaosSession(backend_options(pytestconfig))
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(scope="session")
def chaos_journal() -> Journal:
    return Journal(os.environ[JOURNAL_ENV])
