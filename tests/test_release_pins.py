"""A release pins adapter, base and tokenizer; a rollback restores the pair (or refuses), and the released model's
files are found only through those pins. Also: Hub ids need a pinned revision. No training: directories stand in
for models (mixtrain.model_store does not look inside)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

from mixtrain.config.training import StudentSpec, TrainingRecipe
from mixtrain.model_store import VERSIONS, publish_model
from mixtrain.release import ReleaseError, current_release, released_model_dirs, rollback
from mixtrain.storage import JSON_EXT, asset_path, json_bytes, write_atomic
from tests.model_store_cases import make_model
from training_assets.assets.model_store import base_pin

AT = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
SHA = "0123456789abcdef0123456789abcdef01234567"


def _base(root: str, tmp: Path, weights: bytes) -> dict:
    published = publish_model(make_model(tmp / f"base-{weights[:3].decode()}", weights), root, "base_model", tmp / "c")
    return {
        "location": published["location"],
        "path": published["local_path"],
        "weights_sha256": published["weights_sha256"],
        "version": published["version"],
        "tokenizer_sha256": published["tokenizer_sha256"],
    }


def _adapter(root: str, tmp: Path, version: str, base: dict) -> dict:
    d = tmp / f"adapter-{version}"
    d.mkdir()
    (d / "adapter_config.json").write_text("{}")
    (d / "adapter_model.safetensors").write_bytes(version.encode() * 8)
    published = publish_model(d, root, "sft_adapter", tmp / "c", version=version)
    return {
        "version": version,
        "path": published["local_path"],
        "location": published["location"],
        "key": ["sft_adapter"],
        "tokenizer_sha256": published["tokenizer_sha256"],
        "base": base_pin(base),
        "run_manifest": {"output_weights_sha256": published["weights_sha256"], "data_manifest_id": "m"},
    }


def _release(root: str, record: dict) -> None:
    from eval_assets.engine.release import next_release
    from mixtrain.release import release_entry

    entry = release_entry("sft_adapter", record, reason=["passed"], at=AT)
    write_atomic(
        asset_path(root, "released_model", ext=JSON_EXT), json_bytes(next_release(current_release(root), entry))
    )


@pytest.fixture
def two_releases(tmp_path) -> tuple[str, dict, dict]:
    """Adapter a1 on base b1 released, then the base changed and adapter a2 on b2 released."""
    root = str(tmp_path / "storage")
    b1 = _base(root, tmp_path, b"one" * 20)
    _release(root, _adapter(root, tmp_path, "a1", b1))
    b2 = _base(root, tmp_path, b"two" * 20)
    _release(root, _adapter(root, tmp_path, "a2", b2))
    return root, b1, b2


def test_entry_pins_adapter_base_and_tokenizer(two_releases):
    root, _, b2 = two_releases
    entry = current_release(root)["current"]
    assert entry["adapter"]["version"] == "a2" and entry["adapter"]["weights_sha256"]
    assert entry["base"]["version"] == b2["version"] and entry["base"]["weights_sha256"] == b2["weights_sha256"]
    # the adapter carries no tokenizer files: it is served with the base's
    assert entry["adapter"]["tokenizer_sha256"] is None and entry["tokenizer_sha256"] == b2["tokenizer_sha256"]


def test_rollback_restores_the_old_base_with_the_old_adapter(two_releases, tmp_path):
    root, b1, _ = two_releases
    rolled = rollback(root, "regression", at=AT)
    assert rolled["current"]["adapter"]["version"] == "a1" and rolled["current"]["base"]["version"] == b1["version"]
    base_dir, model_dir = released_model_dirs(root, tmp_path / "cache")
    assert base_dir == Path(b1["path"]) and (base_dir / "model.safetensors").read_bytes() == b"one" * 20
    assert model_dir.name == "a1"


def test_rollback_refuses_when_the_pinned_base_is_gone(two_releases):
    root, b1, _ = two_releases
    (Path(root) / "base_model" / VERSIONS / f"{b1['version']}.json").unlink()
    with pytest.raises(ReleaseError, match="pinned base is gone"):
        rollback(root, "regression", at=AT)
    assert current_release(root)["current"]["adapter"]["version"] == "a2"  # unchanged


def test_released_model_refuses_a_base_whose_bytes_changed(two_releases, tmp_path):
    root, _, b2 = two_releases
    (Path(b2["path"]) / "model.safetensors").write_bytes(b"TWO" * 20)
    with pytest.raises(ReleaseError, match=r"model\.safetensors"):
        released_model_dirs(root, tmp_path / "cache")


def test_entry_without_pins_is_refused(two_releases, tmp_path):
    root, _, _ = two_releases
    old_style = {"model": "sft_adapter", "version": "a0", "path": "/x", "weights_sha256": "f"}
    with pytest.raises(ReleaseError, match="re-release"):
        released_model_dirs(root, tmp_path / "cache", old_style)


def test_revision_must_be_a_commit_sha():
    assert TrainingRecipe(base_model="org/model", base_model_revision=SHA).base_model_revision == SHA
    for bad in ("main", "v1.0", SHA[:12], SHA.upper()):
        with pytest.raises(ValidationError, match="commit sha"):
            TrainingRecipe(base_model="org/model", base_model_revision=bad)
    assert StudentSpec(init="pretrained", path="org/student", revision=SHA).revision == SHA
    with pytest.raises(ValidationError, match="path and revision must not be set"):
        StudentSpec(keep_every=2, revision=SHA)


def test_hub_ids_need_a_revision_and_local_paths_refuse_one(tiny_model_dir, tmp_path):
    from training_assets.engine.base_model import BaseModelError, materialize_base_model
    from training_assets.engine.student import load_student

    with pytest.raises(BaseModelError, match="base_model_revision"):
        materialize_base_model("some-org/some-model", str(tmp_path / "hub"))
    with pytest.raises(BaseModelError, match="not a Hub id"):
        materialize_base_model(str(tiny_model_dir), str(tmp_path / "local"), revision=SHA)
    with pytest.raises(ValueError, match=r"student\.revision"):
        load_student("some-org/some-student")
    info = materialize_base_model(str(tiny_model_dir), str(tmp_path / "ok"))  # offline, local: no revision
    assert info["source"].startswith("local:")
