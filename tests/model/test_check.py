"""The checker on hand-written histories: every verdict path, every figure."""

from harness.model.check import check, figures, overlaps
from harness.model.expectation import Expectation
from harness.model.history import FlowRun, History, State, TaskRun
from harness.model.scenario import Scenario

T0 = 1000.0


def st(kind, at, name=None, message=None):
    return State(kind, name or kind.title(), T0 + at, message)


def history(states, *, faults=None, ledger=None, run_count=1, extra_runs=()):
    main = FlowRun("run-1", "pipeline", "main", states, run_count)
    return History("s", "local", T0, T0 + 60, 60, [main, *extra_runs], [],
                   faults if faults is not None else [{"kind": "kill", "target": "flow-run", "injected_at": T0 + 10,
                                                       "healed_at": None, "detail": {}, "error": None}],
                   ledger or [])


def line(task, at, pid=1, event="start", run="run-1"):
    return {"event": event, "task": task, "time": T0 + at, "pid": pid, "host": "h", "flow_run_id": run}


CRASHED_RUN = [st("SCHEDULED", 0), st("RUNNING", 2), st("CRASHED", 10.5, message="Process exited with status code: -9")]


def expect(**kw):
    kw.setdefault("settle_within_seconds", 60)
    return Expectation(**kw)


def test_pass_with_figures():
    h = history(CRASHED_RUN, ledger=[line("step-1", 3), line("step-1", 5, event="end"), line("step-2", 6)])
    v = check(expect(final="CRASHED", run_count=1, executions={"step-1": 1, "step-2": 1, "step-3": 0},
                     detect_within_seconds=1, message="status code: -9"), h)
    assert v.outcome == "pass", v.reasons
    assert v.figures["time_to_detect"] == 0.5
    assert v.figures["detected_as"] == "CRASHED/Crashed"
    assert v.figures["time_to_settle"] == 10.5
    assert v.figures["executions"] == {"step-1": 1, "step-2": 1}


def test_a_cancel_is_detected_when_the_run_leaves_the_cancelling_it_asked_for():
    states = [st("SCHEDULED", 0), st("RUNNING", 2), st("CANCELLING", 10.05), st("CANCELLED", 12.5)]
    cancel = [{"kind": "cancel", "target": "flow-run", "injected_at": T0 + 10, "healed_at": None, "detail": {}, "error": None}]
    v = check(expect(final="CANCELLED", run_count=1), history(states, faults=cancel))
    assert v.outcome == "pass", v.reasons
    assert (v.figures["time_to_detect"], v.figures["detected_as"]) == (2.5, "CANCELLED/Cancelled")
    # left Cancelling: nothing detected it, and the run is stuck
    v = check(expect(final="CANCELLING"), history(states[:3], faults=cancel))
    assert v.outcome == "pass", v.reasons
    assert v.figures["time_to_detect"] is None and v.figures["stuck"] is True
    # another fault's Cancelling (a run cancelled by Prefect itself) still reflects it
    v = check(expect(final="CANCELLED"), history(states))
    assert v.figures["detected_as"] == "CANCELLING/Cancelling"


def test_each_difference_is_a_reason():
    h = history(CRASHED_RUN, ledger=[line("step-1", 3), line("step-1", 4)])
    v = check(expect(final="COMPLETED", run_count=2, executions={"step-1": 1}, detect_within_seconds=0.1,
                     settle_within_seconds=5, message="OOM"), h)
    assert v.outcome == "fail"
    text = "\n".join(v.reasons)
    for words in ["final state CRASHED", "run_count 1, expected 2", "step-1: executed 2", "detected after 0.5s",
                  "settled after 10.5s", "does not match /OOM/"]:
        assert words in text


def test_allowed_lists():
    assert check(expect(final=["FAILED", "CRASHED"], run_count=[1, 2]), history(CRASHED_RUN)).outcome == "pass"


def test_stuck_run_passes_only_when_expected():
    running = [st("SCHEDULED", 0), st("RUNNING", 2)]
    assert check(expect(final="RUNNING"), history(running)).outcome == "pass"
    v = check(expect(final="CRASHED"), history(running))
    assert v.outcome == "fail" and any("stuck" in r for r in v.reasons)
    assert figures(history(running))["stuck"] is True
    v = check(expect(run_count=1), history(running))  # no final stated: stuck is still a failure
    assert v.outcome == "fail" and any("stuck" in r for r in v.reasons)
    awaiting = [st("SCHEDULED", 0), st("RUNNING", 2), st("SCHEDULED", 9, "AwaitingRetry")]
    assert check(expect(final=["SCHEDULED", "PENDING"], final_name="AwaitingRetry"), history(awaiting)).outcome == "pass"


