"""Cleanup, proven on real runs: Ctrl-C and SIGKILL of the harness leave nothing behind."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from harness.backends.local import cgroups
from harness.run.session import WORKDIR_PREFIX, clean_abandoned
from harness.sut import procs
from harness.sut.net import port_open

pytestmark = pytest.mark.integration

MATRIX = """
- id: quick-one
  title: finishes before the interrupt; its journal line must survive it
  backends: [local]
  workload: {flow: pipeline, parameters: {steps: 1, sleep: 0}}
  expect: {final: COMPLETED, settle_within_seconds: 60}
- id: frozen-in-a-cgroup
  title: a flow-run process inside a memory cgroup, frozen, when the harness is interrupted
  backends: [local]
  workload: {flow: memory_hog, parameters: {mb: 8, prepare_seconds: 120}}
  faults:
    - {kind: oom, mem_limit: 1Gi, when: {task: prepare, state: running}}
    - {kind: freeze, when: {after_seconds: 0}}
  expect: {final: CRASHED, settle_within_seconds: 300}
"""
# run third, one at a time: its worker is deployed ahead while the frozen case runs (a worker of
# its own: its row sets the worker's environment; a row that does not runs on the shared worker)
NEVER_REACHED = """
- id: never-reached
  title: deployed ahead of its turn, which never comes
  backends: [local]
  workload: {flow: pipeline, parameters: {steps: 1, sleep: 0}}
  worker: {env: {PREFECT_WORKER_QUERY_SECONDS: "1"}}
  expect: {final: COMPLETED, settle_within_seconds: 60}
