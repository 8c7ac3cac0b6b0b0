"""The code location loads whole (every job, sensor and schedule resolves), as the webserver would load it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mixtrain.instance import activate, load_definitions

REPO = Path(__file__).resolve().parents[1]


def test_code_location_resolves_every_definition(tiny_project):
    defs = load_definitions(activate(tiny_project))
    repo = defs.get_repository_def()
    repo.load_all_definitions()
    assert {j.name for j in repo.get_all_jobs()} >= {"refresh_specs"}
    assert repo.get_sensor_def("new_source_sensor") is not None
    assert repo.get_schedule_def("nightly_refresh") is not None
    graph = defs.resolve_asset_graph()
    assert all(graph.get(k).code_version for k in graph.materializable_asset_keys)


def _imports(package: str) -> set[str]:
    found = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("mixassets", {"training_assets", "eval_assets"}), ("training_assets", {"eval_assets"})],
)
def test_dependency_direction(package, forbidden):
    assert not _imports(package) & forbidden


@pytest.mark.parametrize("package", ["mixassets", "training_assets", "eval_assets"])
def test_engines_do_not_import_dagster(package):
    assert "dagster" not in _imports(f"{package}/engine")


def test_importing_the_code_location_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, definitions; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
