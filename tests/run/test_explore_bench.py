"""Pure parts of the exploration (invariants, the replay YAML, how a seed draws its schedules) and
of the benchmark (its figures), on hand-written histories, scripted runs and journal lines."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import yaml

from harness.model.faults import FaultRecord
from harness.model.history import FlowRun, History, State
from harness.model.matrix import load_matrix
from harness.run.bench import CpuSampler, from_journal, render, role_of
from harness.run.explore import RETRIES, STEPS, Episode, Step, invariant_violations, run_machine, was_rescheduled
from harness.run.figures import case_figures, observation_lag, own_time, quiet_time, summarize, target_cores
from harness.run.observe import Snapshot
from harness.sut import procs


def history(ledger=(), run_count=1, states=("SCHEDULED", "PENDING", "RUNNING")) -> History:
    run = FlowRun(id="r" * 36, flow_name="pipeline", role="main", run_count=run_count,
                  states=[State(t, t.title(), float(i)) for i, t in enumerate(states)])
    return History(scenario="x", backend="local", started_at=0, ended_at=10, bound_seconds=60,
                   flow_runs=[run], ledger=list(ledger))


def line(event, task, t, pid=1, run="r" * 36):
    return {"event": event, "task": task, "time": t, "pid": pid, "host": "h", "pstart": 1, "flow_run_id": run}


def test_a_clean_history_breaks_no_invariant():
    h = history([line("start", "step-1", 1), line("end", "step-1", 2), line("start", "step-2", 3)])
    assert invariant_violations(h, rescheduled=False) == []


def test_two_processes_at_once_is_a_violation():
    h = history([line("start", "step-1", 1, pid=1), line("start", "step-2", 2, pid=2), line("end", "step-1", 3, pid=1)])
    assert any("two processes at once" in w for w in invariant_violations(h, False))


def test_run_count_beyond_retries_is_a_violation_unless_rescheduled():
    h = history(run_count=RETRIES + 2)
    assert any("run_count" in w for w in invariant_violations(h, False))
    assert invariant_violations(h, True) == []


def test_a_completed_task_running_again_is_a_violation():
    h = history([line("start", "step-1", 1), line("end", "step-1", 2), line("start", "step-1", 5, pid=2)])
    assert any("ran again after it completed" in w for w in invariant_violations(h, False))


def test_an_interrupted_task_may_run_again():
    h = history([line("start", "step-1", 1), line("start", "step-1", 5, pid=2)])
    assert invariant_violations(h, False) == []


def test_rescheduled_means_scheduled_again_after_the_first_state():
    assert not was_rescheduled(history())
    assert was_rescheduled(history(states=("SCHEDULED", "PENDING", "RUNNING", "SCHEDULED", "RUNNING")))


def test_the_replay_is_a_valid_scenario_with_the_schedule(tmp_path):
    ep = Episode(run_id="r", started=100.0)
    ep.steps = [Step("api-error", "api", {"status": 500}, 2, 104.0, healed_at=110.04, seen_at=103.2),
                Step("kill-worker", "worker", {}, None, 101.5, seen_at=100.9),  # after RUNNING at 100.9
                Step("freeze", "flow-run", {}, 3, 111.0, healed_at=111.2, seen_at=110.5),
                Step("kill", "flow-run", {}, 3, 111.1, error="inject failed: LookupError: no live flow-run",
                     seen_at=110.5),
                Step("api-down", "api", {}, None, 140.0)]  # the run was never seen RUNNING
    text = ep.replay("explore-found")
    path = tmp_path / "found.yaml"
    path.write_text(text)
    (scenario,) = load_matrix(path)  # validated like any matrix row
    f0, f1, f2, f3 = scenario.faults  # the kill that could not be injected is left out
    # each fault at the trigger the exploration saw before it, as long after it as it came
    assert (f0.kind, f0.status, f0.heal_after_seconds) == ("api-error", 500, 6.0)
    assert (f0.when.task, f0.when.state, f0.when.after_seconds) == ("step-2", "RUNNING", 0.8)
    assert (f1.kind, f1.target, f1.heal_after_seconds) == ("kill-worker", "worker", None)
    assert (f1.when.flow_state, f1.when.after_seconds) == ("RUNNING", 0.6)
    assert (f2.when.task, f2.when.after_seconds, f2.heal_after_seconds) == ("step-3", 0.5, 1.0)  # at least 1 s
    assert (f3.when.flow_state, f3.when.task, f3.when.after_seconds) == (None, None, 40.0)  # from the creation
    assert scenario.config.flow_retries == RETRIES and not scenario.expect.overlap
    assert yaml.safe_load(text)[0]["id"] == "explore-found"


def test_the_replay_is_the_same_text_whatever_the_hash_seed():
    """A found schedule prints the same YAML on every run (a set's order follows PYTHONHASHSEED)."""
    code = ("from harness.run.explore import Episode, Step\n"
            "ep = Episode(run_id='r', started=100.0)\n"
            "ep.steps = [Step('kill', 'flow-run', {}, 1, 101.0)]\n"
            "print(ep.replay('explore-found'))")
    texts = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in range(6)}
    assert len(texts) == 1


