"""The Prefect server in a testcontainers container of the harness's image, on host networking,
and the restart-server fault against it."""

from __future__ import annotations

import time

from harness.backends.docker.objects import session_labels
from harness.sut import caselogs, procs
from harness.sut.api import PrefectAPI
from harness.sut.net import free_port


class ServerContainer:
    """``prefect server start`` in a testcontainers container; restartable on its volume.

    With ``network=None`` (the docker backend) it shares the host's network and listens on
    127.0.0.1.  On a named network (the kind backend: pods must reach it) it listens on the
    container's own interfaces, and the host reaches it through a port published on 127.0.0.1
    only: ``internal_address`` is its address on that network."""

    INTERNAL_PORT = 4200

    def __init__(self, client, image: str, session: str, env: dict[str, str], backend: str,
                 network: str | None = None, database_url: str | None = None):
        from testcontainers.core.container import DockerContainer

        self.client, self.port, self.network = client, free_port(), network
        labels = session_labels(session, backend)
        self.volume = client.volumes.create(name=f"chaos-{session}-{backend}-server-db", labels=labels)
        host, port = ("127.0.0.1", self.port) if network is None else ("0.0.0.0", self.INTERNAL_PORT)
        self.env = {
            **{k: v for k, v in env.items() if k.startswith("PREFECT_")},
            "PREFECT_HOME": "/data",
            "PREFECT_API_DATABASE_CONNECTION_URL": database_url or "sqlite+aiosqlite:////data/prefect.db",
            "PREFECT_SERVER_API_HOST": host,
            "PREFECT_SERVER_API_PORT": str(port),
        }
        self.container = (
            DockerContainer(image)
            .with_command(["prefect", "server", "start", "--host", host, "--port", str(port)])
            .with_envs(**self.env)
            .with_name(f"chaos-{session}-{backend}-server")
            .with_volume_mapping(self.volume.name, "/data", "rw")  # a named volume: survives a restart
        )
        if network is None:
            self.container.with_kwargs(network="host", labels=labels)
        else:
            self.container.with_bind_ports(f"{port}/tcp", ("127.0.0.1", self.port))  # host: loopback only
            self.container.with_kwargs(network=network, labels=labels)
        self.api = PrefectAPI(self.api_url)
        self.running = False
        self.start_seconds: float | None = None  # how long its last start took to answer

    @property
    def internal_address(self) -> str:
        """The container's address on its named network (changes when the container restarts)."""
        wrapped = self.container.get_wrapped_container()
        wrapped.reload()
        return wrapped.attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _wait_healthy(self, timeout: float) -> None:
        began = time.monotonic()
        wrapped = self.container.get_wrapped_container()

        def up() -> bool:
            wrapped.reload()
            if wrapped.status in ("exited", "dead"):
                raise RuntimeError(f"the server container exited ({wrapped.attrs['State'].get('ExitCode')}):\n{self.logs()}")
            return self.api.healthy()

        procs.wait_for(up, timeout, 0.25, f"the Prefect server container on {self.api_url}/health",
                       f"its log:\n{self.logs()}")
        self.running = True
        self.start_seconds = time.monotonic() - began

    def log_sources(self) -> dict[str, caselogs.Source]:
        """Its log, as harness.sut.caselogs keeps it (like a database's ``log_sources``)."""
        return {"server.log": caselogs.container_reader(self.container.get_wrapped_container)}

    def logs(self, lines: int = 30) -> str:
        try:
            return self.container.get_wrapped_container().logs(tail=lines).decode(errors="replace")
        except Exception:
            return ""

    def start(self, timeout: float = 180) -> None:
        self.container.start()
        self._wait_healthy(timeout)

    def stop(self) -> None:
        """Stop the container (SIGTERM, 10 s, SIGKILL), keep it and its volume."""
        self.container.get_wrapped_container().stop(timeout=10)
        self.running = False

    def restart(self, timeout: float = 180) -> None:
        self.container.get_wrapped_container().start()
        self._wait_healthy(timeout)

    def remove(self) -> None:
        try:
            self.container.stop(force=True, delete_volume=True)
        except Exception:
            pass