def test_no_detection_when_nothing_reflects_the_fault():
    completed = [st("SCHEDULED", 0), st("RUNNING", 2), st("COMPLETED", 20)]
    v = check(expect(final="COMPLETED", detect_within_seconds=5), history(completed))
    assert v.figures["time_to_detect"] is None
    assert any("no state reflected the fault" in r for r in v.reasons)


def test_flapping_terminal_state_overwritten():
    flapped = CRASHED_RUN + [st("RUNNING", 12), st("COMPLETED", 15)]
    assert figures(history(flapped))["flapping"] is True
    assert check(expect(final="COMPLETED"), history(flapped)).outcome == "fail"
    assert check(expect(final="COMPLETED", flapping=True), history(flapped)).outcome == "pass"


def test_overlap_from_ledger_intervals():
    two_at_once = [line("step-2", 5, pid=1), line("step-2", 9, pid=1, event="end"), line("step-2", 7, pid=2)]
    assert overlaps(history(CRASHED_RUN, ledger=two_at_once))[0]["processes"] == [["h", 1], ["h", 2]]
    one_after_other = [line("step-2", 5, pid=1), line("step-2", 9, pid=2)]
    assert overlaps(history(CRASHED_RUN, ledger=one_after_other)) == []
    other_runs = [line("step-2", 5, pid=1), line("step-2", 6, pid=2, run="run-2"), line("step-2", 9, pid=1)]
    assert overlaps(history(CRASHED_RUN, ledger=other_runs)) == []
    v = check(expect(final="CRASHED"), history(CRASHED_RUN, ledger=two_at_once))
    assert any("overlapping executions" in r for r in v.reasons)


def test_unknown_when_the_fault_never_fired_or_failed():
    never = [{"kind": "kill", "target": "flow-run", "injected_at": None, "healed_at": None, "detail": {}, "error": None}]
    v = check(expect(final="CRASHED"), history(CRASHED_RUN, faults=never))
    assert v.outcome == "unknown" and v.reasons[0] == "fault kill -> flow-run never fired (its trigger was not seen)"
    described = [dict(never[0], detail={"trigger": "task work RUNNING at run_count >= 2"})]
    assert check(expect(final="CRASHED"), history(CRASHED_RUN, faults=described)).reasons[0] == \
        "fault kill -> flow-run never fired (its trigger, task work RUNNING at run_count >= 2, was not seen)"
    failed = [dict(never[0], error="inject failed: LookupError: no live flow-run process")]
    assert check(expect(final="CRASHED"), history(CRASHED_RUN, faults=failed)).outcome == "unknown"
    assert check(expect(final="CRASHED"), history([])).outcome == "unknown"


def test_unknown_when_the_api_could_not_be_read():
    h = history(CRASHED_RUN)
    h.notes.append("unknown: the API could not be read after 60s")
    assert check(expect(final="CRASHED"), h).outcome == "unknown"


def test_subflows_and_reruns_and_claim():
    sub = FlowRun("run-2", "child", "subflow", [st("RUNNING", 5)], 1)
    rerun = FlowRun("run-3", "pipeline", "rerun", [st("SCHEDULED", 20), st("COMPLETED", 30)], 1)
    h = history(CRASHED_RUN, extra_runs=[sub, rerun])
    scenario = Scenario.model_validate({
        "id": "x", "title": "x", "backends": ["local"], "workload": {"flow": "pipeline"},
        "claim": {"text": "c", "source": "s", "predicts": {"final": "COMPLETED"}},
        "then": [{"action": "rerun", "expect": {"final": "COMPLETED"}}],
        "expect": {"final": "CRASHED", "settle_within_seconds": 60, "subflows": {"final": "RUNNING"}},
    })
    v = check(scenario.expect.for_backend("local"), h, scenario)
    assert v.outcome == "pass", v.reasons
    assert v.claim == "refuted" and "final state CRASHED" in v.claim_reasons[0]
    resumed = scenario.model_copy(update={"claim": scenario.claim.model_copy(
        update={"predicts": scenario.claim.predicts.model_copy(update={"final": None, "executions": {"step-1": 1}})})})
    assert check(scenario.expect.for_backend("local"), h, resumed).claim == "refuted"  # step-1 never ran here
    h.ledger.append({"event": "start", "task": "step-1", "time": T0 + 3, "pid": 1, "host": "h", "flow_run_id": "run-1"})
    assert check(scenario.expect.for_backend("local"), h, resumed).claim == "held"
    sub.states.append(st("CRASHED", 11))
    v = check(scenario.expect.for_backend("local"), h, scenario)
    assert any(r.startswith("subflow child: final state CRASHED") for r in v.reasons)
    h.flow_runs.remove(rerun)
    assert any("then[0] rerun: no state" in r for r in check(scenario.expect.for_backend("local"), h, scenario).reasons)