class ScriptedRun:
    """A stand-in for the live system in the drawing test only: a run that ends after ``ends_after``
    looks at it (0: at once), faults that inject and heal without error, and no history."""

    settle = 60.0

    def __init__(self, ends_after: int) -> None:
        self.ends_after, self.looks, self.injected = ends_after, 0, 0

    def deploy(self, instance):
        return contextlib.nullcontext(SimpleNamespace(deployment_id="d", ledger=None))

    def start(self, deployed, instance):
        self.looks = 0
        return "r" * 36

    def snapshot(self, run_id, tasks):
        self.looks += 1
        state = "COMPLETED" if self.looks > self.ends_after else "RUNNING"
        return Snapshot(at=time.time(), flow_state=state, tasks={f"step-{i}": "RUNNING" for i in range(1, STEPS + 1)})

    def inject(self, spec, deployed, run_id):
        self.injected += 1
        return None, FaultRecord(spec.kind, spec.target, injected_at=time.time())

    def heal(self, fault, record):
        record.healed_at = time.time()

    def history(self, deployed, run_id, started, retry_for):
        return None

    def sleep(self, seconds):
        pass  # each wait is one more look: a run that outlives the schedule still ends at teardown


def test_a_seed_draws_the_same_schedules_however_fast_the_run_goes():
    """Hypothesis draws each rule among those whose preconditions hold: if a precondition read the
    live run (has it ended?), a run that ended sooner would make the same seed draw other schedules."""
    drawn = {}
    for ends_after in (0, 500):  # the run ends at once; the run outlives every schedule
        live, schedules = ScriptedRun(ends_after), []
        assert run_machine(live, seed=7, examples=12, steps=6, schedules=schedules) == (None, [])
        drawn[ends_after] = (schedules, live.injected)
    (quick, injected_quick), (slow, injected_slow) = drawn[0], drawn[500]
    assert quick == slow and len(quick) >= 12  # Hypothesis may run a few more than asked
    assert any(d.startswith("inject") for s in quick for d in s)  # the schedules do inject faults
    assert injected_quick == 0 < injected_slow  # into a live run only: an ended run is left alone


def entry(states, faults=(), stuck=False, seen=None, finished=50.0, settle=60, turn=0.0, quiet=0.0, quiet_from=None):
    return {"scenario": "s", "backend": "local", "finished_at": finished, "prefect_version": "3.8.8",
            "expectation": {"settle_within_seconds": settle},
            "verdict": {"outcome": "pass", "figures": {"stuck": stuck}},
            "timing": {"deploy": 4.0, "collect": 0.2, "terminal_seen_at": seen, "turn_started_at": turn,
                       "quiet": quiet, "quiet_from": quiet_from, "deploy_waited": 0.0, "prepared_ahead": True},
            "history": {"flow_runs": [{"role": "main", "states": [{"type": t, "timestamp": ts} for t, ts in states]}],
                        "faults": list(faults)}}


def test_own_time_runs_from_creation_to_the_last_awaited_event():
    assert own_time(entry([("SCHEDULED", 10), ("COMPLETED", 30)])) == 20
    assert own_time(entry([("SCHEDULED", 10), ("CRASHED", 30)], faults=[{"healed_at": 45}])) == 35
    assert own_time(entry([("SCHEDULED", 10), ("RUNNING", 12)], stuck=True, settle=60)) == 60
    storm = entry([("SCHEDULED", 10), ("COMPLETED", 30)], settle=60)  # its first run settled, another did not
    storm["history"]["flow_runs"].append({"role": "main", "states": [{"type": "PENDING", "timestamp": 12}]})
    assert own_time(storm) == 20
    storm["verdict"]["figures"]["storm"] = {"runs": 2, "stuck": ["run-2"]}
    assert own_time(storm) == 60


