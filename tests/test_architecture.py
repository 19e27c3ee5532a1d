"""The import rule of docs/architecture.md, checked on the real import graph of ``src/roadworthy``.

Every ``import`` statement counts, also the lazy ones inside functions; imports under
``if TYPE_CHECKING:`` count for the layer rule but not for cycles (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "roadworthy"

#: Modules that import nothing of roadworthy: everything may import them.
GROUND = {"errors", "types", "_files", "stats", "evidence", "threads", "memory", "_version", "schema"}
#: Algorithm libraries: usable from Python without any check.
ALGORITHMS = {"shifts", "attacks", "coverage", "uncertainty", "backdoor"}
#: What each layer may import (besides the ground floor and itself).
ALLOWED: dict[str, set[str]] = {
    "ground": set(),
    "results": set(),
    "models": set(),
    "data": set(),
    "algorithms": {"models"},
    "checks": {"models", "data", "results", "algorithms"},
    "report": {"results"},
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(imported module, only under TYPE_CHECKING)`` for every roadworthy import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                typing_only.update(id(n) for n in ast.walk(sub))
    out: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for name in names:
            if name == PKG or name.startswith(PKG + "."):
                out.append((name, id(node) in typing_only))
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    if top in GROUND:
        return "ground"
    if top in ALGORITHMS:
        return "algorithms"
    if top in ALLOWED:
        return top
    return "upper"  # session, runner, api, cli, policy, compare, demo, ...: may import anything


MODULES = {_module_name(p): p for p in sorted((SRC / PKG).rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The module an imported name lives in (``roadworthy.checks.base.Check`` -> ``roadworthy.checks.base``)."""
    while name and name not in MODULES:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name or None


def _graph(runtime_only: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for mod, path in MODULES.items():
        deps = set()
        for name, typing_only in _imports(path):
            target = _resolve(name)
            if target and target != mod and not (runtime_only and typing_only):
                deps.add(target)
        graph[mod] = deps
    return graph


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    layer = _layer(module)
    if layer == "upper":
        return
    allowed = {layer, "ground", *ALLOWED[layer]}
    for target in _graph(runtime_only=False)[module]:
        if target == PKG:
            continue
        assert _layer(target) in allowed, f"{module} ({layer}) imports {target} ({_layer(target)})"
        if layer == "models" or layer == "data":
            assert target.split(".")[1] == module.split(".")[1] or _layer(target) == "ground", target


def test_check_suites_do_not_import_each_other():
    """A suite's checks use algorithm libraries, never another suite's check modules."""
    for module, deps in _graph(runtime_only=False).items():
        parts = module.split(".")
        if len(parts) < 4 or parts[1] != "checks":
            continue
        for target in deps:
            t = target.split(".")
            if len(t) >= 4 and t[1] == "checks":
                assert t[2] == parts[2], f"{module} imports another suite's module {target}"


def test_no_import_cycles():
    graph = _graph(runtime_only=True)
    # a module imports its own package's __init__ (and vice versa) routinely; cycles through a package's
    # __init__ that only re-exports are not counted
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if d in MODULES and MODULES[d].name == "__init__.py" and m.startswith(d + "."):
                continue  # a submodule importing its own package
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d) :], d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