"""


def session_processes(owner: int) -> list[psutil.Process]:
    return [p for p in psutil.process_iter() if procs.environ(p).get(procs.OWNER_ENV) == str(owner)]


def _status(p: psutil.Process) -> str:
    try:
        return p.status()
    except psutil.Error:
        return "gone"


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def server_port(processes) -> int:
    for p in processes:
        cmd = p.cmdline()
        if "server" in cmd and "--port" in cmd:
            return int(cmd[cmd.index("--port") + 1])
    raise AssertionError("no server process among the session's processes")


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_ctrl_c_mid_run_leaves_nothing_and_keeps_finished_results(tmp_path, repo_root, wait_until, concurrency):
    """Sequentially (a third case deployed ahead, waiting for its turn), and with both cases
    running at once in threads (--chaos-concurrency 2)."""
    ahead = concurrency == "1"
    (tmp_path / "m.yaml").write_text(textwrap.dedent(MATRIX) + (textwrap.dedent(NEVER_REACHED) if ahead else ""))
    journal = tmp_path / "journal.jsonl"
    harness = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--matrix", str(tmp_path / "m.yaml"), "--journal", str(journal),
         "--chaos-concurrency", concurrency, "-p", "no:cacheprovider"], cwd=repo_root, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
        preexec_fn=procs.default_signals)  # as from a terminal: SIGINT is ignored in a background job's children
    try:
        seen = {}

        def frozen_run():
            if harness.poll() is not None:  # e.g. its session failed to start: say so now, not at the bound
                raise AssertionError(f"the harness exited with status {harness.returncode} before "
                                     "the second scenario froze")
            found = [p for p in session_processes(harness.pid) if "PREFECT__FLOW_RUN_ID" in procs.environ(p)]
            lines = journal.read_text().count("\n") if journal.exists() else 0
            waiting = [p for p in session_processes(harness.pid)
                       if procs.environ(p).get("CHAOS_INSTANCE", "").startswith("never-reached-")]
            statuses = {p.pid: _status(p) for p in found}
            seen.update(journal_lines=lines, flow_run_processes=statuses, deployed_ahead=len(waiting))
            if ahead and not waiting:
                return None
            stopped = found and all(s == psutil.STATUS_STOPPED for s in statuses.values())
            return found if lines == 1 and stopped else None  # quick-one has finished, the second is frozen

        try:
            # the bound covers a loaded CI machine (the other xdist worker runs docker cases); the
            # frozen case itself waits 300 s for its verdict, so it is still frozen when this returns
            flow_procs = wait_until(frozen_run, 270, "a frozen flow-run process of the second scenario")
        except AssertionError as failed:
            harness.kill()
            raise AssertionError(f"{failed}; last seen: {seen}; the harness printed:\n"
                                 f"{harness.communicate(timeout=30)[0][-6000:]}") from None
        session = procs.environ(flow_procs[0])[procs.SESSION_ENV]
        live = session_processes(harness.pid)
        port = server_port(live)
        assert cgroups.leftovers(session) or cgroups.version() is None, "the OOM fault made no cgroup"
        workdirs = list(Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}{session}-*"))
        assert workdirs and port_open(port) and len(live) >= 3  # server, worker, flow run
        # Prefect's own temporary files (the process worker's working directories, the runner's
        # storage and workspace attempts) go under the session's workdir, which is removed with
        # it, not into the machine's /tmp, where a killed worker or flow run leaves them for good
        tmpdirs = {Path(procs.environ(p).get("TMPDIR", tempfile.gettempdir())) for p in live}
        assert all(any(d in workdirs for d in t.parents) for t in tmpdirs), (tmpdirs, workdirs)
        harness.send_signal(signal.SIGINT)
        output, _ = harness.communicate(timeout=120)
    finally:
        if harness.poll() is None:
            harness.kill()
    assert not [p.pid for p in live if procs.alive(p.pid)], output
    assert procs.find(session) == []
    assert cgroups.leftovers(session) == []
    assert not any(d.exists() for d in workdirs)
    assert not any(t.exists() for t in tmpdirs)
    assert not port_open(port)
    lines = [json.loads(l) for l in journal.read_text().splitlines()]
    assert [l["scenario"] for l in lines] == ["quick-one"]
    assert lines[0]["verdict"]["outcome"] == "pass"


def test_leftovers_of_a_sigkilled_harness_are_removed_by_the_next_session():
    script = ("import time; from harness.run.session import ChaosSession; s = ChaosSession(); s.system('local'); "
              "print(s.id, s.workdir, flush=True); time.sleep(600)")
    harness = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        session, workdir = harness.stdout.readline().split()
        with procs.machine_lock("reap"):  # no session started meanwhile (another xdist worker) reaps first
            os.kill(harness.pid, signal.SIGKILL)
            harness.wait(10)
            left = procs.find(session)
            assert left and Path(workdir).exists()  # the server outlived its harness
            removed = clean_abandoned()
    finally:
        if harness.poll() is None:
            harness.kill()
    assert procs.find(session) == []
    assert not Path(workdir).exists()
    assert str(workdir) in removed


def test_an_image_build_directory_of_a_sigkilled_harness_is_removed_by_the_next_session(tmp_path):
    script = "from harness.backends.docker.engine import scratch; import time\nwith scratch() as d:\n    print(d, flush=True); time.sleep(600)"
    harness = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        left = Path(harness.stdout.readline().strip())
        with procs.machine_lock("reap"):  # as above: this test's own call is the one that reaps
            os.kill(harness.pid, signal.SIGKILL)  # mid-build: its directory outlives it
            harness.wait(10)
            assert left.name.startswith(WORKDIR_PREFIX) and procs.owner(left) == harness.pid
            removed = clean_abandoned()
    finally:
        if harness.poll() is None:
            harness.kill()
    assert not left.exists() and str(left) in removed


def test_the_machine_lock_excludes_other_processes_and_is_reentrant_in_a_thread(tmp_path, monkeypatch):
    monkeypatch.setattr(procs, "LOCK_DIR", tmp_path)
    probe = [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)",
             str(tmp_path / "chaos-harness-t.lock")]
    with procs.machine_lock("t"):
        with procs.machine_lock("t"):  # a nested hold (clean_abandoned inside a test's hold) passes
            pass
        assert subprocess.run(probe, capture_output=True).returncode != 0  # still held after the inner exit
    assert subprocess.run(probe, capture_output=True).returncode == 0


REPEATED = """
- id: quick-one
  title: finishes in round 1 before the interrupt; its journal line must survive it
  backends: [local]
  workload: {flow: pipeline, parameters: {steps: 1, sleep: 0}}
  expect: {final: COMPLETED, settle_within_seconds: 60}