def test_observation_lag_is_seen_minus_recorded():
    assert abs(observation_lag(entry([("SCHEDULED", 10), ("COMPLETED", 30)], seen=30.4)) - 0.4) < 1e-9
    assert observation_lag(entry([("SCHEDULED", 10), ("RUNNING", 30)], seen=None)) is None


def test_case_figures_and_summary_against_the_targets():
    e = entry([("SCHEDULED", 10), ("COMPLETED", 30)], seen=30.5, finished=33.6, turn=9.0, quiet=3.1)
    fig = case_figures(e, cleanup=2.0)
    # its turn 9 -> 33.6 (24.6 s): 20 s its own, 3.1 s its quiet period, 1.5 s the harness's
    assert fig["wall"] == 24.6 and fig["own"] == 20 and fig["quiet"] == 3.1 and fig["cleanup"] == 2
    assert fig["overhead"] == 1.5 and fig["overhead_with_quiet"] == 4.6 and fig["prepared_ahead"] is True
    s = summarize([fig, {**fig, "wall": 10.0, "overhead": 0.5}], matrix_wall=40.0,
                  usage={"harness_peak_rss_mib": 1.0, "harness_cpu_seconds": 1.0, "children_cpu_seconds": 8.0})
    assert s["overhead_median"] == 1.0 and s["overhead_worst"] == 1.5 and s["prepared_ahead"] == 2
    assert s["matrix_over_longest"] == round(40 / 24.6, 2) and s["matrix_target_met"] is False
    assert s["overhead_target_met"] is False and s["cpu_floor_seconds"] == round(8.0 / s["cores"], 1)
    text = render({"summary": s, "cases": [fig], "errors": {"x@local": "Boom"}, "prefect_version": "3.8.8",
                   "backend": "local", "concurrency": 8, "ahead": 1, "path": "p.json",
                   "cpu_by_role": {"server": {"processes": 1, "cpu_seconds": 5.0},
                                   "worker": {"processes": 2, "cpu_seconds": 2.0}}})
    assert "cleanup after the journal line: median 2.0 s" in text
    assert "NOT met" in text and "x@local" in text and "s@local" in text and "CPU s, at least" in text
    # the roles and the harness itself: 5 + 2 + 1 CPU s
    assert f"CPU by role (sampled each second): 8 CPU s, at least {8 / s['cores']:.0f} s" in text
    assert "server 5 s (1 processes), worker 2 s (2 processes), harness 1 s (1 processes)" in text


def test_the_cores_the_matrix_target_needs_for_the_cpu_the_matrix_used():
    # 1.5x a 100 s case is 150 s: 9 CPU s fit one core; 301 CPU s need three, packed perfectly
    assert target_cores(9.0, 100.0, 2) == {"target_wall_seconds": 150.0, "target_cpu_seconds": 9.0,
                                           "target_cores_needed": 1, "matrix_target_reachable": True}
    assert target_cores(301.0, 100.0, 2)["target_cores_needed"] == 3
    assert target_cores(301.0, 100.0, 2)["matrix_target_reachable"] is False
    assert target_cores(300.0, 100.0, 2)["matrix_target_reachable"] is True
    assert target_cores(5.0, 0.0, 2) == {}  # no case: no figure rather than a division by zero
    fig = case_figures(entry([("SCHEDULED", 10), ("COMPLETED", 110)], seen=110.1, finished=110.5, turn=9.5,
                             quiet=0.0))
    cores = os.cpu_count() or 1
    s = summarize([fig], matrix_wall=900.0, usage={"harness_peak_rss_mib": 1.0, "harness_cpu_seconds": 10.0,
                                                   "children_cpu_seconds": 1000.0 * cores})
    # 1010*cores CPU s within 1.5 * 101 s: more cores than this machine has, whatever it has
    assert s["target_cores_needed"] > cores and s["matrix_target_reachable"] is False
    text = render({"summary": s, "cases": [fig], "errors": {}, "prefect_version": "3.9.1", "backend": "local",
                   "concurrency": 1, "ahead": 1, "path": "p.json"})
    assert (f"the 1.5x target means the matrix within 151.5 s; the CPU it used ({1000 * cores + 10} s, the harness's "
            f"and its children's) needs at least {s['target_cores_needed']} cores") in text
    assert f"{cores} here, so no schedule can meet it on this machine" in text
    assert "target_cores_needed" not in summarize([fig], matrix_wall=900.0, usage={})  # a journal: no usage


