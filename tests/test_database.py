"""The servers' database: a private PostgreSQL cluster, really started, stopped and restarted."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from harness import procs
from harness.database import LocalPostgres, open_database, pg_bin
from harness.engine import Unavailable


def test_sqlite_needs_no_database_and_unknown_ones_are_refused(tmp_path):
    assert open_database("sqlite", tmp_path, "s") is None
    with pytest.raises(Unavailable, match="unknown database 'oracle'"):
        open_database("oracle", tmp_path, "s")


async def _select_one(port: int) -> int:
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="postgres", timeout=5)
    try:
        return await conn.fetchval("select 1")
    finally:
        await conn.close()


@pytest.mark.integration
def test_local_postgres_serves_restarts_and_leaves_nothing():
    if pg_bin() is None and os.geteuid() != 0:
        pytest.skip("no PostgreSQL binaries and not root to install them")
    top = Path(tempfile.mkdtemp(prefix="chaos-harness-pgtest-"))  # as a session's workdir is made
    db = LocalPostgres(top / "postgres", "pgtest-session")
    try:
        assert db.url.startswith("postgresql+asyncpg://postgres@127.0.0.1:")
        assert asyncio.run(_select_one(db.port)) == 1
        assert procs.find("pgtest-session"), "the cluster's processes carry the session marker"
        db.stop()
        with pytest.raises(OSError):
            asyncio.run(_select_one(db.port))
        db.start()
        assert asyncio.run(_select_one(db.port)) == 1
    finally:
        db.close()
        shutil.rmtree(top, ignore_errors=True)
    assert procs.find("pgtest-session") == []
