"""What a row expects of a run, layered by backend and Prefect version, and what a claim predicts."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import Field, field_validator

from harness.model.fields import BACKENDS, MAX_SECONDS, Count, States, StateType, _Model, _upper
from harness.model.history import REPORTER_NAMES

Reporter = Literal[REPORTER_NAMES]  # type: ignore[valid-type]


class RunExpectation(_Model):
    """What one flow run must look like at the end: a subset of the full expectation."""

    final: States | None = None  # type: ignore[valid-type]
    final_name: str | Annotated[list[str], Field(min_length=1)] | None = None
    message: str | None = None  # a regex searched in the final state's message
    run_count: Count | None = None

    _up = field_validator("final", mode="before")(lambda cls, v: _upper(v))

    @field_validator("message")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except (re.error, RecursionError, OverflowError) as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class Prediction(RunExpectation):
    """What a claim predicts: the main run's final state, run_count, message, its subflows',
    and task-body executions across the scenario (for claims about resumption)."""

    subflows: RunExpectation | None = None
    executions: dict[str, Count] = Field(default_factory=dict)


class Expectation(RunExpectation):
    executions: dict[str, Count] = Field(default_factory=dict)
    # task runs by name (a background task's state is its own, not its submitter's)
    tasks: dict[str, RunExpectation] = Field(default_factory=dict)
    # a storm (workload.runs > 1): the run fields above are for the runs no fault hit; these for
    # the runs a fault hit.  executions are totals over every run.
    faulted: RunExpectation | None = None
    # a storm: at least this many of its runs (faulted or not) end in each of these states
    at_least: dict[StateType, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)  # type: ignore[valid-type]
    detect_within_seconds: float | None = Field(None, gt=0, le=MAX_SECONDS)
    settle_within_seconds: float = Field(..., gt=0, le=MAX_SECONDS)
    subflows: RunExpectation | None = None
    overlap: bool = False  # two processes executing the same flow run at once
    flapping: bool = False  # a terminal state later overwritten
    _up_keys = field_validator("at_least", mode="before")(
        lambda cls, v: {_upper(k): n for k, n in v.items()} if isinstance(v, dict) else v)
    # what the infrastructure says, beyond Prefect: the kernel's OOM killer acted (a docker
    # container's OOMKilled, a cgroup's oom_kill count), and the first container's exit code
    oom_killed: bool | None = None
    exit_code: Count | None = None
    # The path, not only the end (the main run): states it must enter and must never enter, from
    # the first fault's injection on (the whole run without one), each a state type (SCHEDULED), a
    # name (AwaitingRetry) or both (SCHEDULED/AwaitingRetry); the first state that reflected the
    # fault, written the same way; and who set the final state (history.REPORTERS: from its message).
    passes_through: list[str] = Field(default_factory=list)
    never: list[str] = Field(default_factory=list)
    detected_as: str | list[str] | None = None
    reported_by: Reporter | list[Reporter] | None = None  # type: ignore[valid-type]
    # Set while no real run has confirmed this expectation: what it rests on instead (a
    # documented behaviour, a reading of the code).  The report marks such cells; a measurement
    # replaces the expectation and removes the mark.
    unverified: str | None = None


class ExpectationOverride(Expectation):
    settle_within_seconds: float | None = Field(None, gt=0, le=MAX_SECONDS)  # type: ignore[assignment]


def _specifiers(value: dict[str, Any]) -> dict[str, Any]:
    for key in value:
        if not key.strip():
            raise ValueError("'' is not a Prefect version specifier: an empty one would match every version")
        try:
            SpecifierSet(key)
        except InvalidSpecifier:
            raise ValueError(f"{key!r} is not a Prefect version specifier (e.g. '<3.7' or '>=3.6,<3.8')") from None
    return value


def _matching(overrides: dict[str, ExpectationOverride], version: str | None) -> list[ExpectationOverride]:
    """The overrides whose specifier the Prefect ``version`` satisfies, in the file's order."""
    if not version:
        return []
    return [o for key, o in overrides.items() if SpecifierSet(key).contains(version, prereleases=True)]


class BackendOverride(ExpectationOverride):
    # what this backend does differently on some Prefect versions, keyed by a version specifier
    prefect: dict[str, ExpectationOverride] = Field(default_factory=dict)

    _versions = field_validator("prefect")(lambda cls, v: _specifiers(v))


class FullExpectation(Expectation):
    backends: dict[str, BackendOverride] = Field(default_factory=dict)
    # what differs on some Prefect versions (every backend), keyed by a version specifier: '<3.7'
    prefect: dict[str, ExpectationOverride] = Field(default_factory=dict)

    _versions = field_validator("prefect")(lambda cls, v: _specifiers(v))

    @field_validator("backends")
    @classmethod
    def _known(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if name not in BACKENDS:
                raise ValueError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
        return value

    def for_backend(self, backend: str, prefect_version: str | None = None) -> Expectation:
        """The expectation for ``backend`` on Prefect ``prefect_version`` (None: any version).

        Layered, each over the one before: the row, its overrides for this Prefect version, the
        backend's override, the backend's overrides for this version.  A backend's override thus
        wins over a version's, as it wins over the row's."""
        base = self.model_dump(exclude={"backends", "prefect"})
        layers = _matching(self.prefect, prefect_version)
        override = self.backends.get(backend)
        if override is not None:
            layers += [override] + _matching(override.prefect, prefect_version)
        for layer in layers:
            base.update(layer.model_dump(exclude_unset=True, exclude={"prefect"}))
        return Expectation.model_validate(base)
