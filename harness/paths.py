"""Where the harness's own files are: the package, the repository it runs from, its workloads
and its reports.  One place, so that moving a module never changes what a path points at (the
docker and kind backends mount the package by this path)."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # .../harness
ROOT = PACKAGE.parent
FLOWS_DIR = ROOT / "flows"
REPORTS_DIR = ROOT / "reports"
SCENARIOS_DIR = ROOT / "scenarios"
