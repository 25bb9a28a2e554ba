"""Tolerances the matrix needs and chaoslib has no native form for (``{"type": "probe"}`` ones).

chaoslib reads a list tolerance of exactly two items as a range ``[low, high]``, not as a set of
allowed values (``["CANCELLED", "CRASHED"]`` would admit "COMPLETED"; ``[1, 3]`` would admit 2),
and its ``range`` tolerance cannot take a null (it raises inside the hypothesis, and the run ends
without its rollbacks).  The matrix means "one of these", and "at most" of a figure that may be
absent; these functions say exactly that.  chaoslib passes the probe's output as ``value``.
"""

from typing import Any

__all__ = ["one_of", "every_one_of", "at_most"]


def one_of(allowed: list, value: Any = None) -> bool:
    """The value is one of ``allowed`` (the matrix's list of allowed states or counts)."""
    return value in allowed


def every_one_of(allowed: list, value: Any = None) -> bool:
    """The value is a non-empty list and each item is one of ``allowed`` (every subflow's state)."""
    return isinstance(value, list) and bool(value) and all(v in allowed for v in value)


def at_most(limit: float, value: Any = None) -> bool:
    """The value is a number no greater than ``limit``; null (nothing measured) is not."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value <= limit