def test_history_round_trips_through_json():
    import json

    h = history(CRASHED_RUN, ledger=[line("step-1", 3)])
    again = History.from_dict(json.loads(json.dumps(h.to_dict())))
    assert again == h
    assert [e[1] for e in again.timeline()][:3] == ["flow-run main run-1", "flow-run main run-1", "ledger"]


def test_docker_evidence_tells_an_oom_kill_from_a_manual_kill():
    msg = "Flow run infrastructure exited with non-zero status code 137. Process was killed, likely due to an out-of-memory (OOM) condition."
    states = [st("SCHEDULED", 0), st("RUNNING", 2), st("CRASHED", 10.5, message=msg)]
    for oom in (True, False):
        h = history(states)
        h.infrastructure = [{"container": "c1", "flow_run_id": "run-1", "exit_code": 137, "oom_killed": oom},
                            {"container": "other", "flow_run_id": "run-2", "exit_code": 0, "oom_killed": False}]
        fig = figures(h)
        assert (fig["oom_killed"], fig["exit_code"]) == (oom, 137)
        v = check(expect(final="CRASHED", message="out-of-memory", oom_killed=True, exit_code=137), h)
        # Prefect's message is the same either way: only Docker's flag decides
        assert v.outcome == ("pass" if oom else "fail")
        if not oom:
            assert v.reasons == ["oom_killed: False, expected True"]


def test_oom_evidence_from_a_cgroup_or_watchdog_and_its_absence():
    def with_detail(detail):
        return history(CRASHED_RUN, faults=[{"kind": "oom", "target": "flow-run", "injected_at": T0 + 5,
                                             "healed_at": None, "detail": detail, "error": None}])

    assert figures(with_detail({"oom_kills": 1}))["oom_killed"] is True
    assert figures(with_detail({"oom_kills": 0}))["oom_killed"] is False
    assert figures(with_detail({"watchdog_killed_at": T0 + 7}))["oom_killed"] is True
    none = history(CRASHED_RUN)
    assert figures(none)["oom_killed"] is None
    v = check(expect(final="CRASHED", oom_killed=False, exit_code=[137, 143]), none)
    assert v.outcome == "fail"
    assert v.reasons == ["oom_killed: the backend gave no evidence, expected False",
                         "exit_code: the backend gave no evidence, expected [137, 143]"]


def test_two_containers_with_the_same_pid_are_two_processes():
    # in two containers both flow runs may be pid 7 on host 'vm'; the start time tells them apart
    a = [{**line("step-1", 1, pid=7), "pstart": 100}, {**line("step-1", 9, pid=7, event="end"), "pstart": 100}]
    b = [{**line("step-1", 5, pid=7), "pstart": 200}, {**line("step-1", 12, pid=7, event="end"), "pstart": 200}]
    found = overlaps(history(CRASHED_RUN, ledger=a + b))
    assert len(found) == 1 and found[0]["overlap_seconds"] == 4.0
    same = [{**l, "pstart": 100} for l in b]
    assert overlaps(history(CRASHED_RUN, ledger=a + same)) == []


