"""Ledger and journal files: appends are whole lines; torn lines never break reading."""

import json
import multiprocessing

from harness import ledger
from harness.model import journal


def _write_many(path, n):
    import os

    os.environ[ledger.LEDGER_ENV] = str(path)
    for i in range(n):
        ledger.record(f"t{i}", payload="x" * 200)


def test_ledger_lines_from_concurrent_processes_never_interleave(tmp_path):
    path = tmp_path / "ledger.jsonl"
    procs = [multiprocessing.Process(target=_write_many, args=(path, 200)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    lines, torn = ledger.read(path)
    assert (len(lines), torn) == (800, 0)
    assert {l["event"] for l in lines} == {"start"}
    # each process is named by (pid, start time): forked children do not inherit their parent's
    starts = {(l["pid"], l["pstart"]) for l in lines}
    assert len(starts) == 4 and all(isinstance(s, int) for _, s in starts)
    assert all(s > ledger.process_start() for _, s in starts)  # started after this process


def test_ledger_is_silent_outside_the_harness(tmp_path, monkeypatch):
    monkeypatch.delenv(ledger.LEDGER_ENV, raising=False)
    ledger.record("t")  # no path: nothing written, no error
    assert ledger.read(tmp_path / "missing.jsonl") == ([], 0)


def test_torn_ledger_line_is_counted(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_text(json.dumps({"event": "start", "task": "a", "time": 1}) + "\n{\"event\": \"sta")
    lines, torn = ledger.read(path)
    assert len(lines) == 1 and torn == 1


def test_journal_appends_and_skips_a_torn_last_line(tmp_path):
    j = journal.Journal(tmp_path / "sub" / "j.jsonl")
    j.write({"scenario": "a"})
    j.write({"scenario": "b"})
    with open(j.path, "a") as f:
        f.write('{"scenario": "c"')  # a harness killed mid-write
    assert [e["scenario"] for e in journal.read(j.path)] == ["a", "b"]


def test_journal_lines_name_their_repeat_round(tmp_path, monkeypatch):
    """``run --repeat`` sets CHAOS_REPEAT_ROUND=k/N for each round; every line of that round says so."""
    monkeypatch.setenv(journal.ROUND_ENV, "2/5")
    j = journal.Journal(tmp_path / "j.jsonl", journal.repeat_round())
    j.write({"scenario": "a"})
    journal.Journal(tmp_path / "j.jsonl").write({"scenario": "b"})  # outside a repeat: no round
    assert list(journal.read(tmp_path / "j.jsonl")) == [{"scenario": "a", "round": {"index": 2, "of": 5}},
                                                        {"scenario": "b"}]


def test_a_malformed_repeat_round_is_refused_saying_what_it_should_be(monkeypatch):
    monkeypatch.delenv(journal.ROUND_ENV, raising=False)
    assert journal.repeat_round() is None
    for bad in ("2", "x/3", "0/3", "4/3", "2/"):
        try:
            journal.repeat_round(bad)
        except ValueError as exc:
            assert f"CHAOS_REPEAT_ROUND={bad!r}: expected 'k/N' with 1 <= k <= N" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")


def test_execution_brackets_a_body_and_records_its_error(tmp_path, monkeypatch):
    monkeypatch.setenv(ledger.LEDGER_ENV, str(tmp_path / "l.jsonl"))
    with ledger.execution("ok"):
        pass
    try:
        with ledger.execution("boom"):
            raise ValueError("bad")
    except ValueError:
        pass
    lines, _ = ledger.read(tmp_path / "l.jsonl")
    assert [(l["event"], l["task"]) for l in lines] == [("start", "ok"), ("end", "ok"), ("start", "boom"), ("end", "boom")]
    assert lines[-1]["error"] == "ValueError: bad" and "error" not in lines[1]


def test_a_journal_line_knows_its_number_even_with_another_writer(tmp_path):
    from harness.model.journal import Journal

    one, other = Journal(tmp_path / "j.jsonl"), Journal(tmp_path / "j.jsonl")  # two processes' journals
    assert one.write({"scenario": "a", "instance": "a-1"}) == 1
    assert other.write({"scenario": "b", "instance": "b-1"}) == 2
    assert one.write({"scenario": "c", "instance": "c-1"}) == 3
    assert one.lines == {"a-1": 1, "c-1": 3} and other.lines == {"b-1": 2}
