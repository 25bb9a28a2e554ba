"""The expected-state matrix as tests: one case per (scenario, backend), parametrized by the
plugin from ``scenarios/`` (or ``--chaos-matrix DIR``).  Select with ``-m chaos``,
``--chaos-scenario`` and ``--chaos-backend``.

It ships with the plugin: ``pytest --chaos-matrix DIR`` in a project of your own collects it
(the plugin adds this file to what pytest collects), so your rows run as tests without a file of
this repository; ``python -m harness run`` runs it too."""

import os

import pytest

from harness.backends import Unavailable
from harness.report.text import describe
from harness.run.progress import brief

pytestmark = pytest.mark.chaos


def test_scenario(chaos_case, chaos_scheduler, chaos_journal, request):
    scenario, backend = chaos_case
    try:
        result = chaos_scheduler.result(chaos_case)
    except Unavailable as exc:
        # CHAOS_REQUIRE_BACKENDS=docker (the nightly workflow sets it) turns this skip into a failure
        if backend in os.environ.get("CHAOS_REQUIRE_BACKENDS", "").split(","):
            pytest.fail(f"backend {backend} is required but unavailable: {exc}", pytrace=False)
        pytest.skip(f"backend {backend} unavailable: {exc}")
    # the controller of pytest-xdist prints the case's end from this (harness.run.progress)
    request.node.user_properties.append(("chaos_end", {"case": f"{scenario.id}@{backend}",
                                                       "entry": brief(result),
                                                       "line": chaos_journal.lines.get(result.get("instance"))}))
    if result["verdict"]["outcome"] != "pass":
        pytest.fail(describe(result, journal=chaos_journal.path), pytrace=False)