- id: slow-one
  title: still running when round 1 is interrupted
  backends: [local]
  workload: {flow: pipeline, parameters: {steps: 1, sleep: 120}}
  expect: {final: COMPLETED, settle_within_seconds: 180}
"""


def test_ctrl_c_during_a_repeat_round_ends_that_round_cleanly_and_starts_no_other(tmp_path, repo_root, wait_until):
    """``run --repeat``: each round is a child session in its own process group; a Ctrl-C to the
    command is passed to the running round once, which cleans up as any session does."""
    (tmp_path / "m.yaml").write_text(textwrap.dedent(REPEATED))
    journal = tmp_path / "journal.jsonl"
    harness = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--repeat", "3", "--matrix", str(tmp_path / "m.yaml"),
         "--journal", str(journal), "-p", "no:cacheprovider"], cwd=repo_root, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, preexec_fn=procs.default_signals)
    try:
        def slow_run():
            if harness.poll() is not None:
                raise AssertionError(f"the harness exited with status {harness.returncode} before the slow case ran")
            rounds = psutil.Process(harness.pid).children()
            found = [p for r in rounds for p in session_processes(r.pid) if "PREFECT__FLOW_RUN_ID" in procs.environ(p)]
            done = journal.read_text().count("\n") if journal.exists() else 0
            return (rounds, found) if found and done == 1 else None

        try:
            [round_1], flow_procs = wait_until(slow_run, 240, "round 1's slow case running")
        except AssertionError as failed:
            harness.kill()
            raise AssertionError(f"{failed}; the harness printed:\n{harness.communicate(timeout=30)[0][-6000:]}") from None
        assert os.getpgid(round_1.pid) != os.getpgid(harness.pid)  # a terminal's Ctrl-C reaches the command only
        session = procs.environ(flow_procs[0])[procs.SESSION_ENV]
        live = session_processes(round_1.pid)
        port = server_port(live)
        workdirs = list(Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}{session}-*"))
        assert workdirs and port_open(port)
        harness.send_signal(signal.SIGINT)
        output, _ = harness.communicate(timeout=120)
    finally:
        if harness.poll() is None:
            harness.kill()
    assert harness.returncode == 130, output  # interrupted
    assert "round 1 of 3" in output and "round 2 of 3" not in output, output
    assert "repeats: 1 round(s)" in output and "quick-one@local: 1 of 1 pass" in output, output
    assert not procs.alive(round_1.pid)
    assert not [p.pid for p in live if procs.alive(p.pid)], output
    assert procs.find(session) == []
    assert not any(d.exists() for d in workdirs)
    assert not port_open(port)
    assert [(json.loads(l)["scenario"], json.loads(l)["round"]) for l in journal.read_text().splitlines()] == [
        ("quick-one", {"index": 1, "of": 3})]


def test_a_session_closing_inside_another_leaves_the_outer_sessions_waits_running():
    """A test's own session closes while the pytest session's is open (one xdist worker runs
    both): the outer session's cases must not see ``STOPPING``; the last close sets it."""
    from harness.run.session import _OPEN, ChaosSession

    # the pytest session's own may be open in this process already (an earlier test of this
    # xdist worker used the chaos_session fixture): then no close here is the last
    already = set(_OPEN)
    outer = ChaosSession()
    try:
        inner = ChaosSession()
        inner.close()
        assert not procs.STOPPING.is_set()
    finally:
        outer.close()
    assert procs.STOPPING.is_set() == (not already)
    if not already:
        procs.STOPPING.clear()  # this process's later tests run without a session of their own


