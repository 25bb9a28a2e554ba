"""One scenario of the matrix as a Chaos Toolkit experiment, or a refusal saying why it cannot be.

The experiment plays the scenario the way ``run_scenario`` does: the method starts the run,
injects each fault at its trigger and heals it after its ``heal_after_seconds``; the
steady-state hypothesis is the scenario's expectation for the backend, one probe per checked
figure, each with the matrix's tolerance.  It is checked after the method only: before the method
there is no run to probe, and the expectation describes the run once the fault has hit.  The
experiment says so itself (``runtime.hypothesis.strategy``, which the ``chaos run`` command reads
from the experiment; chaoslib's ``run_experiment`` takes it as its ``strategy`` argument instead).

Rollbacks heal what is still open and stop the system.  chaoslib's default rollback strategy
skips them when the experiment failed (a probe that raised) or was interrupted, so the experiment
asks for ``always``; the atexit net of ``harness.ctk.state`` cleans up where even rollbacks do
not run.

Refused, naming the scenario and the field, rather than exported wrongly:

- a backend the scenario does not list;
- a storm (``workload.runs`` > 1): the actions drive one flow run, the hypothesis checks one;
- follow-ups (``then``): a rerun after the run settled, with its own expectation;
- server settings (``server.env``): the actions run on the process's shared server;
- a fault after a fault that heals, at another trigger: ``run_scenario`` heals while it waits
  for the next trigger, a method runs one activity after another, so the heal would move.  Faults
  at the same trigger fire together (the harness fires the next on the poll after the last), so
  the method injects them one after the other and heals them after the group;
- expectations no probe reads: a subflow's name, message or run_count (its final state has one),
  a task run's name or message (its final state and run_count have one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.ctk import find_scenario
from harness.model.expectation import Expectation
from harness.model.fields import BACKENDS, STATE_TYPES
from harness.model.scenario import Scenario
from harness.run.session import prefect_version

ACTIONS, PROBES, TOLERANCES = "harness.ctk.actions", "harness.ctk.probes", "harness.ctk.tolerances"
RUNTIME = {"hypothesis": {"strategy": "after-method-only"}, "rollbacks": {"strategy": "always"}}


class ExportRefused(ValueError):
    """The scenario cannot be an experiment as it is; ``errors`` holds one 'scenario: field: why' each."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("cannot export as a Chaos Toolkit experiment:\n  " + "\n  ".join(errors))


def refusals(scenario: Scenario, backend: str) -> list[str]:
    """Why this scenario on this backend cannot be an experiment that means what the matrix means."""
    why: list[str] = []

    def no(field: str, text: str) -> None:
        why.append(f"scenario {scenario.id!r}: {field}: {text}")

    if backend not in scenario.backends:
        no("backends", f"the scenario runs on {', '.join(scenario.backends)}, not {backend!r}")
        return why
    if scenario.workload.runs > 1:
        no("workload.runs", f"a storm of {scenario.workload.runs} flow runs: the experiment drives and checks one")
    if scenario.own_server:
        no("server.env", "settings of a server of its own: the experiment's actions run on the process's shared "
                         "server")
    if scenario.then:
        no("then", "follow-up runs after the run settled, each with its own expectation: the experiment has "
                   "one flow run and one hypothesis")
    for group in _groups(scenario)[1:]:
        before = [i for i in range(group[0]) if scenario.faults[i].heal_after_seconds is not None]
        if before:
            i, healing = group[0], before[-1]
            no(f"faults.{i}", f"comes after faults.{healing}, which heals after "
                              f"{scenario.faults[healing].heal_after_seconds:g}s, at another trigger: the harness "
                              "heals while it waits for this trigger, a method runs one activity after the other")
    expect = scenario.expect.for_backend(backend, prefect_version())
    if expect.subflows is not None:
        for name in ("final_name", "message", "run_count"):
            if getattr(expect.subflows, name) is not None:
                no(f"expect.subflows.{name}", "only the subflows' final state has a probe")
    for task, wanted in expect.tasks.items():
        for name in ("final_name", "message"):
            if getattr(wanted, name) is not None:
                no(f"expect.tasks.{task}.{name}", "only a task run's final state and run_count have probes")
    return why


