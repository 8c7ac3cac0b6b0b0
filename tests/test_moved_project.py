"""A project copied or moved to another directory is the same project: nothing rebuilds, the mixture keeps its id,
and a config change reruns what it should without reaching for files at the old location.

Only the data half of the tiny project runs (up to the mixture: the mixture id is what every model version
hashes), once; the copy and the renamed original then share that state. The training manifests' paths are
checked by :mod:`tests.test_pipeline` (relative to the storage root).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from dagster import AssetSelection, materialize

from mixtrain.identity import resolve_relative
from mixtrain.instance import activate, load_definitions, open_instance
from mixtrain.runner import QUIET
from mixtrain.tables import open_table
from tests.conftest import build_tiny_project
from tests.pipeline_session import run_data_stages

MIXTURE_OUTS = ("mixture", "mixture_manifest", "heldout_text")


def _kept_ids(root: Path) -> set[str]:
    return set(open_table(root / "storage" / "deduplicated_corpus").read(columns=["doc_id"]).column(0).to_pylist())


def _manifest(root: Path) -> dict:
    return json.loads((root / "storage" / "mixture_manifest.json").read_text())


def _no_old_paths(root: Path, old: Path) -> None:
    """No stored JSON record names the old location (the Dagster event log may, as history)."""
    for path in (root / "storage").rglob("*.json"):
        assert str(old) not in path.read_text(), path


@contextmanager
def _out_of_reach(folder: Path) -> Iterator[None]:
    """``folder`` renamed away meanwhile, so that a path into it fails instead of quietly reading the original."""
    away = folder.with_name(folder.name + "-away")
    folder.rename(away)
    try:
        yield
    finally:
        away.rename(folder)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = build_tiny_project(tmp_path_factory.mktemp("moved") / "original" / "project", tiny_model_dir)
    assert "mixture" in {k for k, _ in run_data_stages(root).materialized}
    return root


def test_renamed_project_rebuilds_nothing(built: Path) -> None:
    """The original, renamed: its own Dagster home and storage, at a path no record has seen."""
    root = built.parent.parent / "renamed" / "project"
    built.parent.rename(root.parent)
    assert run_data_stages(root).materialized == []
    _no_old_paths(root, built)


def test_copy_rebuilds_nothing_and_keeps_ids(built: Path) -> None:
    source = built.parent.parent / "renamed" / "project"  # where the test above left the original
    original = _manifest(source)
    copy = built.parent.parent / "copy" / "project"
    shutil.copytree(source, copy)  # DAGSTER_HOME (.dagster) included
    with _out_of_reach(source.parent):
        _check_copy(copy, source, original)


def _check_copy(copy: Path, source: Path, original: dict) -> None:
    assert run_data_stages(copy).materialized == []
    assert _manifest(copy) == original
    for shard in original["shards"]:
        assert not Path(shard["path"]).is_absolute() and (copy / "storage" / shard["path"]).is_file()
    tokenizer = Path(resolve_relative(original["tokenizer"], str(copy / "storage")))
    assert tokenizer.parent == copy / "storage" / "base_model" and (tokenizer / "tokenizer_config.json").is_file()

    # Built again in the copy, the mixture is the same mixture: same shards, same id.
    project = activate(copy)
    defs = load_definitions(project)
    result = materialize(
        [*defs.assets, *(defs.asset_checks or [])],
        selection=AssetSelection.assets(*MIXTURE_OUTS),
        instance=open_instance(project),
        resources=defs.resources,
        run_config=QUIET,
    )
    assert result.success
    rebuilt = _manifest(copy)
    assert rebuilt["manifest_id"] == original["manifest_id"]
    assert rebuilt["shards"] == original["shards"] and rebuilt["tokenizer"] == original["tokenizer"]

    # A dedupe change in the copy reruns dedupe, reading only the copy's files, and what follows when the kept
    # documents changed (a looser threshold need not drop more: components already join chains).
    kept_before = _kept_ids(copy)
    config = yaml.safe_load((copy / "mixtrain.yaml").read_text())
    config.setdefault("dedupe", {})["threshold"] = 0.5
    (copy / "mixtrain.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    done = {k for k, _ in run_data_stages(copy).materialized}
    assert "deduplicated_corpus" in done
    after = {"screened_corpus", "mixture", "mixture_manifest"}
    assert (after <= done) if _kept_ids(copy) != kept_before else not (after & done)
    assert not done & {"raw_documents", "gated_documents", "base_model"}
    assert _manifest(copy)["spec_hash"] == original["spec_hash"]  # the mixture spec itself did not change
    _no_old_paths(copy, source)
