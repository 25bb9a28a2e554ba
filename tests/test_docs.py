"""The docs stay true to the code: every matrix field documented, the example row valid, every
relative link resolving, the README short."""

import re
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel

from harness.model.scenario import Scenario

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def field_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every field of a matrix row, as the reference writes it (``faults[].kind``)."""
    paths = set()
    for name, info in model.model_fields.items():
        path = prefix + name
        paths.add(path)
        args = typing.get_args(info.annotation)
        inner = [info.annotation, *args, *(a for x in args for a in typing.get_args(x))]
        nested = [t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)]
        if nested and path not in ("expect.backends", "expect.prefect"):  # overrides repeat expect's fields
            many = typing.get_origin(info.annotation) is list
            paths |= field_paths(nested[0], path + ("[]." if many else "."))
    return paths


def documented(path: str, lines: list[str]) -> bool:
    """A field is documented where one line of the reference names it whole, or names an
    ancestor's path and the rest of its components (``claim.predicts`` ... `subflows` (`final`)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        head, rest = ".".join(parts[:cut]), parts[cut:]
        if any(f"`{head}`" in line and all(f"`{r}`" in line for r in rest) for line in lines):
            return True
    return False


def test_every_matrix_field_is_in_the_reference():
    text = (DOCS / "matrix.md").read_text()
    lines = [line for line in text[text.index("## Every field"):].splitlines() if line.startswith("| `")]
    paths = field_paths(Scenario)
    leaves = [p for p in paths if not any(q.startswith(p + ".") or q.startswith(p + "[].") for q in paths)]
    missing = sorted(p for p in leaves if not documented(p, lines))
    assert not missing, f"fields of a matrix row not in docs/matrix.md's reference: {missing}"


def test_the_reference_example_row_is_valid():
    text = (DOCS / "matrix.md").read_text()
    block = re.search(r"## Every field.*?```yaml\n(.*?)```", text, re.S).group(1)
    [row] = yaml.safe_load(block)
    Scenario.model_validate(row)


def test_relative_links_resolve():
    broken = []
    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


def test_the_readmes_counts_are_the_matrixs():
    from harness.model.matrix import load_matrix
    from harness.paths import SCENARIOS_DIR

    rows, claims = map(int, re.search(r"(\d+) rows, (\d+) claims", (ROOT / "README.md").read_text()).groups())
    matrix = load_matrix(SCENARIOS_DIR)
    assert (rows, claims) == (len(matrix), sum(1 for s in matrix if s.claim is not None))
