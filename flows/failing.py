"""A flow whose ``work`` task raises on every attempt (an exception, not a crash)."""

from prefect import flow, task

from _workload import flow_options, ledger, sleep, task_options


class WorkloadError(RuntimeError):
    pass


@task
def work(seconds: float) -> None:
    with ledger.execution("work"):
        sleep(seconds)
    raise WorkloadError("the workload raised on request")


@flow(name="failing")
def _failing(sleep: float = 1.0) -> None:
    work.with_options(**task_options("work"))(sleep)


failing = _failing.with_options(**flow_options())
