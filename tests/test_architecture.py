"""Architecture rules, checked on the source (``ast``, nothing imported but in the last test): layering between the
core and the three domain packages, engines free of Dagster and of most of the core, no import cycles, no
module over 500 lines, and a code location that loads without torch or ray.

The rules name packages and folders, never today's files, so they keep holding while modules are split.
Imports under ``if TYPE_CHECKING:`` never count. Function-level (lazy) imports count for the layering rules
(they still couple the packages) but not for cycles (they do not run at import time).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = "mixtrain"
PACKAGES = (CORE, "mixassets", "training_assets", "eval_assets")
# package -> project packages it may import (besides itself)
ALLOWED = {
    CORE: set(),
    "mixassets": {CORE},
    "training_assets": {CORE, "mixassets"},
    "eval_assets": {CORE, "mixassets", "training_assets"},
}
# Engines (pure computation) and evaluation tasks: the core modules they may use, with their submodules. The
# table contract (mixtrain.tables) is pyarrow and fsspec only: engines stream tables through it.
ENGINE_CORE = (
    "mixtrain.config",
    "mixtrain.schema",
    "mixtrain.identity",
    "mixtrain.markdown",
    "mixtrain.tables",
    "mixtrain.durable",
    "mixtrain.faults",
)
MAX_LINES = 500
LINE_LIMITED = (*PACKAGES, "definitions.py", "benchmarks", "examples", "scripts", "tests")
HEAVY = ("torch", "ray")  # must not load with the code location


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name: the submodule when ``from pkg import sub`` names one, else ``pkg``
    line: int
    lazy: bool  # inside a function body: runs when called, not at import


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    """Every module of the four packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[_module_name(path)] = path
    return found


MODULES = _sources()
# namespace packages (folders without __init__.py) can be imported from too: ``from mixassets import assets``
NAMESPACES = {_module_name(d / "__init__.py") for f in MODULES.values() for d in f.parents if REPO in d.parents}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute package a ``from`` import reads from (relative imports resolved against ``name``)."""
    if not node.level:
        return node.module or ""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(name: str, path: Path) -> list[Import]:
    """The imports a module makes, skipping ``if TYPE_CHECKING:`` blocks."""
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, lazy)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno, lazy) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, path, node)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.append(Import(sub if sub in MODULES or sub in NAMESPACES else source, node.lineno, lazy))
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    return found


IMPORTS = {name: imports_of(name, path) for name, path in MODULES.items()}


def _where(name: str, imp: Import) -> str:
    return f"{MODULES[name].relative_to(REPO)}:{imp.line} imports {imp.module}" + (" (in a function)" * imp.lazy)


def _listing(lines: list[str]) -> str:
    return "\n".join(dict.fromkeys(lines))  # one line per import statement and module, in order


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_rules_see_the_packages():
    assert set(PACKAGES) <= set(MODULES), "a package without __init__.py"
    assert sum(len(found) for found in IMPORTS.values()) > len(MODULES)


def test_imports_are_read_as_python_runs_them(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "import dagster\n"
        "from . import not_a_module\n"
        "from .. import engine\n"
        "if TYPE_CHECKING:\n    import torch\n"
        "def f():\n    import ray\n"
    )
    found = {imp.module: imp.lazy for imp in imports_of("mixassets.assets.mod", path)}
    assert found == {
        "typing": False,
        "dagster": False,
        "mixassets.assets": False,  # a name from the package, not a module of it
        "mixassets.engine": False,
        "ray": True,
    }


def test_layering_core_then_data_then_training_then_evaluation():
    bad = [
        _where(name, imp)
        for name, found in IMPORTS.items()
        for imp in found
        if _top(imp.module) in PACKAGES
        and _top(imp.module) != _top(name)
        and _top(imp.module) not in ALLOWED[_top(name)]
    ]
    assert not bad, "imports against the layering:\n" + _listing(bad)


def _is_engine(name: str) -> bool:
    parts = name.split(".")
    return "engine" in parts[1:] or parts[:2] == ["eval_assets", "tasks"]


def _engine_may_import(module: str) -> bool:
    if _top(module).startswith("dagster"):
        return False
    if _top(module) == CORE:
        return any(module == allowed or module.startswith(allowed + ".") for allowed in ENGINE_CORE)
    return True


def test_engines_use_no_dagster_and_only_the_pure_core():
    engines = [name for name in IMPORTS if _is_engine(name)]
    assert engines, "no engine modules found: has the layout changed?"
    bad = [_where(name, imp) for name in engines for imp in IMPORTS[name] if not _engine_may_import(imp.module)]
    assert not bad, f"engine modules may use from the core only {ENGINE_CORE}, and no dagster:\n" + _listing(bad)


def import_graph() -> dict[str, set[str]]:
    """Module-level imports between project modules (what runs when a module is imported)."""
    return {
        name: {imp.module for imp in found if imp.module in MODULES and not imp.lazy and imp.module != name}
        for name, found in IMPORTS.items()
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``a -> b -> ... -> a``) per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:  # recursion depth is bounded by the number of project modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path back to the component's first module, as a readable cycle."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError("a strongly connected component without a cycle")


def test_find_cycles_reports_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _line_limited_files() -> list[Path]:
    files = []
    for entry in LINE_LIMITED:
        path = REPO / entry
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return [f for f in files if not {"__pycache__", "storage", ".venv"} & set(f.relative_to(REPO).parts)]


def test_no_module_over_500_lines():
    files = _line_limited_files()
    assert len(files) > len(MODULES)
    counts = {f.relative_to(REPO).as_posix(): len(f.read_text().splitlines()) for f in files}
    over = {f: n for f, n in sorted(counts.items()) if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines:\n" + "\n".join(f"{n:6d} {f}" for f, n in over.items())


def test_the_code_location_loads_without_torch_or_ray():
    probe = (
        "import json, sys\nimport definitions\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(out.stdout.splitlines()[-1]) == [], "importing definitions loaded " + out.stdout