def test_a_second_ctrl_c_ends_at_once_and_the_guardian_removes_and_names_what_was_left(tmp_path, repo_root,
                                                                                     wait_until):
    """The first Ctrl-C starts the clean stop; a second one, while it runs, ends the harness at
    once with no traceback, saying what was journaled and where.  What it left running (a server,
    a worker, a frozen flow run in a memory cgroup) is removed within seconds by its guardian,
    which says what it removed; no next session is needed."""
    (tmp_path / "m.yaml").write_text(textwrap.dedent(MATRIX))
    journal = tmp_path / "journal.jsonl"
    harness = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--matrix", str(tmp_path / "m.yaml"), "--journal", str(journal),
         "-p", "no:cacheprovider"], cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=procs.default_signals)
    try:
        def frozen():
            if harness.poll() is not None:
                raise AssertionError(f"the harness exited ({harness.returncode}) before the second case froze")
            found = [p for p in session_processes(harness.pid) if "PREFECT__FLOW_RUN_ID" in procs.environ(p)]
            done = journal.read_text().count("\n") if journal.exists() else 0
            return found if done == 1 and found and all(_status(p) == psutil.STATUS_STOPPED for p in found) else None

        wait_until(frozen, 270, "the second case's frozen flow run")
        left = session_processes(harness.pid)
        harness.send_signal(signal.SIGINT)
        time.sleep(0.5)
        harness.send_signal(signal.SIGINT)
        output, _ = harness.communicate(timeout=30)
    finally:
        if harness.poll() is None:
            harness.kill()
    assert harness.returncode == 130, output
    assert "Traceback" not in output, output
    assert f"interrupted again: stopping now, without waiting for cleanup; 1 finished case(s) in {journal}" in output
    assert [json.loads(x)["scenario"] for x in journal.read_text().splitlines()] == ["quick-one"]
    # the console told it as it went: both starts, the freeze, the first case's end and the count
    for told in ("  start   quick-one@local", "  start   frozen-in-a-cgroup@local", "  fault   frozen-in-a-cgroup@local  freeze",
                 "  end     quick-one@local  PASS, final COMPLETED", "(journal line 1)", "[1/2] "):
        assert told in output, output
    # half a second of cleanup cannot have stopped the server, the worker and the frozen run: its
    # guardian removed them within seconds (the output ends once it has) and names them
    guardian = next((line for line in output.splitlines() if line.startswith("chaos-harness guardian: ")), "")
    assert f"harness process {harness.pid} is gone" in guardian, output
    assert [p.pid for p in left if f"pid {p.pid}" in guardian], (guardian, [p.pid for p in left])
    assert [p.pid for p in left if _running(p.pid)] == []
    assert session_processes(harness.pid) == []
    assert not list(Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*")) or all(
        procs.owner(d) != harness.pid for d in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"))


def test_a_sigkilled_harness_leaves_nothing_behind_for_long(tmp_path, repo_root, wait_until):
    """SIGKILL mid-case, no next session: within 10 s its guardian has removed the server, the
    worker, the frozen flow run and its memory cgroup, and the session's directory."""
    (tmp_path / "m.yaml").write_text(textwrap.dedent(MATRIX))
    journal = tmp_path / "journal.jsonl"
    harness = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--matrix", str(tmp_path / "m.yaml"), "--journal", str(journal),
         "--scenario", "frozen-in-a-cgroup", "-p", "no:cacheprovider"], cwd=repo_root, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, preexec_fn=procs.default_signals)
    try:
        def frozen():
            if harness.poll() is not None:
                raise AssertionError(f"the harness exited ({harness.returncode}) before the case froze")
            found = [p for p in session_processes(harness.pid) if "PREFECT__FLOW_RUN_ID" in procs.environ(p)]
            return found if found and all(_status(p) == psutil.STATUS_STOPPED for p in found) else None

        wait_until(frozen, 240, "the case's frozen flow run")
        left = session_processes(harness.pid)
        workdirs = [d for d in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*") if procs.owner(d) == harness.pid]
        sessions = [d.name[len(WORKDIR_PREFIX):].split("-")[0] for d in workdirs]
        assert left and workdirs and any(cgroups.leftovers(s) for s in sessions)
        os.kill(harness.pid, signal.SIGKILL)
        harness.wait(10)
        killed = time.monotonic()
        wait_until(lambda: not [p for p in left if _running(p.pid)] and not any(d.exists() for d in workdirs)
                   and not any(cgroups.leftovers(s) for s in sessions), 10, "the guardian's cleanup")
        print(f"everything gone {time.monotonic() - killed:.1f} s after the SIGKILL")
    finally:
        if harness.poll() is None:
            harness.kill()
