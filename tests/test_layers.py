"""The import graph is layered: core (bench) < methods, evaluations < pipeline < app, and acyclic.

Every ``.py`` file is parsed with ``ast``; every import counts, lazy ones (inside a
function) included, since a lazy import back up is still an arrow back up.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "methods", "evaluations", "pipeline", "app")
LAYER = {"bench": 0, "methods": 1, "evaluations": 1, "pipeline": 2, "app": 3}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is one of our modules (``a.b.c`` -> ``a.b`` if ``c`` is a name)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        app_dir = name.startswith("app")  # the app's pages import their siblings as top-level modules
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{alias.name}" for alias in node.names] + [stem]
            for target in targets:
                found = _resolve(target, modules)
                if found is None and app_dir:
                    found = _resolve(f"app.{target}", modules)
                if found and found != name:
                    edges.add(found)
        graph[name] = edges
    return graph


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in graph.items():
        for dst in targets:
            s, d = src.split(".")[0], dst.split(".")[0]
            if LAYER[d] > LAYER[s] or (LAYER[d] == LAYER[s] and d != s):  # methods and evaluations are siblings
                bad.append(f"{src} -> {dst}")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_runs_back_up_a_layer():
    """bench imports nothing above it; methods and evaluations import nothing from pipeline or app,
    nor from each other; pipeline imports nothing from app."""
    assert layering_violations(import_graph()) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_checker_sees_lazy_imports_and_cycles():
    graph = {"bench.a": {"methods.b"}, "methods.b": {"bench.a"}, "pipeline.c": {"methods.b"},
             "evaluations.d": {"methods.b"}}
    assert layering_violations(graph) == ["bench.a -> methods.b", "evaluations.d -> methods.b"]
    assert cycles(graph) == [["bench.a", "methods.b"]]
    assert "pipeline.engine" in import_graph()["pipeline.stages"]


def test_autocast_is_built_in_one_place():
    """``bench.precision.autocast_for`` is the one autocast: no other module calls ``torch.autocast``."""
    calls = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "autocast" and name != "bench.precision":
                calls.append(f"{name}:{node.lineno}")
    assert calls == []
