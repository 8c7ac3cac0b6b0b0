"""The compute backend: the project's ``compute`` section, its environment overrides, and a local backend that
never loads Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mixtrain.compute import ComputeResource, compute_resource
from mixtrain.config.compute import ComputeConfig, compute_config
from mixtrain.project import ProjectError, load_project

REPO = Path(__file__).resolve().parents[1]


def with_compute(project_dir: Path, compute: object) -> Path:
    cfg = yaml.safe_load((project_dir / "mixtrain.yaml").read_text())
    cfg["compute"] = compute
    (project_dir / "mixtrain.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return project_dir


def test_default_is_local(project_dir) -> None:
    assert load_project(project_dir).spec.compute == ComputeConfig(backend="local")


def test_project_file_selects_ray(project_dir) -> None:
    spec = load_project(with_compute(project_dir, {"backend": "ray", "address": "ray://head:10001"})).spec
    assert (spec.compute.backend, spec.compute.address) == ("ray", "ray://head:10001")
    resource = compute_resource(spec.compute, env={})
    assert (resource.backend, resource.address, resource.is_ray) == ("ray", "ray://head:10001", True)


@pytest.mark.parametrize(
    ("compute", "needle"),
    [
        ({"backend": "spark"}, "field 'compute.backend'"),
        ({"backend": "ray", "num_cpus": 0}, "field 'compute.num_cpus'"),
        ({"backend": "local", "address": "auto"}, "'address' is only used with backend 'ray'"),
        ({"backend": "ray", "adress": "auto"}, "field 'compute.adress'"),
        ({"backend": "ray", "address": "auto", "num_cpus": 2}, "a cluster at 'address' has its own CPUs"),
    ],
)
def test_bad_compute_sections_name_the_field(project_dir, compute, needle) -> None:
    with pytest.raises(ProjectError, match=r"mixtrain\.yaml") as e:
        load_project(with_compute(project_dir, compute))
    assert needle in str(e.value)


def test_environment_overrides_the_file() -> None:
    file = ComputeConfig(backend="ray", num_cpus=4)
    assert compute_config(file, {}) is file
    assert compute_config(file, {"MIXTRAIN_COMPUTE_BACKEND": "local"}) == ComputeConfig()
    on_cluster = compute_config(ComputeConfig(), {"MIXTRAIN_COMPUTE_BACKEND": "ray", "MIXTRAIN_RAY_ADDRESS": "auto"})
    assert (on_cluster.backend, on_cluster.address) == ("ray", "auto")
    with pytest.raises(ProjectError, match=r"\$MIXTRAIN_COMPUTE_BACKEND.*field 'backend'"):
        compute_config(file, {"MIXTRAIN_COMPUTE_BACKEND": "dask"})
    with pytest.raises(ProjectError, match="only used with backend 'ray'"):
        compute_config(ComputeConfig(), {"MIXTRAIN_RAY_ADDRESS": "auto"})


def test_local_backend_needs_no_ray() -> None:
    local = ComputeResource()
    assert not local.is_ray and local.partitions() == 1
    with pytest.raises(RuntimeError, match="backend is 'local'"):
        local.ensure_ray()


def test_local_backend_never_imports_ray() -> None:
    probe = (
        "import json, sys\n"
        "from mixtrain.compute import compute_resource\n"
        "import mixassets.engine.distributed\n"  # the drivers import Ray only when they run
        "r = compute_resource(env={})\n"
        "r.partitions(); r.shutdown()\n"
        "import definitions; definitions.build_defs('examples/demo')\n"  # the code location, resources built
        "print(json.dumps([m for m in sys.modules if m.split('.')[0] in ('ray', 'dagster_ray')]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MIXTRAIN_COMPUTE_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == []
