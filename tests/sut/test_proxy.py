"""The fault proxy against a real HTTP server on loopback (the stdlib's), through httpx."""

from __future__ import annotations

import json

import httpx
import pytest

from harness.model.scenario import FaultSpec
from harness.sut.proxy import ApiFault, FaultProxy, Rule, route

from stub_http import JSONHandler, serve


class _Handler(JSONHandler):
    seen: list[tuple[str, str, bytes]] = []

    def _answer(self) -> None:
        body = self.body()
        _Handler.seen.append((self.command, self.path, body))
        self.answer({"path": self.path, "echo": body.decode()})

    do_GET = do_POST = _answer


@pytest.fixture()
def upstream():
    _Handler.seen = []
    with serve(_Handler) as port:
        yield port


@pytest.fixture()
def proxy(upstream):
    with FaultProxy(upstream, seed=7) as p:
        yield p


def client(proxy: FaultProxy) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}", timeout=5)


def test_route_names_ids_and_drops_the_query():
    assert route("POST", "/api/flow_runs/0b6f1c1e-6a43-4d5e-9a0e-3f1d2a4b5c6d/set_state?x=1") == \
        "POST /api/flow_runs/{id}/set_state"


def test_passes_requests_and_bodies_through_and_counts_them(proxy):
    with client(proxy) as c:
        for i in range(20):
            r = c.post("/api/thing", json={"i": i})
            assert r.status_code == 200 and json.loads(r.json()["echo"]) == {"i": i}
    assert proxy.ledger.requests == 20 and proxy.ledger.passed == 20 and not proxy.ledger.faulted
    assert len(_Handler.seen) == 20


def test_status_rule_answers_without_reaching_the_server(proxy):
    rule = Rule("status", status=503, retry_after=2)
    proxy.add(rule)
    with client(proxy) as c:
        r = c.get("/api/health")
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    assert _Handler.seen == []
    proxy.remove(rule)
    with client(proxy) as c:
        assert c.get("/api/health").status_code == 200
    assert proxy.ledger.faulted == {"503": 1}
    assert proxy.ledger.samples[0]["path"] == "/api/health"


def test_fraction_is_seeded_and_roughly_right(upstream):
    def codes(seed):
        with FaultProxy(upstream, seed=seed) as p:
            p.add(Rule("status", status=500, fraction=0.3))
            with client(p) as c:
                return [c.get("/x").status_code for _ in range(60)]

    first, again = codes(11), codes(11)
    assert first == again  # the same seed, the same requests: the same answers
    assert 8 <= first.count(500) <= 30


def test_path_rule_hits_only_matching_routes(proxy):
    proxy.add(Rule("status", status=500, path=r"set_state$"))
    with client(proxy) as c:
        assert c.post("/api/flow_runs/0b6f1c1e-6a43-4d5e-9a0e-3f1d2a4b5c6d/set_state", json={}).status_code == 500
        assert c.get("/api/health").status_code == 200
    assert proxy.ledger.by_route == {"POST /api/flow_runs/{id}/set_state": {"500": 1}}


def test_reset_before_never_reaches_the_server(proxy):
    proxy.add(Rule("reset", reset="before"))
    with client(proxy) as c, pytest.raises(httpx.TransportError):
        c.post("/api/x", json={"a": 1})
    assert _Handler.seen == []


def test_reset_after_reaches_the_server_but_loses_the_answer(proxy):
    proxy.add(Rule("reset", reset="after"))
    with client(proxy) as c, pytest.raises(httpx.TransportError):
        c.post("/api/x", json={"a": 1})
    assert [(m, p) for m, p, _ in _Handler.seen] == [("POST", "/api/x")]


def test_latency_delays_then_forwards(proxy):
    import time

    proxy.add(Rule("latency", latency=0.4))
    with client(proxy) as c:
        t = time.monotonic()
        assert c.get("/api/x").status_code == 200
        assert time.monotonic() - t >= 0.4


def test_down_refuses_connections_until_healed_on_the_same_port(proxy):
    port = proxy.port
    rule = Rule("down")
    proxy.add(rule)
    with client(proxy) as c, pytest.raises(httpx.ConnectError):
        c.get("/api/x")
    proxy.remove(rule)
    assert proxy.port == port
    with client(proxy) as c:
        assert c.get("/api/x").status_code == 200


def test_an_unreachable_server_is_a_reset_for_the_client():
    with FaultProxy(1, seed=0) as p:  # nothing listens on port 1
        with client(p) as c, pytest.raises(httpx.TransportError):
            c.get("/api/x")
        assert p.ledger.upstream_errors == 1


def test_close_frees_the_port(upstream):
    p = FaultProxy(upstream).start()
    port = p.port
    p.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/x", timeout=2)


def test_api_fault_records_its_window(proxy):
    spec = FaultSpec.model_validate({"kind": "api-error", "status": 429, "fraction": 1, "path": "flows",
                                     "when": {"after_seconds": 0}, "heal_after_seconds": 1})
    fault = ApiFault(proxy, spec)
    with client(proxy) as c:
        c.get("/api/other")
        detail = fault.inject()
        assert c.get("/api/flows/1").status_code == 429
        assert c.get("/api/other").status_code == 200
        healed = fault.heal()
        assert c.get("/api/flows/1").status_code == 200
    assert detail["rule"] == "429" and detail["path"] == "flows"
    assert healed["during"]["requests"] == 2 and healed["during"]["faulted"] == {"429": 1}
    assert fault.close() == {}


def test_an_unhealed_api_fault_ends_at_close(proxy):
    spec = FaultSpec.model_validate({"kind": "api-down", "when": {"after_seconds": 0}})
    fault = ApiFault(proxy, spec)
    fault.inject()
    assert fault.close()["healed"] is False
    with client(proxy) as c:
        assert c.get("/x").status_code == 200


def test_close_ends_connections_mid_request_without_unraisable_errors():
    """Connections still open inside the proxy at close (here: forwarded to a server that never answers)
    are cancelled and finished on the proxy's loop.  Before, their handlers were left pending and, when
    garbage-collected after the loop had closed, closed their upstream writer on that closed loop
    ("Event loop is closed", an unraisable error pytest reports as a warning)."""
    import gc
    import socket
    import sys
    import time

    silent = socket.create_server(("127.0.0.1", 0))  # accepts (by its backlog), never answers
    caught: list[str] = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda u: caught.append(f"{u.exc_type.__name__}: {u.exc_value} in {u.object!r}")
    try:
        p = FaultProxy(silent.getsockname()[1]).start()
        socks = []
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
            s.sendall(b"GET /api/x HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        deadline = time.monotonic() + 5
        while p.ledger.passed < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert p.ledger.passed == 3
        time.sleep(0.2)  # each handler now waits for the server's answer
        p.close()
        for s in socks:
            try:
                assert s.recv(1) == b""  # the proxy ended it with no answer ...
            except ConnectionResetError:  # ... by a reset, as close aborts its connections
                pass
            s.close()
        del p
        gc.collect()
    finally:
        sys.unraisablehook = old_hook
        silent.close()
    assert caught == []
