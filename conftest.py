"""Repository-wide pytest configuration.

The harness's own plugin (options, markers, matrix validation, fixtures) arrives through the
``pytest11`` entry point of the installed package (``harness.plugin``); this file only adds what
the repository's tests share.
"""

import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests"))  # helpers the tests of every package share (stub_http)


@pytest.fixture
def repo_root() -> Path:
    return ROOT


def _wait_until(predicate, timeout, what):
    """Poll ``predicate`` until it returns something truthy (returned); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def wait_until():
    return _wait_until


@pytest.fixture(scope="module")
def local():
    """A started local system (a real Prefect server) of a session of the module's own."""
    from harness.run.session import ChaosSession

    session = ChaosSession()
    try:
        yield session.system("local")
    finally:
        session.close()
