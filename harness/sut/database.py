"""The server's database: SQLite (the default) or PostgreSQL, selectable per run.

``--chaos-database postgres`` puts every server of the run on PostgreSQL: testcontainers'
``PostgresContainer`` where Docker runs (the docker backend's servers), from the harness's own
PostgreSQL image (Debian's PostgreSQL in a rootfs made like the Prefect image, ``harness.backends.docker.engine``)
or the present image ``CHAOS_POSTGRES_IMAGE`` names (on any backend; the harness never pulls),
otherwise (the local backend) a private PostgreSQL cluster of the harness's own, made with
Debian's ``initdb`` in the session's directory, on a free 127.0.0.1 port, owned by the
``postgres`` user when the harness runs as root (``initdb`` refuses root).  Where the binaries are
missing and the harness runs as root, Debian's ``postgresql`` package is installed first, with
its default cluster disabled so that nothing but the harness's own cluster ever runs.

Both can stop and start again on the same data: the ``restart-database`` fault.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Protocol

from harness.backends.docker.engine import POSTGRES_IMAGE_ENV, Unavailable
from harness.sut import procs
from harness.sut.net import free_port, port_open

DATABASES = ("sqlite", "postgres")
PG_BIN_ENV = "CHAOS_PG_BIN"  # a directory holding initdb, pg_ctl, postgres


class Database(Protocol):
    url: str  # the server's PREFECT_API_DATABASE_CONNECTION_URL

    def stop(self) -> None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...

    def log_sources(self) -> dict: ...  # its log, as harness.sut.caselogs keeps it


def pg_bin() -> Path | None:
    explicit = os.environ.get(PG_BIN_ENV)
    candidates = [explicit] if explicit else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for d in candidates:
        if d and (Path(d) / "initdb").is_file() and (Path(d) / "pg_ctl").is_file():
            return Path(d)
    return None


def install_postgres() -> Path:
    """Debian's PostgreSQL, without the default cluster its package would create and start."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb) and the harness "
                          f"cannot install it here (needs root and apt-get); set {PG_BIN_ENV}")
    conf = Path("/etc/postgresql-common/createcluster.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    if not conf.exists() or "create_main_cluster = false" not in conf.read_text():
        with conf.open("a") as f:
            f.write("\n# chaos harness: no default cluster; the harness runs its own\ncreate_main_cluster = false\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "postgresql"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise Unavailable(f"{' '.join(argv)} failed: {done.stderr[-800:]}")
    found = pg_bin()
    if found is None:
        raise Unavailable("postgresql was installed but no initdb was found under /usr/lib/postgresql")
    return found


class LocalPostgres:
    """A private PostgreSQL cluster in ``workdir``: trust auth, 127.0.0.1 only, a free port."""

    def __init__(self, workdir: Path, session: str):
        self.bin = pg_bin() or install_postgres()
        self.workdir = workdir
        self.data = workdir / "pgdata"
        self.log = workdir / "postgres.log"
        self.port = free_port()
        self.session = session
        self.user = None if os.geteuid() != 0 else "postgres"
        workdir.mkdir(parents=True, exist_ok=True)
        if self.user:
            _chown_tree(workdir, self.user)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "--encoding=UTF8", "--no-sync"])
        # TCP on loopback only: no Unix socket (its path under a deep session directory would pass
        # the 107-byte limit and the cluster would not start)
        conf = self.data / "postgresql.conf"
        conf.write_text(conf.read_text() + f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                        "unix_socket_directories = ''\nfsync = off\nmax_connections = 200\n")
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        self.start()

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        # the cluster's processes carry the session marker: cleanup finds them like any other
        env = {**os.environ, procs.SESSION_ENV: self.session, procs.OWNER_ENV: str(os.getpid())}
        name = Path(argv[0]).name
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise Unavailable(f"{name} failed ({done.returncode}): {(done.stderr or done.stdout)[-800:]}")
        return done

    def start(self) -> None:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"])

    def stop(self) -> None:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], check=False)

    def close(self) -> None:
        self.stop()
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"], check=False)

    def log_sources(self) -> dict:
        return {"postgres.log": self.log}


class ContainerPostgres:
    """testcontainers' PostgresContainer on host networking, from an image present locally."""

    def __init__(self, image: str, session: str):
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers before 4.15
            from testcontainers.postgres import PostgresContainer

        self.port = free_port()
        self.image = image
        # PGPORT: the server's port, and the one testcontainers' readiness probe (psql inside the
        # container, with no --port) connects to
        self.container = (PostgresContainer(image, port=self.port, username="prefect", password="prefect",
                                            dbname="prefect", driver="asyncpg")
                          .with_env("PGPORT", str(self.port))
                          .with_kwargs(network="host", labels={"chaos-harness.session": session,
                                                               "chaos-harness.owner": str(os.getpid())})
                          .with_command(f"postgres -c listen_addresses=127.0.0.1 -c port={self.port} "
                                        "-c unix_socket_directories=/tmp"))
        self.container.ports.clear()  # host networking publishes nothing: the port is the host's own
        self.container.start()
        self.url = f"postgresql+asyncpg://prefect:prefect@127.0.0.1:{self.port}/prefect"

    def start(self) -> None:
        self.container.get_wrapped_container().start()
        procs.wait_for(lambda: port_open(self.port), 60, 0.25, f"PostgreSQL on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        """A fast shutdown, as ``pg_ctl stop -m fast`` (``docker stop``'s SIGTERM would be a smart
        one: PostgreSQL would go on serving the connections it has until they end)."""
        wrapped = self.container.get_wrapped_container()
        wrapped.kill(signal="SIGINT")
        wrapped.wait(timeout=30)

    def close(self) -> None:
        self.container.stop()

    def log_sources(self) -> dict:
        from harness.sut.caselogs import container_reader

        return {"postgres.log": container_reader(self.container.get_wrapped_container)}


def open_database(kind: str, workdir: Path, session: str, backend: str = "local") -> Database | None:
    """The database of a new server: None for SQLite (the server keeps its own file).

    PostgreSQL: testcontainers' where Docker runs (the docker backend; and on any backend when
    ``CHAOS_POSTGRES_IMAGE`` names an image), a local cluster otherwise."""
    if kind == "sqlite":
        return None
    if kind != "postgres":
        raise Unavailable(f"unknown database {kind!r} (known: {', '.join(DATABASES)})")
    if backend == "docker" or os.environ.get(POSTGRES_IMAGE_ENV):
        from harness.backends.docker import engine

        try:
            image = engine.postgres_image(engine.ensure_engine())
        except engine.Unavailable as exc:
            raise Unavailable(f"testcontainers' PostgreSQL: {exc}") from None
        return ContainerPostgres(image, session)
    # a fresh directory each time: a start that failed half-way leaves its own behind
    return LocalPostgres(workdir / f"postgres-{uuid.uuid4().hex[:6]}", session)


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for p in [path, *path.parents]:
        if not any(part.startswith("chaos-harness-") for part in p.parts):
            break  # only the session's own directories, never anything above them
        try:  # the user must be able to traverse every parent (a 0700 mkdtemp is not)
            mode = p.stat().st_mode
            if not mode & 0o001:
                p.chmod(mode | 0o011)
        except OSError:
            pass
    os.chown(path, entry.pw_uid, entry.pw_gid)

