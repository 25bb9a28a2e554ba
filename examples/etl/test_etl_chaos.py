"""Chaos tests of the ETL flow, written only against the harness's public API (``harness.chaos``
and the ``chaos`` pytest fixture): kill the flow run while it loads, rerun it, and check that
every order is in the table exactly once, by reading the table.

    pytest examples/etl                          # on local processes
    pytest examples/etl --chaos-backend docker   # the same, each flow run in a container
"""

from __future__ import annotations

import sqlite3
from collections import Counter

from harness.chaos import kill, task_running

from etl import etl

ORDERS = set(range(1, 41))  # orders.csv: order ids 1..40, loaded in batches of 5 (8 runs of load)


def loaded(database: str) -> Counter:
    """How many times each order id is in the table."""
    with sqlite3.connect(database) as db:
        return Counter(order_id for (order_id,) in db.execute("SELECT order_id FROM orders"))


def kill_while_loading_the_third_batch(chaos, cache: str):
    """The flow run SIGKILLed while the third run of load runs (before it commits), then rerun as a user would."""
    crashed = chaos.run(etl, parameters={"database": "{case}/warehouse.db", "pause": 1.0, "cache": cache},
                        faults=[kill(when=task_running("load", nth=3))])
    assert crashed.final == "CRASHED", crashed.message
    database = crashed.parameters["database"]
    assert set(loaded(database)) == set(range(1, 11))  # the two batches that committed, no more
    assert crashed.executions["load"] == 3  # the third began and was killed
    return crashed, database, chaos.rerun(crashed)


def test_with_an_inputs_cache_the_rerun_loads_every_order_exactly_once(chaos):
    crashed, database, rerun = kill_while_loading_the_third_batch(chaos, "inputs")
    assert rerun.final == "COMPLETED" and rerun.run_count == 1
    counts = loaded(database)
    assert set(counts) == ORDERS, f"missing orders: {sorted(ORDERS - set(counts))}"
    assert [o for o, n in counts.items() if n > 1] == []  # no duplicate
    # the two batches that completed were cache hits: only the third to the eighth ran again
    assert rerun.executions["load"] == 6
    assert rerun.executions["extract"] == 1  # its default cache policy keys on the flow run


def test_without_a_cache_the_rerun_loads_the_committed_batches_twice(chaos):
    crashed, database, rerun = kill_while_loading_the_third_batch(chaos, "none")
    assert rerun.final == "COMPLETED"
    counts = loaded(database)
    assert set(counts) == ORDERS  # nothing missing...
    assert sorted(o for o, n in counts.items() if n == 2) == list(range(1, 11))  # ...and the first 10 twice
    assert rerun.executions["load"] == 8
