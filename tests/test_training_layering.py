"""training_assets' layering: what its engine may import from the core, no import circles, no oversized module."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "training_assets"
ENGINE_CORE = {"mixtrain.config", "mixtrain.schema", "mixtrain.identity", "mixtrain.markdown"}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """Modules imported anywhere in ``path`` (function-level included), except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_engine_uses_only_the_core_modules_it_may():
    for path in (PACKAGE / "engine").rglob("*.py"):
        core = {m for m in _imports(path) if m.split(".")[0] == "mixtrain"}
        bad = {m for m in core if not any(m == ok or m.startswith(ok + ".") for ok in ENGINE_CORE)}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_no_import_circles():
    graph = {_module(p): {m for m in _imports(p) if m.startswith("training_assets")} for p in PACKAGE.rglob("*.py")}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for dep in graph.get(start, ()):
            if dep == target or (dep not in seen and reaches(dep, target, seen | {dep})):
                return True
        return False

    circles = sorted(m for m in graph if reaches(m, m, {m}))
    assert not circles, f"modules on an import circle: {circles}"


def test_no_module_over_500_lines():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert not long
