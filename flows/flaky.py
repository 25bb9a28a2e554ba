"""A flow whose ``work`` task raises on its first ``fails`` attempts, then succeeds; ``after``
runs once it is done.  The task's retries are the scenario's ``config.task_retries``
(``CHAOS_TASK_RETRIES``), so rows can ride out the exceptions, run out of retries, or crash the
process during a retry; the ledger counts every attempt's body, the API the task run's run_count.
"""

import os

from prefect import flow, task
from prefect.runtime import task_run

from _workload import flow_options, ledger, sleep, task_options


class WorkloadError(RuntimeError):
    pass


@task
def work(fails: int, seconds: float) -> int:
    attempt = task_run.run_count  # 1 on the first attempt, 2 on the first retry, ...
    with ledger.execution("work"):
        sleep(seconds)
    if attempt <= fails:
        raise WorkloadError(f"the workload raised on attempt {attempt} of the {fails} asked for")
    return attempt


@task
def after(seconds: float) -> None:
    with ledger.execution("after"):
        sleep(seconds)


@flow(name="flaky")
def _flaky(fails: int = 1, sleep: float = 1.0) -> int:
    retries = {"retries": int(os.environ.get("CHAOS_TASK_RETRIES", "0")), "retry_delay_seconds": 0}
    attempts = work.with_options(**task_options("work"), **retries)(fails, sleep)
    after.with_options(**task_options("after"))(sleep)
    return attempts


flaky = _flaky.with_options(**flow_options())