# -- storms: several runs, some faulted ------------------------------------------------------------
def _storm(finals: list[str], hit: set[int], stray: bool = False):
    from harness.model.history import FlowRun, History, State

    runs = [FlowRun(id=f"run-{i}", flow_name="pipeline", role="main", run_count=1,
                    states=[State("SCHEDULED", "Scheduled", 0.0), State("RUNNING", "Running", 1.0),
                            State(f, f.title(), 5.0 + i)])
            for i, f in enumerate(finals)]
    faults = [{"kind": "kill", "target": "flow-run", "injected_at": 2.0, "healed_at": None, "error": None,
               "detail": {"flow_run_id": f"run-{i}"}} for i in sorted(hit)]
    ledger = [{"event": "start", "task": "step-1", "time": 1.0, "pid": i, "host": "h", "pstart": 1,
               "flow_run_id": f"run-{i}"} for i in range(len(finals))]
    if stray:
        ledger.append({"event": "start", "task": "step-1", "time": 1.0, "pid": 99, "host": "h", "pstart": 1,
                       "flow_run_id": "someone-else"})
    return History(scenario="storm", backend="local", started_at=0, ended_at=60, bound_seconds=60,
                   flow_runs=runs, faults=faults, ledger=ledger)


def _storm_expect(**over):
    from harness.model.expectation import Expectation

    return Expectation.model_validate({"final": "COMPLETED", "run_count": 1, "faulted": {"final": "CRASHED"},
                                       "settle_within_seconds": 60, **over})


def test_storm_checks_faulted_and_unfaulted_runs_apart():
    from harness.model.check import PASS, check

    h = _storm(["COMPLETED", "CRASHED", "COMPLETED", "CRASHED"], hit={1, 3})
    verdict = check(_storm_expect(executions={"step-1": 4}), h)
    assert verdict.outcome == PASS, verdict.reasons
    assert verdict.figures["storm"] == {"runs": 4, "faulted": 2, "final": {"COMPLETED": 2, "CRASHED": 2},
                                        "stuck": [], "unaccounted_ledger_runs": [], "settled_before_fault": 0,
                                        "fault_after_run_ended": 0}


def test_storm_groups_differences_and_counts_stuck_runs():
    from harness.model.check import FAIL, check

    h = _storm(["COMPLETED", "RUNNING", "RUNNING", "CRASHED"], hit={1, 2})
    verdict = check(_storm_expect(), h)
    assert verdict.outcome == FAIL
    assert verdict.reasons == ["2 run(s): a faulted run: final state RUNNING (Running), expected CRASHED",
                               "1 run(s): an unfaulted run: final state CRASHED (Crashed), expected COMPLETED"]
    assert verdict.figures["storm"]["stuck"] == ["run-1", "run-2"]


def test_storm_at_least_counts_every_run_in_a_state():
    from harness.model.check import FAIL, PASS, check

    h = _storm(["COMPLETED", "CRASHED", "CRASHED", "PENDING"], hit=set())
    loose = {"final": ["COMPLETED", "CRASHED", "PENDING"], "run_count": [0, 1]}
    assert check(_storm_expect(**loose, at_least={"crashed": 2, "COMPLETED": 1}), h).outcome == PASS
    verdict = check(_storm_expect(**loose, at_least={"CRASHED": 3}), h)
    assert verdict.outcome == FAIL
    assert verdict.reasons == ["at least 3 run(s) CRASHED expected, 2 were (final states: "
                               "{'COMPLETED': 1, 'CRASHED': 2, 'PENDING': 1})"]


def test_a_storms_claim_is_judged_on_every_run_not_the_first():
    from harness.model.check import PASS, check
    from harness.model.scenario import Scenario

    def storm_row(predicts):
        return Scenario.model_validate({
            "id": "storm", "title": "t", "backends": ["local"], "workload": {"flow": "pipeline", "runs": 3},
            "claim": {"text": "every run ends", "source": "s", "predicts": predicts},
            "expect": {"final": ["COMPLETED", "PENDING"], "settle_within_seconds": 60}})

    h = _storm(["COMPLETED", "PENDING", "PENDING"], hit=set())
    row = storm_row({"final": ["COMPLETED", "CRASHED"]})
    verdict = check(row.expect.for_backend("local"), h, row)
    assert verdict.outcome == PASS and verdict.claim == "refuted"
    assert verdict.claim_reasons == ["2 run(s): a run: final state PENDING (Pending), expected ['COMPLETED', 'CRASHED']"]
    row = storm_row({"final": ["COMPLETED", "PENDING"]})
    assert check(row.expect.for_backend("local"), h, row).claim == "held"


