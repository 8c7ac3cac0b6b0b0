"""The whole tiny pipeline on an ``s3://`` storage root served by a real S3 API (moto's server on 127.0.0.1):
every committed table is read back and verified from the bucket, the models are published there behind their
pointers, the release record names a version that is there, and a second run materializes nothing.

A whole pipeline run (several minutes here), so it sits with the drills: ``make test-faults``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

pytestmark = pytest.mark.faults


def test_the_pipeline_runs_on_s3_and_reruns_nothing(tmp_path: Path, tiny_model_dir: Path, s3_endpoint: str) -> None:
    import s3fs
    from upath import UPath

    from mixtrain.instance import activate, load_definitions, open_instance
    from mixtrain.model_store import current_version, fetch_model
    from mixtrain.release import current_release
    from mixtrain.runner import run_project
    from mixtrain.tables import MANIFEST_NAME, open_table
    from tests.conftest import build_tiny_project

    bucket = f"mixtrain-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem().mkdir(bucket)
    root = build_tiny_project(tmp_path / "project", tiny_model_dir)
    cfg = yaml.safe_load((root / "mixtrain.yaml").read_text())
    cfg["storage_root"] = f"s3://{bucket}/storage"
    (root / "mixtrain.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    project = activate(root)
    defs = load_definitions(project)
    with open_instance(project) as instance:
        first = run_project(project, defs, instance, log=lambda s: None)
        assert first.ok, first.failed_runs
        storage = UPath(project.storage_root)
        manifests = storage.fs.glob(f"{storage.path}/**/{MANIFEST_NAME}")
        assert len(manifests) > 20
        for manifest in manifests:
            open_table(UPath(f"s3://{manifest}").parent).verify()
        assert not (root / "storage").exists()  # nothing written beside the project instead
        base = current_version(project.storage_root, "base_model")
        assert base is not None and storage.joinpath("base_model", base["path"]).exists()
        local = fetch_model(project.storage_root, "base_model", tmp_path / "fetched")
        assert (local / "config.json").exists()
        release = current_release(project.storage_root)
        assert release is not None and release["current"]["path"]
        second = run_project(project, load_definitions(project), instance, log=lambda s: None)
        assert second.ok and second.materialized == []
