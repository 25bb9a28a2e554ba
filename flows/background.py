"""Background tasks: a flow submits ``tasks`` runs of ``work`` with ``.delay()`` and waits for them.

The task runs execute in ``prefect task serve`` replicas (the harness starts them beside the
worker; ``workload.task_workers``), not in the flow-run process: the flow only submits and
waits, as a web app or a flow that offloads work would.  Each task run is named ``step-N``, so
triggers and the ledger name them as they name a pipeline's steps (the flow names each run as
it submits it; Prefect would name it ``_work-N`` until a replica starts it).  The served task's own
retries come from the replica's environment (``CHAOS_TASK_RETRIES``): a task served in the
background runs with the options of the replica's task object, not the submitter's.

Waiting is more than ``future.result()``: Prefect 3 records a task run's states from events, so
right after ``.delay()`` the run can still have no state, and ``result()`` then raises
``RuntimeError: ... has no state which means it hasn't started yet`` (seen here on Prefect
3.8.8 in a run without any fault).  The flow waits that out, as a user's code must.

Each scenario instance serves its own task.  The server hands a ``.delay()``-ed run to any task
worker subscribed to its *task key* (the function's name and a hash of its code), whatever
deployment or work pool submitted it; and a replica that cannot read the run's parameters (they
sit in its scenario's own result storage) deletes the run (``PREFECT_TASKS_SCHEDULING_DELETE_FAILED_SUBMISSIONS``,
on by default).  Seen here on Prefect 3.8.8: the next scenario's replicas, started ahead of its turn,
took the baseline's step-3 and deleted it, and the flow failed with ``ObjectNotFound``.  So the
task's qualified name carries ``CHAOS_INSTANCE``, which its flow run and its replicas share.
"""

import os
import re
import time

from prefect import flow, get_client, task
from prefect.exceptions import PrefectHTTPStatusError

from _workload import flow_options, ledger, sleep


def _work(index: int, seconds: float) -> int:
    with ledger.execution(f"step-{index}"):
        sleep(seconds)
    return index


# the task key is "<last part of the qualified name>-<code hash>": one per scenario instance
_work.__qualname__ = "work_" + re.sub(r"\W", "_", os.environ.get("CHAOS_INSTANCE", "any"))
_work = task(_work, persist_result=True, task_run_name="step-{index}")


# what `prefect task serve flows/background.py:work` serves
work = _work.with_options(retries=int(os.environ.get("CHAOS_TASK_RETRIES", "0")),
                          retry_delay_seconds=float(os.environ.get("CHAOS_RETRY_DELAY_SECONDS", "0")))


@flow(name="background")
def _background(tasks: int = 4, sleep: float = 5.0) -> list[int]:
    futures = []
    with get_client(sync_client=True) as client:
        for i in range(1, tasks + 1):
            futures.append(work.delay(i, sleep))
            _name(client, futures[-1].task_run_id, f"step-{i}")
    return [_result(f) for f in futures]


def _name(client, task_run_id, name: str) -> None:
    """Named now, not only when a replica starts it: a run no replica ever starts is found too.
    The naming is the harness's, not the user's: a run already gone (deleted by a replica that
    could not read its parameters) is left to ``result()``, as a user's flow would meet it."""
    try:
        client.set_task_run_name(task_run_id, name)
    except PrefectHTTPStatusError as exc:  # the client's raw PATCH: a 404 is not turned into ObjectNotFound
        if exc.response.status_code != 404:
            raise


def _result(future):
    while True:
        try:
            return future.result()
        except RuntimeError as exc:
            if "has no state" not in str(exc):
                raise
            time.sleep(0.5)  # its Scheduled state is not recorded yet


background = _background.with_options(**flow_options())
