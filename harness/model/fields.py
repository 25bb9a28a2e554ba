"""The matrix's building blocks: backend and state names, the strict base model, counts, byte sizes."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

BACKENDS = ("local", "docker", "kind")
OWN_SERVER_BACKENDS = ("local", "docker")  # where one case can have a server (a system) of its own
TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
STATE_TYPES = TERMINAL + ("RUNNING", "SCHEDULED", "PENDING", "PAUSED", "CANCELLING")
CACHE_POLICIES = ("inputs", "task_source_inputs", "default", "none")
TIERS = ("quick", "full")
ID_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class _Model(BaseModel):
    # no infinite or NaN number anywhere in a row: every duration and count is a real one
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


MAX_SECONDS = 86_400.0  # every duration of a row: a day is already far beyond any case
ID_MAX = 100  # characters of a scenario id


StateType = Literal[STATE_TYPES]  # type: ignore[valid-type]


# a count, or the counts allowed (a list of at least one); never negative
Count = Union[NonNegativeInt, Annotated[list[NonNegativeInt], Field(min_length=1)]]
# one state type, or the ones allowed (at least one)
States = Union[StateType, Annotated[list[StateType], Field(min_length=1)]]  # type: ignore[valid-type]


def _upper(value: Any) -> Any:
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, list):
        return [v.upper() if isinstance(v, str) else v for v in value]
    return value


def parse_bytes(text: str) -> int:
    """'256Mi', '1Gi', '500M', '1024' -> bytes (Kubernetes quantity suffixes and Docker's)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?|[kmgt]b?|)\s*", str(text))
    if not match:
        raise ValueError(f"not a memory size: {text!r} (use e.g. 256Mi, 1Gi, 512m)")
    number, unit = float(match.group(1)), match.group(2)
    powers = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
    base = 1024 if (unit.endswith("i") or len(unit) == 1 and unit.islower() or unit.endswith("b")) else 1000
    return int(number * base ** powers[unit[:1].lower()])
