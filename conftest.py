"""Repository-wide pytest configuration.

The harness's own plugin (options, markers, matrix validation, fixtures) arrives through the
``pytest11`` entry point of the installed package (``harness.plugin``); this file only adds what
the repository's tests share.
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


@pytest.fixture
def repo_root() -> Path:
    return ROOT
