"""restart-server's timing (backends.shared.ServerRestart) against a real HTTP server on loopback
that stops and starts on its port, behind a real fault proxy: the clients' outage is the row's
``heal_after_seconds`` whatever the server's start takes.  (The row itself, against a real Prefect
server, is in the chaos matrix: restart-server-brief and restart-server-long.)"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from harness.backends.shared import ServerRestart
from harness.sut.net import free_port
from harness.sut.proxy import FaultProxy

from stub_http import JSONHandler, _Server


class _Handler(JSONHandler):
    def do_GET(self) -> None:
        self.answer({"ok": True})


class SlowServer:
    """An HTTP server that takes ``start_delay`` seconds to listen again on the same port."""

    def __init__(self, start_delay: float = 0.0, fail: bool = False):
        self.port, self.start_delay, self.fail = free_port(), start_delay, fail
        self.start_seconds: float | None = None
        self.starts, self._server = 0, None

    def start(self) -> None:
        began = time.monotonic()
        time.sleep(self.start_delay)
        if self.fail:
            raise RuntimeError("the server did not come back")
        _Server.allow_reuse_address = True
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.starts += 1
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None


@pytest.fixture()
def server():
    s = SlowServer()
    s.start()
    yield s
    s.stop()


def get(port: int) -> int | str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


def test_lead_is_twice_the_last_start_and_never_beyond_the_outage(server):
    server.start_seconds = 10.0
    assert ServerRestart(server, server.start, None, 120).lead() == 25.0
    assert ServerRestart(server, server.start, None, 12).lead() == 12.0
    server.start_seconds = None  # never measured: start at once
    assert ServerRestart(server, server.start, None, 120).lead() == 120.0


def test_behind_the_proxy_clients_are_refused_for_exactly_the_outage_however_slow_the_start(server):
    with FaultProxy(server.port, seed=0) as proxy:
        assert get(proxy.port) == 200
        server.start_delay = 0.5  # slower than last time (a loaded machine); still within the lead
        fault = ServerRestart(server, server.start, proxy, heal_after=3.0)
        detail = fault.inject()
        assert detail["restart_after_seconds"] == 0.0 and detail["proxy_port"] == proxy.port
        assert get(proxy.port) == "ConnectError"
        time.sleep(2.5)
        assert server.running  # started in the background, ahead of the heal
        assert get(proxy.port) == "ConnectError"  # yet the clients still meet the outage
        healing = time.monotonic()
        healed = fault.heal()
        assert time.monotonic() - healing < 1.0  # the server already answered: nothing to wait for
        assert get(proxy.port) == 200
        assert healed["restarted"] and healed["start_seconds"] >= 0.5
        assert healed["clients_refused_seconds"] >= 2.5
        assert fault.close() == {}
        assert server.starts == 2


def test_the_server_stays_down_until_the_lead_before_the_heal(server, wait_until):
    server.start_seconds = 0.0  # lead 5 s
    with FaultProxy(server.port, seed=0) as proxy:
        fault = ServerRestart(server, server.start, proxy, heal_after=7.0)
        stopped = time.monotonic()
        assert fault.inject()["restart_after_seconds"] == 2.0
        time.sleep(0.5)
        assert get(server.port) == "ConnectError"  # the server itself is down, not only the proxy
        wait_until(lambda: get(server.port) == 200, 10, "the server's start in the background")
        assert time.monotonic() - stopped >= 2.0  # not before its time
        assert get(proxy.port) == "ConnectError"
        fault._cancel.set()  # (no need to wait out the rest here)
        assert fault.heal()["server_down_seconds"] >= 2.0
        assert get(proxy.port) == 200


def test_a_start_that_fails_in_the_background_fails_the_heal(server):
    with FaultProxy(server.port, seed=0) as proxy:
        fault = ServerRestart(server, server.start, proxy, heal_after=0.5)
        server.fail = True
        fault.inject()
        with pytest.raises(RuntimeError, match="did not come back"):
            fault.heal()
        server.fail = False
        assert fault.close() == {"restarted_at_close": True}  # the session never loses its server
        assert get(proxy.port) == 200


def test_an_unhealed_restart_brings_the_server_and_the_proxy_back_at_close(server):
    server.start_seconds = 0.0
    with FaultProxy(server.port, seed=0) as proxy:
        fault = ServerRestart(server, server.start, proxy, heal_after=60)
        fault.inject()
        began = time.monotonic()
        assert fault.close() == {"restarted_at_close": True}
        assert time.monotonic() - began < 5  # no wait for the 55 s before the planned start
        assert get(proxy.port) == 200


def test_without_a_proxy_the_server_starts_at_the_heal(server):
    fault = ServerRestart(server, server.start, None, heal_after=0.1)
    assert "restart_after_seconds" not in fault.inject()
    time.sleep(0.3)
    assert not server.running
    server.start_delay = 0.5
    healed = fault.heal()
    assert server.running and healed["start_seconds"] >= 0.5
    assert get(server.port) == 200
