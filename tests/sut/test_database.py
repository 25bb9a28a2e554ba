"""The servers' database: a private PostgreSQL cluster, really started, stopped and restarted."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from harness.backends.docker.engine import Unavailable
from harness.sut import procs
from harness.sut.database import LocalPostgres, open_database, pg_bin


def test_sqlite_needs_no_database_and_unknown_ones_are_refused(tmp_path):
    assert open_database("sqlite", tmp_path, "s") is None
    with pytest.raises(Unavailable, match="unknown database 'oracle'"):
        open_database("oracle", tmp_path, "s")


async def _select_one(port: int, user: str = "postgres", password: str | None = None, sql: str = "select 1"):
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", port=port, user=user, password=password, database=user, timeout=5)
    try:
        return await conn.fetchval(sql)
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


@pytest.mark.integration
def test_testcontainers_postgres_serves_restarts_keeps_its_data_and_leaves_nothing(tmp_path):
    """The docker backend's database: testcontainers' PostgresContainer from the harness's own image."""
    from harness.backends.docker import engine

    try:
        client = engine.ensure_engine()
    except engine.Unavailable as exc:
        pytest.skip(f"no Docker engine here: {exc}")
    db = open_database("postgres", tmp_path, "pgcontainer-session", backend="docker")
    try:
        assert db.url == f"postgresql+asyncpg://prefect:prefect@127.0.0.1:{db.port}/prefect"
        assert db.image.startswith(engine.POSTGRES_REPO) or os.environ.get(engine.POSTGRES_IMAGE_ENV)
        query = lambda sql: asyncio.run(_select_one(db.port, "prefect", "prefect", sql))  # noqa: E731
        query("create table kept (x int)")
        query("insert into kept values (42)")
        (container,) = client.containers.list(filters={"label": "chaos-harness.session=pgcontainer-session"})
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        db.stop()
        with pytest.raises(OSError):
            query("select 1")
        db.start()
        assert query("select x from kept") == 42  # the same data after the restart
    finally:
        db.close()
    assert client.containers.list(all=True, filters={"label": "chaos-harness.session=pgcontainer-session"}) == []