def tolerance(allowed: Any) -> Any:
    """The matrix's 'a value, or a list of allowed values' as a Chaos Toolkit tolerance: a value
    as itself, consecutive counts as a range, any other list through ``one_of`` (chaoslib reads a
    list of two as a range)."""
    if not isinstance(allowed, list):
        return allowed
    values = sorted(set(allowed), key=allowed.index)
    if len(values) == 1:
        return values[0]
    if all(isinstance(v, int) for v in values) and sorted(values) == list(range(min(values), max(values) + 1)):
        return {"type": "range", "range": [min(values), max(values)]}
    return _tolerance("one_of", allowed=values)


def _states(final: Any) -> Any:
    """The allowed final state(s); none given: any state, but a state (the checker's "no state was observed")."""
    return tolerance(final if final is not None else list(STATE_TYPES))


def _tolerance(func: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "probe", "name": func.replace("_", "-"),
            "provider": {"type": "python", "module": TOLERANCES, "func": func, "arguments": arguments}}


def _activity(type_: str, name: str, module: str, func: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": type_, "name": name,
            "provider": {"type": "python", "module": module, "func": func, "arguments": arguments}}


def _action(name: str, func: str, **arguments: Any) -> dict[str, Any]:
    return _activity("action", name, ACTIONS, func, arguments)


def _probe(name: str, func: str, tolerance_: Any, **arguments: Any) -> dict[str, Any]:
    return {**_activity("probe", name, PROBES, func, arguments), "tolerance": tolerance_}


def _regex(pattern: str) -> dict[str, Any]:
    # chaoslib substitutes ${name} forms in a regex tolerance and turns '$$' into '$': escape '$'
    return {"type": "regex", "pattern": pattern.replace("$", "$$")}


def hypothesis(scenario: Scenario, expect: Expectation) -> list[dict[str, Any]]:
    """One probe per figure the checker compares, in an order that reads as the verdict: the faults
    fired (else the harness says unknown), the run settled in its bound, then its figures."""
    probes = []
    if scenario.faults:
        probes.append(_probe("faults-injected", "faults_injected", len(scenario.faults)))
    probes.append(_probe("final-state", "flow_run_state", _states(expect.final),
                         wait_seconds=expect.settle_within_seconds, quiet_seconds=scenario.quiet_seconds))
    if expect.final_name is not None:
        probes.append(_probe("final-state-name", "flow_run_state_name", tolerance(expect.final_name)))
    if expect.message is not None:
        probes.append(_probe("final-state-message", "flow_run_message", _regex(expect.message)))
    if expect.run_count is not None:
        probes.append(_probe("run-count", "flow_run_count", tolerance(expect.run_count)))
    for task, count in expect.executions.items():
        probes.append(_probe(f"executions-{task}", "executions", tolerance(count), task=task))
    for task, wanted in expect.tasks.items():
        probes.append(_probe(f"task-{task}-state", "task_run_state", _states(wanted.final), task=task))
        if wanted.run_count is not None:
            probes.append(_probe(f"task-{task}-run-count", "task_run_count", tolerance(wanted.run_count), task=task))
    if expect.detect_within_seconds is not None:
        probes.append(_probe("time-to-detect", "time_to_detect",
                             _tolerance("at_most", limit=expect.detect_within_seconds)))
    if expect.subflows is not None and expect.subflows.final is not None:
        allowed = expect.subflows.final if isinstance(expect.subflows.final, list) else [expect.subflows.final]
        probes.append(_probe("subflow-states", "subflow_states", _tolerance("every_one_of", allowed=allowed)))
    probes.append(_probe("overlapping-executions", "overlapping", expect.overlap))
    probes.append(_probe("flapping", "flapping", expect.flapping))
    if expect.oom_killed is not None:
        probes.append(_probe("oom-killed", "oom_killed", expect.oom_killed))
    if expect.exit_code is not None:
        probes.append(_probe("exit-code", "exit_code", tolerance(expect.exit_code)))
    return probes