def test_storm_refuses_ledger_lines_of_runs_it_did_not_start():
    from harness.model.check import FAIL, check

    verdict = check(_storm_expect(), _storm(["COMPLETED", "COMPLETED"], hit=set(), stray=True))
    assert verdict.outcome == FAIL and "did not start" in verdict.reasons[-1]


def test_a_storm_fault_whose_run_settled_first_is_not_unknown():
    from harness.model.check import FAIL, check

    h = _storm(["COMPLETED", "CRASHED"], hit={0})
    h.faults.append({"kind": "kill", "target": "flow-run", "injected_at": None, "healed_at": None, "error": None,
                     "detail": {"flow_run_id": "run-1", "not_fired": "its run settled (CRASHED) before the trigger"}})
    verdict = check(_storm_expect(), h)
    assert verdict.outcome == FAIL  # run-1 is judged as an unfaulted run, and it crashed
    assert sorted(verdict.reasons) == ["1 run(s): a faulted run: final state COMPLETED (Completed), expected CRASHED",
                                       "1 run(s): an unfaulted run: final state CRASHED (Crashed), expected COMPLETED"]
    assert verdict.figures["storm"]["settled_before_fault"] == 1


def test_a_storm_fault_that_landed_after_its_run_ended_did_not_hit_it():
    """Measured in a main job: the storm's poll, seconds old under load, saw step-2 Running, and the
    SIGKILL reached a process that had reported Completed 0.54 s before: the run is unfaulted."""
    from harness.model.check import PASS, check

    h = _storm(["COMPLETED", "CRASHED", "COMPLETED"], hit={0, 1})  # faults land at 2.0
    h.flow_runs[0].states[-1].timestamp = 1.5  # run-0 had ended before its fault landed
    verdict = check(_storm_expect(), h)
    assert verdict.outcome == PASS, verdict.reasons
    assert verdict.figures["storm"]["faulted"] == 1 and verdict.figures["storm"]["fault_after_run_ended"] == 1
    h.flow_runs[0].states[-1].timestamp = 2.5  # ended after the fault: it was hit, and it should have crashed
    verdict = check(_storm_expect(), h)
    assert verdict.reasons == ["1 run(s): a faulted run: final state COMPLETED (Completed), expected CRASHED"]


def _background(step2_states, ledger):
    h = history([st("SCHEDULED", 0), st("RUNNING", 2)], ledger=ledger,
                faults=[{"kind": "kill", "target": "task-worker", "injected_at": T0 + 5, "healed_at": None,
                         "detail": {"task_workers": [1]}, "error": None}])
    h.task_runs = [TaskRun("t1", "run-1", "step-1", [st("RUNNING", 3), st("COMPLETED", 9)], 1),
                   TaskRun("t2", "run-1", "step-2", step2_states, 1)]
    h.infrastructure = [{"task_worker": 0, "generation": 0, "pid": 10}, {"task_worker": 1, "generation": 0, "pid": 11},
                        {"task_worker": 1, "generation": 1, "pid": 12}]
    return h


def test_background_tasks_are_checked_by_name_and_their_replicas_named():
    ledger = [dict(line("step-1", 3, pid=10), task_run_id="t1"), dict(line("step-2", 3.5, pid=11), task_run_id="t2"),
              dict(line("step-1", 9, pid=10, event="end"), task_run_id="t1"),
              dict(line("step-2", 20, pid=12), task_run_id="t2")]
    h = _background([st("RUNNING", 3.5)], ledger)
    want = {"step-1": {"final": "COMPLETED"}, "step-2": {"final": "RUNNING", "run_count": 1}}
    v = check(expect(final="RUNNING", tasks=want), h)
    assert v.outcome == "pass", v.reasons
    assert v.figures["executed_by"] == {"step-1": ["task-worker-0"], "step-2": ["task-worker-1", "task-worker-1.1"]}
    assert v.figures["tasks"]["step-2"] == {"final": "RUNNING", "run_count": 1}
    # two replicas at once, each on its own task run, is no overlap; one task run in two is
    assert v.figures["overlaps"] == []
    h.ledger.append(dict(line("step-1", 4, pid=11), task_run_id="t1"))
    assert [o["task_run_id"] for o in overlaps(h)] == ["t1"]
    v = check(expect(final="RUNNING", tasks={"step-2": {"final": "COMPLETED"}, "step-9": {"final": "COMPLETED"}}),
              _background([st("RUNNING", 3.5)], ledger))
    assert v.outcome == "fail"
    assert "task step-2: final state RUNNING (Running), expected COMPLETED" in v.reasons
    assert "task step-9: no state was observed" in v.reasons