def test_figures_from_a_journal(tmp_path):
    lines = [entry([("SCHEDULED", 10), ("COMPLETED", 30)], seen=30.2, finished=30.6, turn=9.8, quiet=0.0),
             entry([("SCHEDULED", 40), ("FAILED", 50)], seen=50.2, finished=53.4, turn=39.5, quiet=3.0)]
    old = {**lines[0], "timing": {"deploy": 4.0}}  # a line from before the turn was journalled: left out
    path = tmp_path / "journal.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [old, *lines]) + "\n")
    result = from_journal(path)
    s = result["summary"]
    assert s["cases"] == 2 and s["matrix_wall"] == round(53.4 - 9.8, 1)
    assert sorted(c["overhead"] for c in result["cases"]) == [0.8, 0.9]
    assert s["overhead_target_met"] is True and "harness_peak_rss_mib" not in s
    text = render(result)
    assert "harness process" not in text and "None" not in text
    assert "cleanup after the journal line: not in a journal" in text
    assert "polls:" not in text  # lines from before polls were counted: no figure rather than a false one
    counted = [{**line, "timing": {**line["timing"], "polls": polls}} for line, polls in
               zip(lines, [{"count": 80, "unanswered": 0, "slowest": 0.1, "blind": 0.4},
                           {"count": 40, "unanswered": 6, "slowest": 5.0, "blind": 31.5}])]
    counted[1]["scenario"] = "storm"
    path.write_text("\n".join(json.dumps(x) for x in counted) + "\n")
    s = from_journal(path)["summary"]
    assert (s["polls"], s["polls_unanswered"], s["blind_worst"], s["blind_worst_case"]) == (120, 6, 31.5, "storm@local")
    assert "polls: 6 of 120 unanswered (a stopped server's too); the longest without an answer 31.5 s (storm@local)" \
        in render(from_journal(path))
    (tmp_path / "empty.jsonl").write_text(json.dumps(old) + "\n")
    with pytest.raises(SystemExit, match="empty.jsonl: no journal line"):
        from_journal(tmp_path / "empty.jsonl")


def test_only_the_quiet_period_after_the_scenarios_own_time_counts():
    settled = entry([("SCHEDULED", 10), ("COMPLETED", 30)], quiet=3.0, quiet_from=30.3)
    assert quiet_time(settled, own_time(settled)) == pytest.approx(3.0)
    # a late change (Crashed, then Completed at 33) inside the window: only 33 -> 33.5 is quiet
    late = entry([("SCHEDULED", 10), ("CRASHED", 30), ("COMPLETED", 33)], quiet=3.0, quiet_from=30.5, turn=10.0,
                 finished=34.0)
    assert quiet_time(late, own_time(late)) == pytest.approx(0.5)
    assert case_figures(late)["overhead"] == 0.5  # 24 s turn, 23 s its own, 0.5 s quiet: never negative
    # a journal line without the window's start: the whole period, as journalled
    assert quiet_time(entry([("SCHEDULED", 10), ("COMPLETED", 30)], quiet=3.0), 20) == 3.0


def test_each_process_of_the_session_has_its_role_from_its_command_line():
    py = "/venv/bin/python"
    assert role_of([py, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]) == "server"
    assert role_of([py, "-m", "prefect", "worker", "start", "--pool", "chaos-x"]) == "worker"
    assert role_of([py, "-m", "prefect.runner._workspace_supervisor", "/flows"]) == "flow run"
    assert role_of([py, "-m", "prefect.engine"]) == "flow run"
    assert role_of([py, "-m", "prefect", "flow-run", "execute"]) == "flow run"  # a job command
    assert role_of([py, "-m", "prefect", "task", "serve", "flows/background.py:work"]) == "task worker"
    assert role_of(["/usr/lib/postgresql/15/bin/postgres", "-D", "/tmp/pgdata"]) == "database"
    assert role_of(["sleep", "60"]) == "other"


