"""pytest fixtures of the harness: the session (systems under test, cleanup) and the journal."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from harness.journal import JOURNAL_ENV, Journal
from harness.session import ChaosSession


@pytest.fixture(scope="session")
def chaos_session() -> Iterator[ChaosSession]:
    """One harness session per pytest process; torn down on failure and on Ctrl-C too."""
    session = ChaosSession()
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(scope="session")
def chaos_journal() -> Journal:
    return Journal(os.environ[JOURNAL_ENV])
