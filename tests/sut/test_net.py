"""Loopback ports for the harness's servers: outside the range outgoing connections take theirs."""

import socket

from harness.sut import net


def test_a_free_port_lies_outside_the_ephemeral_range_and_is_never_handed_out_twice():
    low, high = net.ephemeral_range()
    ports = [net.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    for port in ports:
        assert net.LOWEST <= port < 65536 and not low <= port <= high, port
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # and nothing listens on it


def test_a_port_someone_listens_on_is_passed_over(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            idle = s.getsockname()[1]
        monkeypatch.setattr(net, "candidates", lambda low, high: [busy, idle])
        monkeypatch.setattr(net, "_given", set())
        assert net.free_port() == idle


def test_with_no_room_outside_the_range_the_kernel_chooses(monkeypatch, tmp_path):
    whole = tmp_path / "ip_local_port_range"
    whole.write_text("1024\t65535\n")
    monkeypatch.setattr(net, "EPHEMERAL_RANGE_FILE", whole)
    assert net.ephemeral_range() == (1024, 65535) and net.candidates(1024, 65535) == []
    ports = {net.free_port() for _ in range(5)}
    assert len(ports) == 5


def test_an_unreadable_range_file_means_linuxs_default(monkeypatch, tmp_path):
    monkeypatch.setattr(net, "EPHEMERAL_RANGE_FILE", tmp_path / "missing")
    assert net.ephemeral_range() == net.DEFAULT_EPHEMERAL
    bad = tmp_path / "bad"
    bad.write_text("many\n")
    monkeypatch.setattr(net, "EPHEMERAL_RANGE_FILE", bad)
    assert net.ephemeral_range() == net.DEFAULT_EPHEMERAL
    assert net.candidates(40000, 50000)[:1] == [net.LOWEST] and 40000 not in net.candidates(40000, 50000)