def test_a_foreign_replica_is_named_apart():
    # another service's replica serves the same task: whatever it executes is named as its own
    h = _background([st("RUNNING", 3.5)], [dict(line("step-1", 3, pid=10), task_run_id="t1"),
                                           dict(line("step-2", 4, pid=20), task_run_id="t2")])
    h.infrastructure = [{"task_worker": 0, "generation": 0, "pid": 20, "foreign": True},
                        {"task_worker": 0, "generation": 0, "pid": 10}]
    v = check(expect(final="RUNNING", executions={"step-2": 0}), h)
    assert v.figures["executed_by"] == {"step-1": ["task-worker-0"], "step-2": ["foreign-task-worker-0"]}
    assert v.outcome == "fail" and v.reasons == ["task step-2: executed 1 time(s), expected 0"]


def test_without_task_workers_the_overlap_unit_stays_the_flow_run():
    h = history(CRASHED_RUN, ledger=[dict(line("step-1", 3, pid=1), task_run_id="a"),
                                     dict(line("step-2", 4, pid=2), task_run_id="b"),
                                     dict(line("step-1", 5, pid=1, event="end"), task_run_id="a")])
    assert [o["flow_run_id"] for o in overlaps(h)] == ["run-1"]
    assert "executed_by" not in figures(h)


# --- the path: states entered and never entered, what detected the fault, who reported the end ---

# a crash the server answered with a flow retry, then the worker's own crash report 30 ms later
RETRIED_THEN_CRASHED = [st("SCHEDULED", 0), st("RUNNING", 2), st("SCHEDULED", 10.4, "AwaitingRetry"),
                        st("CRASHED", 10.43, message="Flow run infrastructure exited with non-zero status code -9.")]


def test_the_path_after_the_fault_is_checked_not_only_the_end():
    crash_only = expect(final="CRASHED", run_count=1, never=["AwaitingRetry"], passes_through=["CRASHED"],
                        detected_as="CRASHED", reported_by="runner")
    assert check(crash_only, history(CRASHED_RUN)).outcome == "pass"
    v = check(crash_only, history(RETRIED_THEN_CRASHED))
    assert v.outcome == "fail"
    assert v.reasons == [
        "main run: entered SCHEDULED/AwaitingRetry after the fault, expected never AwaitingRetry",
        "main run: detected as SCHEDULED/AwaitingRetry, expected CRASHED",
        "main run: final state reported by worker ('Flow run infrastructure exited with non-zero status code -9.'), "
        "expected runner"]
    assert v.figures["reported_by"] == "worker"
    assert v.figures["path"] == ["SCHEDULED/Scheduled", "RUNNING/Running", "SCHEDULED/AwaitingRetry", "CRASHED/Crashed"]


def test_a_state_is_named_by_type_name_or_both_and_before_the_fault_does_not_count():
    v = check(expect(passes_through=["SCHEDULED/AwaitingRetry"], detected_as=["AwaitingRetry", "CRASHED"],
                     reported_by=["worker", "runner"]), history(RETRIED_THEN_CRASHED))
    assert v.outcome == "pass", v.reasons
    # SCHEDULED before the fault (at 0 s) is not "after the fault"
    v = check(expect(passes_through=["Scheduled"]), history(CRASHED_RUN))
    assert v.reasons == ["main run: never entered Scheduled after the fault (CRASHED/Crashed)"]
    # without a fault, the whole run is the path
    v = check(expect(passes_through=["Scheduled"], never=["AwaitingRetry"]), history(CRASHED_RUN, faults=[]))
    assert v.outcome == "pass", v.reasons


def test_who_reported_a_state_is_read_from_its_message():
    from harness.model.history import reporter

    assert reporter("Process exited with status code: -9. This indicates ...") == "runner"
    assert reporter("Flow run infrastructure exited with non-zero status code 1.") == "worker"
    assert reporter("Execution was aborted by a termination signal.") == "engine"
    assert reporter("Flow run cancellation timed out; marked this flow run as Cancelled.") == "server"
    assert reporter("Flow run marked as crashed due to missing heartbeats.") == "automation"
    assert reporter("No active or succeeded pods found for any job") == "observer"
    assert reporter(None) == reporter("something else") == "unknown"
