"""A small ETL flow, written the way a data engineer writes one: extract orders from a CSV file,
transform them, load them into a SQLite table in batches.

Nothing in it knows about the chaos harness.  Each batch is loaded by one run of the `load` task
in one transaction, so a process killed mid-load leaves the batches that committed.  Whether a
rerun loads those batches again is up to the `load` task's cache policy: with `inputs`, a batch
whose run completed is a cache hit on the rerun and is not loaded twice; with `none`, every batch
is loaded again and the table holds duplicates.  The tests in this directory find out which.
"""

from __future__ import annotations

import csv
import sqlite3
import time
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import INPUTS, NO_CACHE

HERE = Path(__file__).resolve().parent
POLICIES = {"inputs": INPUTS, "none": NO_CACHE}


@task
def extract(source: str) -> list[dict]:
    with open(HERE / source, newline="") as f:
        return list(csv.DictReader(f))


@task
def transform(rows: list[dict]) -> list[tuple[int, str, int]]:
    """(order id, customer, amount in cents), in order id order."""
    out = [(int(r["order_id"]), r["customer"].strip().title(), round(float(r["amount"]) * 100)) for r in rows]
    return sorted(out)


@task(persist_result=True)
def load(batch: list[tuple[int, str, int]], database: str, pause: float) -> int:
    """Insert one batch in one transaction; the table has no key, so a batch loaded twice shows.
    A kill before the commit loses the batch's rows (the rerun loads them); a kill between the
    commit and the task's Completed state would load them twice whatever the cache policy."""
    time.sleep(pause)  # preparing the batch: a slow warehouse, a staging upload
    with sqlite3.connect(database, timeout=30) as db:
        db.execute("CREATE TABLE IF NOT EXISTS orders (order_id INTEGER, customer TEXT, cents INTEGER)")
        db.executemany("INSERT INTO orders VALUES (?, ?, ?)", batch)
    return len(batch)


@flow(name="etl")
def etl(database: str, source: str = "orders.csv", batch_size: int = 5, pause: float = 1.0,
        cache: str = "inputs") -> int:
    rows = transform(extract(source))
    loader = load.with_options(cache_policy=POLICIES[cache])
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    return sum(loader(batch, database, pause) for batch in batches)
