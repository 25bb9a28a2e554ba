"""Loopback ports: every server the harness starts binds 127.0.0.1 on a free port."""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

# Where the kernel takes the source port of an outgoing connection (and of a bind to port 0).
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL = (32768, 60999)  # Linux's default, where the file cannot be read
LOWEST = 10000  # below this, ports that services are configured to use are common

_given: set[int] = set()
_lock = threading.Lock()


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(v) for v in EPHEMERAL_RANGE_FILE.read_text().split())
        return low, high
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL


def candidates(low: int, high: int) -> list[int]:
    """The ports from LOWEST up that lie outside the ephemeral range ``low``-``high``."""
    return [*range(LOWEST, max(LOWEST, low)), *range(max(LOWEST, high + 1), 65536)]


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port no one listens on, for a server the harness starts a moment later.

    It lies outside the kernel's ephemeral range: a port that range hands out can be taken as the
    source port of any outgoing connection between choosing it and the server binding it, or
    while a scenario keeps a stopped server's port for its restart.  A port is handed out once
    per process, so two servers started together never get the same one."""
    ports = candidates(*ephemeral_range())
    rng = random.Random()
    with _lock:
        for _ in range(200 if ports else 0):
            port = rng.choice(ports)
            if port not in _given and _bindable(port):
                _given.add(port)
                return port
        while True:  # no room outside the range (an unusual configuration): the kernel's choice
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _given:
                _given.add(port)
                return port


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
