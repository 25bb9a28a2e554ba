"""The matrix files: YAML into scenarios, every error named (file, scenario, field), and selection."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from harness.model.scenario import Scenario


class MatrixError(Exception):
    """The matrix is invalid; ``errors`` holds one 'file: scenario: field: message' line each."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid scenario matrix:\n  " + "\n  ".join(errors))


# pydantic names the member of a union it tried ('literal[...]', 'list[int]', 'int'): not a field
_TYPE_TAG = re.compile(r"^(?:[\w-]+\[.*\]|int|str|float|bool|none)$")


def _format_errors(path: Path, scenario_id: str, errors: list[dict[str, Any]]) -> list[str]:
    """One line per field: a value that fits no member of a union gets one line, not one per member."""
    by_field: dict[str, list[str]] = {}
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"] if not _TYPE_TAG.match(str(p)))
        msg = err["msg"].removeprefix("Value error, ")
        if msg.startswith("@"):  # a row-level check names its own field: "@faults.0.mem_limit: ..."
            field, msg = msg[1:].split(": ", 1)
            loc = ".".join(filter(None, [loc, field]))
        if msg not in by_field.setdefault(loc, []):
            by_field[loc].append(msg)
    return [f"{path}: scenario {scenario_id!r}: {loc or '(row)'}: {'; or '.join(msgs)}" for loc, msgs in by_field.items()]


def _node_errors(node: yaml.Node, where: str = "", above: tuple[int, ...] = ()) -> list[tuple[str, str]]:
    """What the data would lose or could not hold, below ``node``: (a dotted path, what is wrong).
    A mapping key given twice (YAML itself keeps the last silently), and an alias inside its own
    anchor (recursive data, which no field of a scenario can hold)."""
    if id(node) in above:
        return [(where, f"refers to itself (a recursive YAML alias, line {node.start_mark.line + 1})")]
    above += (id(node),)
    found: list[tuple[str, str]] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is None or name == "<<":  # a merge key (or a complex key) is not a field
                continue
            path = f"{where}.{name}" if where else name
            if name in first:
                found.append((path, f"given twice (lines {first[name] + 1} and {key.start_mark.line + 1}); "
                                    "YAML would keep only the last"))
            else:
                first[name] = key.start_mark.line
            found.extend(_node_errors(value, path, above))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found.extend(_node_errors(item, f"{where}.{i}" if where else str(i), above))
    return found


def load_file(path: Path) -> tuple[list[Scenario], list[str]]:
    """Parse one matrix file; return its scenarios and its error lines (never raises).  A key given
    twice in a row is an error (YAML would keep the last one silently), and so is a recursive alias."""
    loader = yaml.SafeLoader(path.read_text())
    try:  # one parse: the node tree, checked for keys given twice before merge keys are flattened
        tree = loader.get_single_node()
        rows = tree.value if isinstance(tree, yaml.SequenceNode) else []
        lost = {index: found for index, row in enumerate(rows) if (found := _node_errors(row))}
        raw = loader.construct_document(tree) if tree is not None else None
    except yaml.YAMLError as exc:
        return [], [f"{path}: not valid YAML: {exc}".replace("\n", " ")]
    finally:
        loader.dispose()
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [f"{path}: the file must be a list of scenarios, found {type(raw).__name__}"]
    scenarios, errors = [], []
    for index, row in enumerate(raw):
        sid = row.get("id", f"#{index + 1}") if isinstance(row, dict) else f"#{index + 1}"
        if index in lost:  # the same index: the rows of the node tree are the rows of the data
            errors.extend(f"{path}: scenario {str(sid)!r}: {field}: {what}" for field, what in lost[index])
            continue
        try:
            scenarios.append(Scenario.model_validate(row))
        except ValidationError as exc:
            errors.extend(_format_errors(path, str(sid), exc.errors()))
    return scenarios, errors


def load_matrix(*paths: Path | str) -> list[Scenario]:
    """Load every ``*.yaml`` under the given files/directories; raise MatrixError listing all errors."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.yaml")))
        elif p.is_file():
            files.append(p)
        else:
            raise MatrixError([f"{p}: no such file or directory"])
    scenarios, errors, seen = [], [], {}
    for f in files:
        found, errs = load_file(f)
        errors.extend(errs)
        for s in found:
            if s.id in seen:
                errors.append(f"{f}: scenario {s.id!r}: id: duplicate id, first defined in {seen[s.id]}")
            seen[s.id] = f
            scenarios.append(s)
    if errors:
        raise MatrixError(errors)
    return scenarios


def select(scenarios: list[Scenario], patterns: list[str] | None, backends: list[str],
           tier: str = "full") -> list[tuple[Scenario, str]]:
    """(scenario, backend) pairs matching any id/glob pattern and any of the chosen backends, of
    the tier (quick: the rows marked so; full: every row)."""
    pairs = []
    for s in scenarios:
        if patterns and not any(fnmatch.fnmatchcase(s.id, p) for p in patterns):
            continue
        if tier == "quick" and s.tier != "quick":
            continue
        pairs.extend((s, b) for b in s.backends if b in backends)
    return pairs
