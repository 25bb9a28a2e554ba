"""A multi-step pipeline: ``steps`` tasks in sequence, each sleeping ``sleep`` seconds.

Results are persisted and cached by the scenario's cache policy, so a rerun with the same
parameters shows which completed steps Prefect skips.  Each step's run is named ``step-N``.
"""

from prefect import flow, task

from _workload import flow_options, ledger, sleep, task_options


@task
def step(index: int, seconds: float) -> int:
    with ledger.execution(f"step-{index}"):
        sleep(seconds)
    return index


@flow(name="pipeline")
def _pipeline(steps: int = 3, sleep: float = 5.0) -> list[int]:
    return [step.with_options(**task_options(f"step-{i}"))(i, sleep) for i in range(1, steps + 1)]


pipeline = _pipeline.with_options(**flow_options())