def test_the_sampler_counts_the_cpu_of_the_sessions_processes_only(tmp_path):
    burn = [sys.executable, "-c", "import time\nend = time.process_time() + 1.5\nwhile time.process_time() < end: pass"]
    ours = subprocess.Popen(burn, env={**os.environ, procs.SESSION_ENV: "sampled", procs.OWNER_ENV: str(os.getpid())})
    theirs = subprocess.Popen(burn)  # not of the session: never counted
    with CpuSampler("sampled", interval=0.1) as sampler:
        ours.wait(timeout=30)
        theirs.wait(timeout=30)
    by_role = sampler.by_role()
    assert list(by_role) == ["other"] and by_role["other"]["processes"] == 1
    assert 1.0 <= by_role["other"]["cpu_seconds"] <= 2.0


def test_what_the_matrix_would_take_as_shards():
    from harness.run.figures import shard_estimates

    cases = [{"case": f"c{i}@local", "wall": w} for i, w in enumerate([300.0, 200.0, 100.0, 100.0, 90.0, 10.0])]
    two, four, eight = shard_estimates(cases, startup=20.0)
    # 2 shards: 300+100 | 200+100+90+10, both 400 s, and 20 s of start-up each
    assert two["shards"] == 2 and two["wall"] == 420.0 and two["ideal"] == 420.0
    assert four["wall"] == 320.0 and four["over_longest"] == round(320 / 300, 2) and four["target_met"] is None
    assert eight["wall"] == 320.0 and eight["target_met"] is True  # the longest case and the start-up: 1.07x
    assert shard_estimates(cases[:1] + [{"case": "x@local", "wall": 1000.0}], 0.0)[-1]["target_met"] is True
    lone = shard_estimates([{"case": "a@local", "wall": 10.0}] * 1, 500.0)[-1]
    assert lone["target_met"] is False and lone["shards_needed"] is None  # the start-up alone is 50x
    # 30 cases of 100 s and one of 120 s: within 1.5 x 120 = 180 s a shard holds one case, so 31
    many = [{"case": f"m{i}@local", "wall": 100.0} for i in range(30)] + [{"case": "long@local", "wall": 120.0}]
    est = shard_estimates(many, 0.0)[-1]
    assert est["target_met"] is False and est["shards_needed"] == 31


def test_shards_run_as_the_benchmark_ran_its_cases_take_their_load_over_its_overlap():
    from harness.run.figures import shard_estimates

    # 16 cases of 100 s and one of 200 s; run 2.5 turns at once on average, as the bench measured
    cases = [{"case": f"c{i}@local", "wall": 100.0} for i in range(16)] + [{"case": "long@local", "wall": 200.0}]
    one = {e["shards"]: e for e in shard_estimates(cases, startup=10.0)}
    many = {e["shards"]: e for e in shard_estimates(cases, startup=10.0, parallelism=2.5)}
    assert one[8]["wall"] == 310.0 and one[2]["wall"] == 910.0  # one at a time: 3 cases in a shard of 8
    assert many[2]["wall"] == 370.0  # 900 s over 2.5, plus the start-up
    assert many[8]["wall"] == 210.0 and many[8]["target_met"] is True  # never below its longest case
    assert many[4]["wall"] < one[4]["wall"] and many[4]["parallelism"] == 2.5
    # overlapping less than one at a time is one at a time
    assert shard_estimates(cases, 10.0, parallelism=0.5) == shard_estimates(cases, 10.0)


def test_the_benchmark_picks_the_least_concurrency_that_could_meet_the_floor_target():
    from harness.run.figures import pick_concurrency

    # 1600 CPU s over 3400 s of turns: a case keeps 0.47 cores busy; on 2 cores, 3 at once could end
    # within 2x the floor (3400/3 = 1133 s <= 2 * 800 s), 2 could not (1700 s)
    earlier = {"path": "b.json", "summary": {"children_cpu_seconds": 1560.0, "harness_cpu_seconds": 40.0},
               "cases": [{"wall": 1700.0}, {"wall": 1700.0}]}
    assert pick_concurrency(earlier, cores=2)[0] == 3
    assert pick_concurrency(earlier, cores=8)[0] == 9
    # no benchmark of this machine: the demand measured here (0.43 cores a case)
    chosen, why = pick_concurrency(None, cores=2)
    assert chosen == 3 and "no benchmark of this machine" in why
    assert pick_concurrency(None, cores=1)[0] == 2


