"""Hand-written journal lines, for the tests of what reads journals (the report, the shard merge):
one case's line with its verdict, figures and a small history."""

import json

T = 1_790_000_000.0


def entry(scenario="kill-a", backend="local", outcome="pass", version="3.8.8", at=0.0, ttd=0.5, kinds=("kill",),
          claim=None, claim_verdict=None, expectation=None, reasons=None, **fig):
    faults = [{"kind": k, "target": "flow-run", "injected_at": T + at + 10, "healed_at": None, "detail": {}, "error": None}
              for k in kinds]
    return {
        "scenario": scenario, "title": f"title of {scenario}", "backend": backend, "prefect_version": version,
        "harness_version": "0.1.0", "started_at": T + at, "finished_at": T + at + 30, "claim": claim,
        "expectation": expectation or {"final": "CRASHED", "settle_within_seconds": 60},
        "verdict": {"outcome": outcome, "reasons": reasons or ([] if outcome == "pass" else ["main run: final state X"]),
                    "figures": {"final": "CRASHED", "final_name": "Crashed", "run_count": 1, "time_to_detect": ttd,
                                "time_to_settle": 11.0, "stuck": False, "flapping": False, "executions": {"step-1": 1},
                                "re_executions": 0, "overlaps": [], **fig},
                    "claim": claim_verdict, "claim_reasons": [] if claim_verdict != "refuted" else ["main run: run_count 1, expected 2"]},
        "history": {"scenario": scenario, "backend": backend, "started_at": T + at, "ended_at": T + at + 30,
                    "bound_seconds": 60, "flow_runs": [{"id": "r1", "flow_name": "pipeline", "role": "main", "run_count": 1,
                                                       "parent_id": None, "states": [
                                                           {"type": "RUNNING", "name": "Running", "timestamp": T + at + 1, "message": None},
                                                           {"type": "CRASHED", "name": "Crashed", "timestamp": T + at + 10 + (ttd or 0),
                                                            "message": "Process exited with status code: -9 <b>"}]}],
                    "task_runs": [], "faults": faults, "notes": [], "infrastructure": [],
                    "ledger": [{"event": "start", "task": "step-1", "time": T + at + 2, "pid": 7, "host": "h", "flow_run_id": "r1"},
                               {"event": "end", "task": "step-1", "time": T + at + 5, "pid": 7, "host": "h", "flow_run_id": "r1"},
                               {"event": "start", "task": "step-2", "time": T + at + 6, "pid": 7, "host": "h", "flow_run_id": "r1"}]},
    }


def journal(path, *entries, torn=""):
    path.write_text("".join(json.dumps(e) + "\n" for e in entries) + torn)
    return path
