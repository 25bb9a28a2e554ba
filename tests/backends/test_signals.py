"""Signal faults on real processes: the harness's waits leave a child's exit status to its Popen."""

from __future__ import annotations

import sys
import time

import psutil
import pytest

from harness.backends.local.signals import SignalFault
from harness.sut import procs

IGNORE_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"


def until(predicate, what: str, timeout: float = 10) -> None:
    """Poll without procs.wait_for, which gives up once another test stopped a session."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def spawn(tmp_path, code: str = "import time; time.sleep(60)") -> procs.Spawned:
    child = procs.Spawned([sys.executable, "-c", code], {"PATH": "/usr/bin:/bin"}, tmp_path / "child.log")
    until(lambda: "up" in child.tail() or "up" not in code, "the child to start")
    return child


@pytest.mark.parametrize("kind, status", [("kill", -9), ("terminate", -15)])
def test_exit_status_survives_the_fault(tmp_path, kind, status):
    child = spawn(tmp_path)
    fault = SignalFault(kind, lambda: [psutil.Process(child.pid)], 2.0, "child")
    detail = fault.inject()
    assert detail["pids"] == [child.pid]
    assert procs.wait_gone([psutil.Process(child.pid)], 5) == []  # a zombie is gone
    assert child.popen.wait(timeout=5) == status  # not a reaped 0


def test_terminate_sigkills_after_grace_without_holding_up_the_watch(tmp_path):
    child = spawn(tmp_path, IGNORE_TERM)
    fault = SignalFault("terminate", lambda: [psutil.Process(child.pid)], 1.5, "child")
    began = time.monotonic()
    detail = fault.inject()
    assert time.monotonic() - began < 1.5  # the grace runs beside the watch: heals and polls go on
    assert detail["signal"] == "SIGTERM" and child.running()  # it ignores SIGTERM, and is still in its grace
    assert fault.close() == {"sigkilled_after_grace": [child.pid]}  # close waits the grace out
    assert 1.5 <= time.monotonic() - began < 10
    assert child.popen.wait(timeout=5) == -9
    # a heal that restarts a task worker closed first: the scenario's end records the SIGKILL once
    assert fault.close() == {}


def test_a_process_that_exits_in_its_grace_is_not_sigkilled(tmp_path):
    child = spawn(tmp_path)
    fault = SignalFault("terminate", lambda: [psutil.Process(child.pid)], 5, "child")
    fault.inject()
    assert fault.close() == {"sigkilled_after_grace": []}
    assert child.popen.wait(timeout=5) == -15


def test_freeze_then_heal(tmp_path):
    child = spawn(tmp_path)
    fault = SignalFault("freeze", lambda: [psutil.Process(child.pid)], 0, "child")
    fault.inject()
    until(lambda: psutil.Process(child.pid).status() == psutil.STATUS_STOPPED, "SIGSTOP")
    assert fault.heal() == {"continued": [child.pid]}
    until(lambda: psutil.Process(child.pid).status() != psutil.STATUS_STOPPED, "SIGCONT")
    child.stop(grace=1)
    assert not child.running()


def test_no_target_is_a_lookup_error():
    with pytest.raises(LookupError, match="no live child"):
        SignalFault("kill", lambda: [], 0, "child").inject()


def test_wait_gone_returns_survivors(tmp_path):
    child = spawn(tmp_path)
    try:
        assert [p.pid for p in procs.wait_gone([psutil.Process(child.pid)], 0.2)] == [child.pid]
    finally:
        child.stop(grace=1)
