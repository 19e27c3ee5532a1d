"""The import rules of the lower layers, read from the source (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "roadworthy"
GROUND_FLOOR = ("errors.py", "types.py", "_files.py", "evidence.py", "stats.py")


def _imports(path: Path) -> set[str]:
    """Every ``roadworthy...`` module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "roadworthy" or m.startswith("roadworthy.")}


@pytest.mark.parametrize("name", GROUND_FLOOR)
def test_ground_floor_imports_nothing_of_roadworthy(name):
    assert _imports(SRC / name) == set()


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("data", ("roadworthy.models", "roadworthy.checks", "roadworthy.session", "roadworthy.report")),
        ("models", ("roadworthy.data", "roadworthy.checks", "roadworthy.session", "roadworthy.report")),
        ("report", ("roadworthy.checks", "roadworthy.session", "roadworthy.runner", "roadworthy.api")),
    ],
)
def test_lower_layers_do_not_reach_up(package, forbidden):
    for path in sorted((SRC / package).rglob("*.py")):
        bad = sorted(m for m in _imports(path) if m.startswith(forbidden))
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"
