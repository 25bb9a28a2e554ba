"""Cgroups for the local faults: the CPU quota's arithmetic and files (v1 and v2, on stand-in
hierarchies), and a real CPU quota on a real busy process where this machine has a writable cpu
cgroup (v1 here), the kind backend's in-node script included."""

import os
import subprocess
import sys
import time

import psutil
import pytest

from harness.backends.kind import kube
from harness.backends.local import cgroups
from harness.backends.local.system import CpuStarve


@pytest.mark.parametrize("cpus, expected", [(0.05, (5000, 100_000)), (2, (200_000, 100_000)),
                                            (0.005, (1000, 200_000)), (0.001, (1000, 1_000_000)),
                                            (0.0005, (1000, 1_000_000))])
def test_a_share_of_cpus_is_a_quota_over_a_period_within_the_kernels_bounds(cpus, expected):
    assert cgroups.quota(cpus) == expected


def test_a_share_must_be_positive():
    with pytest.raises(ValueError):
        cgroups.quota(0)


def test_v2_writes_cpu_max_and_lifts_it(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory io\n")
    (tmp_path / "cgroup.subtree_control").write_text("cpu memory\n")
    group = cgroups.CpuCgroup("s1-case", 0.25, root=tmp_path)
    assert group.version == 2 and group.path == tmp_path / "chaos-harness-s1-case"
    assert (group.path / "cpu.max").read_text() == "25000 100000"
    group.lift()
    assert (group.path / "cpu.max").read_text() == "max 100000"


def test_v2_without_the_cpu_controller_delegated_is_refused(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("memory\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")
    with pytest.raises(PermissionError, match="with the cpu controller"):
        cgroups.CpuCgroup("s1-case", 0.25, root=tmp_path)


def test_v1_writes_the_cfs_period_and_quota_and_lifts_it(tmp_path):
    (tmp_path / "cpu").mkdir()
    group = cgroups.CpuCgroup("s1-case", 0.002, root=tmp_path)
    assert group.version == 1 and group.path == tmp_path / "cpu" / "chaos-harness-s1-case"
    assert (group.path / "cpu.cfs_period_us").read_text() == "500000"
    assert (group.path / "cpu.cfs_quota_us").read_text() == "1000"
    group.lift()
    assert (group.path / "cpu.cfs_quota_us").read_text() == "-1"


def test_throttling_reads_v1_nanoseconds_and_v2_microseconds(tmp_path):
    (tmp_path / "cpu").mkdir()
    group = cgroups.CpuCgroup("s1-case", 0.1, root=tmp_path)
    (group.path / "cpu.stat").write_text("nr_periods 40\nnr_throttled 38\nthrottled_time 3538033677\n")
    assert group.throttling() == {"periods": 40, "throttled_periods": 38, "throttled_seconds": 3.538}
    (group.path / "cpu.stat").write_text("usage_usec 10\nnr_periods 5\nnr_throttled 4\nthrottled_usec 2500000\n")
    assert group.throttling() == {"periods": 5, "throttled_periods": 4, "throttled_seconds": 2.5}


def _writable_cpu_cgroup() -> str | None:
    try:
        probe = cgroups.CpuCgroup(f"probe-{os.getpid()}", 1)
    except OSError as exc:
        return f"no writable cpu cgroup here: {exc}"
    probe.remove()
    return None


real = pytest.mark.skipif(bool(_writable_cpu_cgroup()), reason=str(_writable_cpu_cgroup()))


@pytest.fixture
def busy():
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield psutil.Process(proc.pid)
    proc.kill()
    proc.wait()


def cpu_line(pid: int) -> str:
    return next(x for x in open(f"/proc/{pid}/cgroup").read().splitlines()
                if x.startswith("0::") or "cpu" in x.split(":")[1].split(","))


@real
def test_a_starved_process_runs_at_its_share_lives_on_and_goes_back_where_it_was(busy):
    before = cpu_line(busy.pid)
    fault = CpuStarve(lambda: [busy], 0.1, f"test-{os.getpid()}", "flow-run")
    detail = fault.inject()
    assert detail["mechanism"] in ("cgroup-v1", "cgroup-v2") and detail["pids"] == [busy.pid]
    start, t0 = sum(busy.cpu_times()[:2]), time.monotonic()
    time.sleep(2)
    used, elapsed = sum(busy.cpu_times()[:2]) - start, time.monotonic() - t0
    assert used <= 0.1 * elapsed + 0.15, (used, elapsed)  # the quota is a ceiling, whatever the load
    healed = fault.heal()
    # throttled, unless a loaded machine gave it less than its quota anyway (CI runs chaos cases beside)
    starved_by_the_machine = used < 0.05 * elapsed
    assert healed["lifted"] and (healed["throttled_periods"] > 0 or starved_by_the_machine), (healed, used)
    closed = fault.close()
    assert closed["throttling"]["throttled_seconds"] > 0 or starved_by_the_machine, closed
    assert busy.is_running() and busy.status() != psutil.STATUS_ZOMBIE
    assert cpu_line(busy.pid) == before
    assert not os.path.exists(detail["cgroup"])


@real
def test_the_kind_nodes_script_sets_and_lifts_the_quota_of_a_tasks_own_cgroup(busy, tmp_path):
    """The script the kind backend runs inside a node, run here against a real cgroup: a stand-in
    ``ctr`` names the busy process as the containerd task."""
    group = cgroups.CpuCgroup(f"test-task-{os.getpid()}", 2)
    group.add(busy.pid)
    quota_file = group.path / ("cpu.max" if group.version == 2 else "cpu.cfs_quota_us")
    (tmp_path / "ctr").write_text(f"#!/bin/sh\necho 'TASK PID STATUS'\necho 'task-1 {busy.pid} RUNNING'\n")
    (tmp_path / "ctr").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    try:
        done = subprocess.run(["sh", "-c", kube.cpu_quota_script("task-1", 3000, 100_000)], env=env,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(group.path)
        assert quota_file.read_text().split()[0] == "3000"
        done = subprocess.run(["sh", "-c", kube.cpu_quota_script("task-1", None, 100_000)], env=env,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert quota_file.read_text().split()[0] in ("-1", "max")
        missing = subprocess.run(["sh", "-c", kube.cpu_quota_script("task-2", 3000, 100_000)], env=env,
                                 capture_output=True, text=True, timeout=30)
        assert missing.returncode == 3 and "no containerd task task-2" in missing.stderr
    finally:
        group.remove()