def method(scenario: Scenario, backend: str, matrix: str | None, expect: Expectation) -> list[dict[str, Any]]:
    """start_run, then each fault at its trigger (waited for within the scenario's bound), and its
    heal after heal_after_seconds."""
    where = {"matrix": matrix} if matrix else {}
    steps = [_action("start-run", "start_run", scenario=scenario.id, backend=backend, **where)]
    several = len(scenario.faults) > 1

    def name(i: int) -> str:
        fault = scenario.faults[i]
        return f"{fault.kind}-{fault.target}" + (f"-{i}" if several else "")

    for group in _groups(scenario):
        for i in group:
            fault = scenario.faults[i]
            fields = fault.model_dump(exclude_unset=True, exclude_none=True, exclude={"kind", "target", "when"})
            steps.append(_action(f"inject-{name(i)}", "inject_fault", kind=fault.kind, target=fault.target,
                                 when=fault.when.model_dump(exclude_none=True),
                                 timeout=expect.settle_within_seconds, **fields))
        healed_after = 0.0  # the group's heals in the order they fall, each paused from the one before
        for i in sorted((i for i in group if scenario.faults[i].heal_after_seconds is not None),
                        key=lambda i: scenario.faults[i].heal_after_seconds):
            after = scenario.faults[i].heal_after_seconds
            steps.append({**_action(f"heal-{name(i)}", "heal_faults", index=i),
                          "pauses": {"before": round(after - healed_after, 3)}})
            healed_after = after
    return steps


def _groups(scenario: Scenario) -> list[list[int]]:
    """The faults' indexes, consecutive faults at the same trigger grouped: they fire together."""
    groups: list[list[int]] = []
    for i, fault in enumerate(scenario.faults):
        if groups and scenario.faults[groups[-1][0]].when == fault.when:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _description(scenario: Scenario, backend: str, expect: Expectation) -> str:
    text = [f"{scenario.title}.",
            f"Scenario {scenario.id!r} of the Prefect crash-chaos harness's matrix, on the {backend} backend: "
            "the hypothesis is the matrix's expectation, checked after the method."]
    if scenario.claim is not None:
        text.append(f"Claim under test: \"{scenario.claim.text}\" (source: {scenario.claim.source}); the harness's "
                    "report judges it held or refuted, this hypothesis checks the expectation.")
    if expect.unverified:
        text.append(f"Unverified expectation (no real run has confirmed it yet): {expect.unverified}.")
    return " ".join(text)


def experiment(scenario: Scenario, backend: str = "local", matrix: str | None = None) -> dict[str, Any]:
    """The experiment of ``scenario`` on ``backend``; ``matrix`` is the path start_run loads it from
    (None: the repository's).  Raises ExportRefused when it cannot mean what the matrix means."""
    if backend not in BACKENDS:
        raise ExportRefused([f"scenario {scenario.id!r}: backend: unknown backend {backend!r} "
                             f"(known: {', '.join(BACKENDS)})"])
    errors = refusals(scenario, backend)
    if errors:
        raise ExportRefused(errors)
    version = prefect_version()
    expect = scenario.expect.for_backend(backend, version)
    tags = ["prefect", "chaos-harness", f"scenario:{scenario.id}", f"backend:{backend}",
            *dict.fromkeys(f"fault:{f.kind}" for f in scenario.faults)]
    if expect.unverified:
        tags.append("unverified")
    return {
        "version": "1.0.0",
        "title": scenario.title,
        "description": _description(scenario, backend, expect),
        "tags": tags,
        "runtime": RUNTIME,
        "steady-state-hypothesis": {
            "title": f"{scenario.id} on {backend} ends as the matrix expects",
            "probes": hypothesis(scenario, expect),
        },
        "method": method(scenario, backend, matrix, expect),
        "rollbacks": [
            _action("heal-open-faults", "heal_faults"),
            _action("stop-system", "stop_system"),
        ],
        "extensions": [{
            "name": "prefect-chaos-harness",
            "scenario": scenario.id, "backend": backend,
            # the expectation as resolved for this Prefect (the matrix's expect.prefect overrides)
            "prefect_version": version,
            "expectation": expect.model_dump(mode="json", exclude_none=True),
            "claim": scenario.claim.model_dump(mode="json", exclude_none=True) if scenario.claim else None,
        }],
    }


def export(scenario_id: str, backend: str = "local", matrix: str | None = None) -> dict[str, Any]:
    """Load and validate the matrix, then export one of its scenarios (``python -m harness export-ctk``).
    A matrix given is written as an absolute path: the experiment runs from any directory."""
    matrix = str(Path(matrix).resolve()) if matrix else None
    return experiment(find_scenario(scenario_id, matrix, "export-ctk"), backend, matrix)
