"""A parent flow that runs a task, then calls a subflow that runs ``child_steps`` tasks.

In Prefect 3 a subflow called like this runs inside the parent's process: killing "the subflow's
process" kills the parent too, which is what the subflow scenarios show.
"""

from prefect import flow, task

from _workload import flow_options, ledger, sleep, task_options


@task
def before(seconds: float) -> None:
    with ledger.execution("before"):
        sleep(seconds)


@task
def child_step(index: int, seconds: float) -> int:
    with ledger.execution(f"child-step-{index}"):
        sleep(seconds)
    return index


@flow(name="child")
def child(steps: int, seconds: float) -> list[int]:
    return [child_step.with_options(**task_options(f"child-step-{i}"))(i, seconds) for i in range(1, steps + 1)]


@flow(name="parent")
def _parent(child_steps: int = 2, sleep: float = 3.0) -> list[int]:
    before.with_options(**task_options("before"))(sleep)
    return child(child_steps, sleep)


parent = _parent.with_options(**flow_options())
