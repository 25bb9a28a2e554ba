"""What every workload shares: the scenario's Prefect config, read from the environment.

The harness passes a scenario's ``config`` to the flow-run process as job-variable environment
variables, so one flow file deploys unchanged to every backend (a process, a container, a pod).
"""

from __future__ import annotations

import os
import time

from prefect import cache_policies

from harness import ledger

POLICIES = {
    "inputs": cache_policies.INPUTS,
    "task_source_inputs": cache_policies.TASK_SOURCE + cache_policies.INPUTS,
    "default": cache_policies.DEFAULT,
    "none": cache_policies.NO_CACHE,
}


def flow_options() -> dict:
    """Flow-level retries for ``flow.with_options``."""
    return {
        "retries": int(os.environ.get("CHAOS_FLOW_RETRIES", "0")),
        "retry_delay_seconds": float(os.environ.get("CHAOS_RETRY_DELAY_SECONDS", "0")),
    }


def task_options(name: str) -> dict:
    """Persisted results under the scenario's cache policy; the run name is the task name."""
    return {
        "name": name,
        "task_run_name": name,
        "persist_result": True,
        "cache_policy": POLICIES[os.environ.get("CHAOS_CACHE_POLICY", "default")],
    }


def sleep(seconds: float) -> None:
    """Sleep in small slices (a frozen process resumes where it was)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.2))


__all__ = ["ledger", "flow_options", "task_options", "sleep"]
