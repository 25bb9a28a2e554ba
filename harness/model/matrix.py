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


MAX_VALUES = 100_000  # values in one row, aliases expanded: a few KB of aliases can stand for a billion


def _expanded(node: yaml.Node, sizes: dict[int, int], above: frozenset[int] = frozenset()) -> int:
    """How many values ``node`` stands for once its aliases are expanded (memoized; a recursive
    alias counts once, _node_errors names it)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in above:
        return 1
    above = above | {id(node)}
    children = ([v for pair in node.value for v in pair] if isinstance(node, yaml.MappingNode)
                else node.value if isinstance(node, yaml.SequenceNode) else [])
    sizes[id(node)] = min(MAX_VALUES + 1, 1 + sum(_expanded(c, sizes, above) for c in children))
    return sizes[id(node)]


def _node_errors(node: yaml.Node, where: str = "", above: tuple[int, ...] = (),
                 done: set[int] | None = None) -> list[tuple[str, str]]:
    """What the data would lose or could not hold, below ``node``: (a dotted path, what is wrong).
    A mapping key given twice (YAML itself keeps the last silently), an alias inside its own
    anchor (recursive data, which no field of a scenario can hold), and a row whose aliases expand
    to more than ``MAX_VALUES`` values.  Each node is looked into once, however many aliases
    name it."""
    if done is None:
        size = _expanded(node, {})
        if size > MAX_VALUES:
            return [(where or "(row)", f"its YAML aliases expand to more than {MAX_VALUES} values")]
        done = set()
    if id(node) in above:
        return [(where, f"refers to itself (a recursive YAML alias, line {node.start_mark.line + 1})")]
    if id(node) in done:
        return []
    done.add(id(node))
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
            found.extend(_node_errors(value, path, above, done))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found.extend(_node_errors(item, f"{where}.{i}" if where else str(i), above, done))
    return found


MAX_FILE_BYTES = 2_000_000  # a matrix file is a few kilobytes; this one is something else
MAX_ERROR_CHARS = 300  # an error line quotes at most this much of a value


def shorten(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def load_file(path: Path) -> tuple[list[Scenario], list[str]]:
    """Parse one matrix file; return its scenarios and its error lines (never raises).  A key given
    twice in a row is an error (YAML would keep the last one silently), and so is a recursive alias."""
    try:
        scenarios, errors = _load_file(path)
        return scenarios, [shorten(line, 2 * MAX_ERROR_CHARS) for line in errors]
    except RecursionError:
        return [], [f"{path}: nested too deeply to be a matrix (or a regular expression in it is)"]
    except Exception as exc:  # whatever the bytes: an error line, never a traceback
        return [], [shorten(f"{path}: could not be read as a matrix: {type(exc).__name__}: {exc}".replace("\n", " "))]


def _load_file(path: Path) -> tuple[list[Scenario], list[str]]:
    data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        return [], [f"{path}: {len(data)} bytes; a matrix file is at most {MAX_FILE_BYTES}"]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [f"{path}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})"]
    loader = None
    try:  # one parse: the node tree, checked for keys given twice before merge keys are flattened
        loader = yaml.SafeLoader(text)  # its reader refuses control characters: an error here too
        tree = loader.get_single_node()
        rows = tree.value if isinstance(tree, yaml.SequenceNode) else []
        lost = {index: found for index, row in enumerate(rows) if (found := _node_errors(row))}
        raw = loader.construct_document(tree) if tree is not None else None
    except yaml.YAMLError as exc:
        return [], [shorten(f"{path}: not valid YAML: {exc}".replace("\n", " "))]
    finally:
        if loader is not None:
            loader.dispose()
    if raw is None:
        return [], [f"{path}: no scenarios (an empty matrix file runs nothing; give it rows or remove it)"]
    if not isinstance(raw, list):
        return [], [f"{path}: the file must be a list of scenarios, found {type(raw).__name__}"]
    scenarios, errors = [], []
    for index, row in enumerate(raw):
        sid = row.get("id", f"#{index + 1}") if isinstance(row, dict) else f"#{index + 1}"
        if index in lost:  # the same index: the rows of the node tree are the rows of the data
            errors.extend(f"{path}: scenario {shorten(str(sid), 80)!r}: {field}: {what}" for field, what in lost[index])
            continue
        try:
            # an entrypoint's relative path is relative to the matrix file's directory
            scenarios.append(Scenario.model_validate(row, context={"base": path.resolve().parent}))
        except ValidationError as exc:
            errors.extend(_format_errors(path, shorten(str(sid), 80), exc.errors()))
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
    if not files:
        raise MatrixError([f"{', '.join(map(str, paths))}: no *.yaml matrix file (a run of nothing is not a run)"])
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


def elsewhere(scenarios: list[Scenario], pattern: str, backends: list[str], tier: str = "full"
              ) -> tuple[list[str], bool]:
    """Where a pattern that selects nothing on ``backends`` in ``tier`` does select something:
    the other backends that have it (in that tier), and whether the full tier has it on these
    backends.  (The CLI and the plugin each word the hint in their own flags.)"""
    from harness.model.fields import BACKENDS

    others = sorted({b for _, b in select(scenarios, [pattern], list(BACKENDS), tier)})
    return others, tier != "full" and bool(select(scenarios, [pattern], backends, "full"))
