"""The expected-state matrix as tests: one case per (scenario, backend), parametrized by the
plugin from ``scenarios/``.  Select with ``-m chaos``, ``--chaos-scenario`` and ``--chaos-backend``."""

import os

import pytest

from harness.backends import Unavailable
from harness.report import describe
from harness.run import run_scenario
from harness.session import prefect_version

pytestmark = pytest.mark.chaos


def test_scenario(chaos_case, chaos_session, chaos_journal):
    scenario, backend = chaos_case
    try:
        system = chaos_session.system(backend)
    except Unavailable as exc:
        # CHAOS_REQUIRE_BACKENDS=docker (the nightly workflow sets it) turns this skip into a failure
        if backend in os.environ.get("CHAOS_REQUIRE_BACKENDS", "").split(","):
            pytest.fail(f"backend {backend} is required but unavailable: {exc}", pytrace=False)
        pytest.skip(f"backend {backend} unavailable: {exc}")
    result = run_scenario(scenario, system, chaos_journal, prefect_version())
    if result["verdict"]["outcome"] != "pass":
        pytest.fail(describe(result), pytrace=False)