def test_auto_concurrency_reads_the_newest_benchmark_and_survives_a_broken_one(tmp_path):
    from harness.run.figures import auto_concurrency

    assert "no benchmark" in auto_concurrency(2, tmp_path)[1]
    older = {"summary": {"children_cpu_seconds": 1000.0, "harness_cpu_seconds": 0.0}, "cases": [{"wall": 1000.0}]}
    (tmp_path / "bench-20260101T000000Z.json").write_text(json.dumps(older))  # 1 core a case: 1 at once on 2
    chosen, why = auto_concurrency(2, tmp_path)
    assert chosen == 1 and "bench-20260101T000000Z.json" in why
    (tmp_path / "bench-20260102T000000Z.json").write_text("{not json")  # the newest, unreadable
    assert "no benchmark" in auto_concurrency(2, tmp_path)[1]


def test_verdicts_are_compared_with_a_sequential_runs_journal(tmp_path):
    from harness.run.figures import compare_verdicts

    journal = tmp_path / "journal.jsonl"
    journal.write_text("".join(json.dumps({"scenario": s, "backend": "local", "verdict": {"outcome": o}}) + "\n"
                               for s, o in [("a", "pass"), ("b", "pass"), ("b", "fail"), ("c", "pass")]))
    now = [{"case": "a@local", "outcome": "pass"}, {"case": "b@local", "outcome": "fail"},
           {"case": "c@local", "outcome": "unknown"}, {"case": "d@local", "outcome": "pass"}]
    found = compare_verdicts(now, journal)
    assert found["compared"] == 3 and found["not_in_it"] == ["d@local"]
    assert found["differ"] == {"c@local": {"now": "unknown", "then": ["pass"]}}  # b was seen to fail too
    text = render({"summary": summarize([], 1.0, {}), "cases": [], "errors": {}, "prefect_version": "3.9.1",
                   "backend": "local", "concurrency": 3, "ahead": 1, "path": "p.json", "verdicts": found,
                   "cpu_before_after": [("server", 514.0, 400.0), ("harness", 39.2, None)], "baseline": "b.json"})
    assert f"verdicts against {journal}: 2 of 3 the same; differ: c@local unknown (was pass); not in it: 1" in text
    assert "CPU by role, before (b.json) -> now: server 514 -> 400 s, harness 39 -> - s" in text


def test_cpu_before_and_after_by_role_with_the_harness_as_a_role():
    from harness.run.figures import cpu_before_after

    before = {"cpu_by_role": {"server": {"cpu_seconds": 500.0}, "worker": {"cpu_seconds": 160.0}},
              "summary": {"harness_cpu_seconds": 39.0}}
    after = {"cpu_by_role": {"server": {"cpu_seconds": 420.0}, "flow run": {"cpu_seconds": 700.0}},
             "summary": {"harness_cpu_seconds": 30.0}}
    assert cpu_before_after(before, after) == [("server", 500.0, 420.0), ("worker", 160.0, None),
                                               ("harness", 39.0, 30.0), ("flow run", None, 700.0)]


def test_the_tracer_is_compared_with_the_ledger_where_both_counted():
    from harness.run.figures import tracer_agrees

    start = lambda task, **kw: {"event": "start", "task": task, **kw}  # noqa: E731
    same = {"history": {"ledger": [start("step-1"), {"event": "end", "task": "step-1"}, start("step-2")],
                        "traced": {"step-1": 1, "step-2": 1}}}
    assert tracer_agrees(same) is True
    assert tracer_agrees({"history": {**same["history"], "traced": {"step-1": 1}}}) is False
    assert tracer_agrees({"history": {"ledger": [start("step-1")]}}) is None  # a journal from before the tracer
    assert tracer_agrees({"history": {"ledger": [start("load", tracer=True)], "traced": {"load-a1b": 1}}}) is None
    assert tracer_agrees({"history": {"ledger": [], "traced": {}}}) is None  # nothing executed
