"""A flow whose ``allocate`` task allocates memory on request, gradually, after a delay.

The delay lets a fault put a memory limit in place first; allocating in chunks (each touched,
so it is really resident) makes the kernel's OOM killer act at the limit, not at one huge request.
"""

from prefect import flow, task

from _workload import flow_options, ledger, sleep, task_options

CHUNK = 8 * 1024 * 1024


@task
def prepare(seconds: float) -> None:
    with ledger.execution("prepare"):
        sleep(seconds)


@task
def allocate(mb: int, hold: float) -> int:
    with ledger.execution("allocate"):
        held = []
        for _ in range(mb * 1024 * 1024 // CHUNK):
            held.append(bytearray(b"\x01") * CHUNK)
            sleep(0.02)
        sleep(hold)
    return len(held) * CHUNK


@flow(name="memory-hog")
def _memory_hog(mb: int = 512, prepare_seconds: float = 3.0, hold: float = 2.0) -> int:
    prepare.with_options(**task_options("prepare"))(prepare_seconds)
    return allocate.with_options(**task_options("allocate"))(mb, hold)


memory_hog = _memory_hog.with_options(**flow_options())
