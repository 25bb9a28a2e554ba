"""The API fault proxy: the harness's own HTTP proxy between a scenario's clients and the server.

A scenario with an API fault gets a ``FaultProxy`` on 127.0.0.1; its worker (and so every flow
run the worker starts, which inherits the worker's ``PREFECT_API_URL``) talks to the server
through it, while the harness itself observes the server directly.  While a ``Rule`` is active
the proxy answers a fraction of matching requests with an HTTP status (500 / 503 / 429), delays
them, resets the connection before or after the server has seen the request, or stops
listening altogether (``down``).  Every request is counted and every faulted one recorded, so the
history says what the clients met.

One request per client connection: the proxy forwards the request with ``Connection: close``
and relays the answer until the server closes, so it never has to parse a response.  WebSocket
upgrades (Prefect's event stream) are piped both ways for as long as they last.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_REASONS = {408: "Request Timeout", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MAX_HEAD = 64 * 1024
_SAMPLES = 200  # faulted requests kept in full (time, method, path, action); all are counted


def route(method: str, target: str) -> str:
    """'POST /api/flow_runs/<uuid>/set_state?x=1' -> 'POST /api/flow_runs/{id}/set_state'."""
    return f"{method} {_ID.sub('{id}', target.split('?', 1)[0])}"


@dataclass(frozen=True)
class Rule:
    """One API fault while it is active.  ``action``: status | latency | reset | down."""

    action: str
    status: int | None = None  # status: the answer (500, 503, 429, ...)
    fraction: float = 1.0  # the share of matching requests it hits (seeded, reproducible)
    latency: float = 0.0  # latency: seconds added before forwarding
    reset: str = "before"  # reset: 'before' the server sees the request, or 'after' it answered
    path: str | None = None  # a regex searched in 'METHOD /path' (ids as {id}); None: every request
    retry_after: float | None = None  # status: a Retry-After header, in seconds

    def __post_init__(self) -> None:
        if self.action not in ("status", "latency", "reset", "down"):
            raise ValueError(f"unknown proxy action {self.action!r}")
        if self.action == "status" and self.status is None:
            raise ValueError("a status rule needs a status code")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.reset not in ("before", "after"):
            raise ValueError(f"reset must be 'before' or 'after', got {self.reset!r}")

    def label(self) -> str:
        if self.action == "status":
            return str(self.status)
        if self.action == "reset":
            return f"reset-{self.reset}"
        return self.action

    def matches(self, name: str) -> bool:
        return self.path is None or re.search(self.path, name) is not None


@dataclass
class Ledger:
    """What the proxy saw: every request counted, every faulted one recorded (up to _SAMPLES)."""

    requests: int = 0
    passed: int = 0
    faulted: Counter = field(default_factory=Counter)  # rule label -> requests it hit
    by_route: dict[str, Counter] = field(default_factory=dict)  # route -> label -> count
    samples: list[dict[str, Any]] = field(default_factory=list)
    upstream_errors: int = 0
    refused_while_down: int = 0  # connections closed because the proxy went down

    def hit(self, name: str, label: str) -> None:
        self.faulted[label] += 1
        self.by_route.setdefault(name, Counter())[label] += 1
        if len(self.samples) < _SAMPLES:
            method, path = name.split(" ", 1)
            self.samples.append({"time": time.time(), "method": method, "path": path, "action": label})

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "passed": self.passed, "faulted": dict(self.faulted),
                "by_route": {k: dict(v) for k, v in sorted(self.by_route.items())},
                "samples": list(self.samples), "upstream_errors": self.upstream_errors,
                "dropped_while_down": self.refused_while_down}


class FaultProxy:
    """A loopback HTTP/1.1 proxy to ``127.0.0.1:upstream_port`` with switchable faults.

    Runs its own event loop in a daemon thread; ``start``/``close`` are idempotent and ``close``
    ends every connection.  Use as a context manager."""

    def __init__(self, upstream_port: int, seed: int | None = None, port: int = 0, upstream_host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self.rules: list[Rule] = []
        self.ledger = Ledger()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._down = False

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> "FaultProxy":
        if self._thread is not None:
            return self
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name=f"fault-proxy-{self.upstream[1]}", daemon=True)
        self._thread.start()
        if not ready.wait(10) or self._server is None:
            self.close()
            raise RuntimeError(f"the fault proxy could not listen on 127.0.0.1:{self.port}")
        return self

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._listen())
            if self.port == 0 and self._server is not None:
                self.port = self._server.sockets[0].getsockname()[1]
        except OSError:
            self._server = None
        ready.set()
        if self._server is not None:
            self._loop.run_forever()
        self._finish_tasks()
        self._loop.close()

    def _finish_tasks(self) -> None:
        """Cancel the connection handlers still pending and let them run their ``finally`` here, on a
        loop that can still close their writers (left pending, they would be collected after the loop
        closed and fail there)."""
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.wait(pending, timeout=5))

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port, reuse_address=True)

    def _call(self, coro_fn, timeout: float = 10) -> Any:
        if self._loop is None or not self._loop.is_running():
            return None
        return asyncio.run_coroutine_threadsafe(coro_fn(), self._loop).result(timeout)

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if thread is None or loop is None:
            return
        try:
            self._call(self._shutdown)
        finally:
            if loop.is_running():
                loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            self._thread = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def _shutdown(self) -> None:
        await self._stop_listening()
        for w in list(self._writers):
            _abort(w)

    async def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # -- faults ---------------------------------------------------------------------------------
    def add(self, rule: Rule) -> None:
        """Activate ``rule``; a ``down`` rule stops listening (clients get connection refused)."""
        with self._lock:
            self.rules.append(rule)
        if rule.action == "down":
            self._down = True

            async def down() -> None:
                await self._stop_listening()
                for w in list(self._writers):  # the open connections die with the "server"
                    self.ledger.refused_while_down += 1
                    _abort(w)

            self._call(down)

    def remove(self, rule: Rule) -> None:
        with self._lock:
            if rule in self.rules:
                self.rules.remove(rule)
            still_down = any(r.action == "down" for r in self.rules)
        if rule.action == "down" and not still_down and self._down:
            self._down = False
            self._call(self._listen)  # the same port again

    def _pick(self, name: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.action != "down" and rule.matches(name) and self._random.random() < rule.fraction:
                    return rule
        return None

    # -- connections ----------------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream_writer = None
        try:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            if len(head) > _MAX_HEAD:
                return
            request_line, _, rest = head.partition(b"\r\n")
            parts = request_line.decode("latin-1").split(" ")
            if len(parts) != 3:
                return
            name = route(parts[0], parts[1])
            headers = [h for h in rest.decode("latin-1").split("\r\n") if h]
            upgrade = any(h.lower().startswith("upgrade:") for h in headers)
            self.ledger.requests += 1
            rule = self._pick(name)
            if rule is not None:
                self.ledger.hit(name, rule.label())
                if rule.action == "status":
                    writer.write(_answer(rule.status, rule.retry_after))
                    await writer.drain()
                    return
                if rule.action == "latency":
                    await asyncio.sleep(rule.latency)
                elif rule.reset == "before":
                    _abort(writer)
                    return
            else:
                self.ledger.passed += 1
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                self.ledger.upstream_errors += 1
                _abort(writer)  # as a server that went away mid-answer: the client sees the reset
                return
            if not upgrade:
                kept = [h for h in headers if not h.lower().startswith(("connection:", "keep-alive:"))]
                head = "\r\n".join([request_line.decode("latin-1"), *kept, "Connection: close", "", ""]).encode("latin-1")
            upstream_writer.write(head)
            await upstream_writer.drain()
            if rule is not None and rule.action == "reset":  # after: the server acts, the answer is lost
                forward = asyncio.ensure_future(_pipe(reader, upstream_writer))
                await upstream_reader.read(1)  # the first byte of the server's answer
                forward.cancel()
                _abort(writer)
                return
            sending = asyncio.ensure_future(_pipe(reader, upstream_writer))
            if not upgrade:  # tell the client this connection ends with the answer, whatever the server said
                try:
                    answer = await upstream_reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    sending.cancel()
                    _abort(writer)
                    return
                writer.write(_closing(answer))
            answering = asyncio.ensure_future(_pipe(upstream_reader, writer))
            # a request ends when the server has answered and closed; a WebSocket when either side ends
            await asyncio.wait({sending, answering} if upgrade else {answering}, return_when=asyncio.FIRST_COMPLETED)
            for task in (sending, answering):
                task.cancel()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            for w in (upstream_writer, writer):
                if w is not None and not w.is_closing():
                    w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        if not writer.is_closing():
            try:
                writer.write_eof()
            except (OSError, RuntimeError):
                writer.close()


def _closing(head: bytes) -> bytes:
    """A response head with its connection headers replaced by ``Connection: close``."""
    lines = head.decode("latin-1").split("\r\n")
    kept = [h for h in lines[1:] if h and not h.lower().startswith(("connection:", "keep-alive:"))]
    return "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1")


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0): the client sees 'connection reset', not a clean end."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


def _answer(status: int, retry_after: float | None) -> bytes:
    body = ('{"detail": "chaos harness fault proxy: %d"}' % status).encode()
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "content-type: application/json",
             f"content-length: {len(body)}", "connection: close"]
    if retry_after is not None:
        lines.append(f"retry-after: {retry_after:g}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class ApiFault:
    """An API fault of the catalogue on a scenario's proxy: inject activates its rule, heal ends it."""

    ACTIONS = {"api-error": "status", "api-latency": "latency", "api-reset": "reset", "api-down": "down"}

    def __init__(self, proxy: FaultProxy, spec: Any):
        self.proxy = proxy
        self.rule = Rule(self.ACTIONS[spec.kind], status=spec.status, fraction=spec.fraction or 1.0,
                         latency=spec.latency_seconds or 0.0, reset=spec.reset or "before", path=spec.path,
                         retry_after=spec.retry_after)
        self._before: dict[str, Any] = {}
        self.active = False

    def inject(self) -> dict[str, Any]:
        self._before = self.proxy.ledger.as_dict()
        self.proxy.add(self.rule)
        self.active = True
        return {"proxy_port": self.proxy.port, "rule": self.rule.label(), "fraction": self.rule.fraction,
                **({"path": self.rule.path} if self.rule.path else {})}

    def heal(self) -> dict[str, Any]:
        self.proxy.remove(self.rule)
        self.active = False
        return {"during": self._window()}

    def close(self) -> dict[str, Any]:
        if self.active:  # never healed: it lasted to the scenario's end
            self.proxy.remove(self.rule)
            self.active = False
            return {"during": self._window(), "healed": False}
        return {}

    def _window(self) -> dict[str, Any]:
        """Requests and faults while this fault was active (the ledger's difference)."""
        now, before = self.proxy.ledger.as_dict(), self._before
        faulted = {k: v - before.get("faulted", {}).get(k, 0) for k, v in now["faulted"].items()}
        return {"requests": now["requests"] - before.get("requests", 0),
                "faulted": {k: v for k, v in faulted.items() if v},
                "dropped_while_down": now["dropped_while_down"] - before.get("dropped_while_down", 0),
                "samples": now["samples"][len(before.get("samples", [])):]}
