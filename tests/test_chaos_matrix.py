"""The repository's matrix as tests (``pytest tests`` collects them here): the test itself ships
with the plugin, ``harness.matrix_test``."""

from harness.matrix_test import pytestmark, test_scenario

__all__ = ["pytestmark", "test_scenario"]
