"""Keeping a failed case's logs: what is copied, from where, cut how, and what a bad source does."""

import time
from pathlib import Path

import pytest

from harness.model.journal import Journal
from harness.run.case import Prepared, execute
from harness.sut import caselogs


def test_a_file_is_kept_from_where_it_stood_when_the_case_began(tmp_path):
    server = tmp_path / "server.log"
    server.write_bytes(b"an earlier case's lines\n")
    marks = caselogs.mark({"server.log": server})
    with server.open("ab") as f:
        f.write(b"this case's lines\n")
    kept = caselogs.keep(tmp_path / "kept", {"server.log": server}, marks)
    assert kept["files"] == ["server.log"] and kept["problems"] == []
    assert (tmp_path / "kept" / "server.log").read_bytes() == b"this case's lines\n"


def test_a_log_replaced_since_the_mark_is_kept_whole(tmp_path):
    log = tmp_path / "server.log"
    log.write_bytes(b"x" * 100)
    marks = caselogs.mark({"server.log": log})
    log.write_bytes(b"restarted\n")  # shorter than the mark: a new file
    caselogs.keep(tmp_path / "kept", {"server.log": log}, marks)
    assert (tmp_path / "kept" / "server.log").read_bytes() == b"restarted\n"


def test_only_the_tail_of_a_long_log_is_kept_and_the_cut_is_said(tmp_path, monkeypatch):
    monkeypatch.setattr(caselogs, "TAIL", 10)
    log = tmp_path / "worker.log"
    log.write_bytes(b"0123456789abcdefghij")
    caselogs.keep(tmp_path / "kept", {"worker.log": log, "pod.log": lambda since: b"0123456789ABCDE"})
    kept = (tmp_path / "kept" / "worker.log").read_bytes()
    assert kept.endswith(b"\nabcdefghij") and b"10 earlier bytes" in kept
    pod = (tmp_path / "kept" / "pod.log").read_bytes()
    assert pod.endswith(b"\n56789ABCDE") and b"5 earlier bytes" in pod


def test_a_reader_is_asked_for_what_was_written_since_the_mark(tmp_path):
    asked = []
    marks = caselogs.mark({})
    caselogs.keep(tmp_path / "kept", {"server.log": lambda since: asked.append(since) or b"x"}, marks)
    assert asked == [marks["at"]]


def test_a_source_that_cannot_be_read_is_named_and_the_rest_kept(tmp_path):
    def gone(since):
        raise RuntimeError("container abc gone")

    good = tmp_path / "worker.log"
    good.write_text("worker\n")
    kept = caselogs.keep(tmp_path / "kept", {"container-abc.log": gone, "missing.log": tmp_path / "never",
                                             "worker.log": good})
    assert kept["files"] == ["worker.log"]
    assert [p.split(":")[0] for p in kept["problems"]] == ["container-abc.log", "missing.log"]
    assert "container abc gone" in kept["problems"][0]
    assert not (tmp_path / "kept" / "container-abc.log").exists()


def test_a_case_directory_gives_every_log_under_it_by_its_path(tmp_path):
    home = tmp_path / "case"
    (home / "foreign").mkdir(parents=True)
    for name in ("worker.log", "task-worker-0.1.log", "foreign/task-worker-0.1.log", "ledger.jsonl"):
        (home / name).write_text(name)
    found = caselogs.home_logs(home)
    assert sorted(found) == ["foreign/task-worker-0.1.log", "task-worker-0.1.log", "worker.log"]
    kept = caselogs.keep(tmp_path / "kept", found)
    assert (tmp_path / "kept" / "foreign" / "task-worker-0.1.log").read_text() == "foreign/task-worker-0.1.log"
    assert len(kept["files"]) == 3
    assert caselogs.home_logs(tmp_path / "no-such-case") == {}


def test_a_journals_logs_go_beside_it_named_relative_to_it(tmp_path):
    journal = tmp_path / "reports" / "journal-20261123T000000Z.jsonl"
    log = tmp_path / "w.log"
    log.write_text("w")
    kept = caselogs.keep_for_journal(journal, "kill-abc123", {"worker.log": log}, None)
    assert kept["dir"] == "logs/journal-20261123T000000Z/kill-abc123"
    assert (journal.parent / kept["dir"] / "worker.log").read_text() == "w"


class _BrokenAPI:
    def create_flow_run(self, *args, **kwargs):
        raise RuntimeError("the server went away")


class _System:
    name = "local"
    api = _BrokenAPI()

    def __init__(self, log: Path):
        self.log = log

    def log_sources(self, deployed=None):
        return {"server.log": self.log}


def test_a_case_whose_run_raises_keeps_its_logs_and_says_where(tmp_path):
    from harness.backends import Deployed
    from harness.model.scenario import Scenario

    log = tmp_path / "server.log"
    log.write_text("before\n")
    system = _System(log)
    scenario = Scenario.model_validate({"id": "raises", "title": "t", "backends": ["local"], "workload": {"flow": "pipeline"},
                                        "expect": {"final": "COMPLETED", "settle_within_seconds": 10}})
    marks = caselogs.mark(caselogs.sources(system))
    log.write_text("before\nwhy it broke\n")
    prepared = Prepared(scenario, system, "raises-abc", time.time(), time.time(),
                        Deployed("raises-abc", "d", "p", tmp_path / "ledger.jsonl"), None, log_marks=marks)
    journal = Journal(tmp_path / "reports" / "journal-x.jsonl")
    with pytest.raises(RuntimeError, match="went away") as raised:
        execute(prepared, journal)
    kept = tmp_path / "reports" / "logs" / "journal-x" / "raises-abc"
    assert raised.value.__notes__ == [f"the case's logs are kept in {kept}"]
    assert (kept / "server.log").read_text() == "why it broke\n"
    assert not journal.path.exists()  # no verdict: no journal line

