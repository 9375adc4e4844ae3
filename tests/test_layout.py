"""The package layout shows the architecture and keeps it: no import cycles (at module or function
level), the model core imports nothing from data, training, evaluation or the command line,
and the data layer imports only the leaf types."""

from __future__ import annotations

import ast
from pathlib import Path

import vaekit

ROOT = Path(vaekit.__file__).parent
LEAVES = {"vaekit.errors", "vaekit.config", "vaekit.batch", "vaekit.seeding", "vaekit.version"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every vaekit module ``path`` imports, anywhere in the file (functions included)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vaekit")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("vaekit"):
                continue
            for a in node.names:  # `from . import runs` imports the module vaekit.runs
                sub = f"{mod}.{a.name}"
                found.add(sub if (ROOT.parent / (sub.replace(".", "/") + ".py")).exists()
                          or (ROOT.parent / sub.replace(".", "/")).is_dir() else mod)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in ROOT.rglob("*.py")}


def test_there_is_no_import_cycle():
    graph = _graph()  # an import of a package is an edge to its __init__ module
    graph = {m: {d for d in deps if d in graph} for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == []


def _outside(graph, prefix: str, allowed: set[str]) -> dict[str, set[str]]:
    bad = {}
    for m, deps in graph.items():
        if m == prefix or m.startswith(prefix + "."):
            wrong = {d for d in deps if not (d == prefix or d.startswith(prefix + ".")) and d not in allowed}
            if wrong:
                bad[m] = wrong
    return bad


def test_the_model_core_imports_only_itself_and_the_leaf_types():
    assert _outside(_graph(), "vaekit.models", LEAVES) == {}


def test_the_data_layer_imports_only_itself_and_the_leaf_types():
    assert _outside(_graph(), "vaekit.data", LEAVES) == {}


def test_the_import_scanner_sees_function_level_imports(tmp_path):
    """The checks above would pass vacuously if the scanner missed imports: show it finds one
    hidden in a function, relative and absolute."""
    graph = _graph()
    assert "vaekit.models" in graph["vaekit.runs"]  # `from .models import build_model`
    assert "vaekit.data.prepare" in graph["vaekit.cli"]  # imported inside a handler
    assert "vaekit.training.checkpoint" in graph["vaekit.training.loop"]  # `from . import checkpoint as ckpt`
