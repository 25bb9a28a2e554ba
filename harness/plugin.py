"""The pytest plugin: options, markers, matrix validation and parametrization.  Wiring only.

The matrix is loaded and validated in ``pytest_configure``: a bad row stops pytest with a usage
error naming the file, scenario and field before any test (or server) starts.  Each selected
(scenario, backend) pair becomes one ``chaos``-marked case of ``tests/test_chaos_matrix.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import journal as journal_mod
from harness.journal import JOURNAL_ENV
from harness.scenario import BACKENDS, MatrixError, load_matrix, select

pytest_plugins = ["harness.fixtures"]

MATRIX_KEY = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "Prefect crash-chaos harness")
    group.addoption("--chaos-backend", action="append", choices=BACKENDS, default=None,
                    help="backend(s) to run scenarios on (repeatable; default: local)")
    group.addoption("--chaos-scenario", action="append", default=None, metavar="ID_OR_GLOB",
                    help="run only scenarios whose id matches (repeatable; globs like 'kill-*')")
    group.addoption("--chaos-matrix", default=None, metavar="PATH",
                    help="matrix file or directory (default: <rootdir>/scenarios)")
    group.addoption("--chaos-journal", default=None, metavar="FILE",
                    help="run journal to append to (default: reports/journal-<UTC time>.jsonl)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: a (scenario, backend) of the matrix against real Prefect")
    config.addinivalue_line("markers", "integration: starts real Prefect processes; slower than unit tests")
    explicit = config.getoption("--chaos-matrix")
    matrix = Path(explicit) if explicit else config.rootpath / "scenarios"
    if explicit or matrix.exists():
        try:
            config.stash[MATRIX_KEY] = load_matrix(matrix)
        except MatrixError as exc:
            raise pytest.UsageError(str(exc)) from None
    else:
        config.stash[MATRIX_KEY] = []
    if not hasattr(config, "workerinput"):  # xdist workers inherit the controller's choice
        path = config.getoption("--chaos-journal") or os.environ.get(JOURNAL_ENV) or journal_mod.default_path()
        os.environ[JOURNAL_ENV] = str(Path(path).resolve())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chaos_case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    pairs = select(config.stash[MATRIX_KEY], config.getoption("--chaos-scenario"),
                   config.getoption("--chaos-backend") or ["local"])
    metafunc.parametrize("chaos_case", [pytest.param(p, id=f"{p[0].id}@{p[1]}") for p in pairs])


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    path = Path(os.environ.get(JOURNAL_ENV, ""))
    if not hasattr(config, "workerinput") and path.is_file():
        terminalreporter.write_sep("-", "chaos journal")
        terminalreporter.write_line(str(path))
