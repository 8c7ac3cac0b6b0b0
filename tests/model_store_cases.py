"""Publishing scenarios shared by the ``memory://`` and the S3 (moto server) tests: the same behaviour is asserted
against every non-local storage root."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from upath import UPath

from mixtrain import model_store
from mixtrain.model_store import ModelStoreError, current_version, fetch_model, publish_model


def make_model(where: Path, weights: bytes, tokenizer: str = '{"vocab": 1}') -> Path:
    """A save_pretrained-shaped directory (weights, config, tokenizer, a nested file) with the given weights."""
    where.mkdir(parents=True)
    (where / "model.safetensors").write_bytes(weights)
    (where / "config.json").write_text('{"arch": "tiny"}')
    (where / "tokenizer.json").write_text(tokenizer)
    (where / "sub").mkdir()
    (where / "sub" / "extra.txt").write_text("nested")
    return where


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def all_paths(root: str) -> list[str]:
    base = UPath(root)
    return base.fs.find(base.path)


def republish_serves_new_weights(root: str, tmp: Path) -> None:
    """A changed base republished under the same key is read back through the pointer, with no nested copy."""
    first = publish_model(make_model(tmp / "v1", b"old" * 100), root, "base_model", tmp / "cache")
    second = publish_model(make_model(tmp / "v2", b"new" * 100), root, "base_model", tmp / "cache")
    assert first["version"] != second["version"]
    assert current_version(root, "base_model")["version"] == second["version"]
    got = fetch_model(root, "base_model", tmp / "reader")
    assert sha((got / "model.safetensors").read_bytes()) == sha(b"new" * 100)
    assert (got / "sub" / "extra.txt").read_text() == "nested"
    assert got.name == second["version"]
    paths = all_paths(root)
    assert not any("base_model/base_model" in p or f"{second['version']}/v2" in p for p in paths), paths
    # the old version stays readable by version (what a release pinned to it loads)
    old = fetch_model(root, "base_model", tmp / "reader", version=first["version"])
    assert (old / "model.safetensors").read_bytes() == b"old" * 100


def crash_mid_upload_keeps_previous(root: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upload that dies after some files leaves the previous version live; the next publish succeeds."""
    publish_model(make_model(tmp / "v1", b"old" * 100), root, ["task_adapter", "a"], tmp / "cache", version="v1")
    real = model_store._upload_file
    calls = []

    def dying(fs, src, dest):
        calls.append(dest)
        if len(calls) == 2:
            raise ConnectionError("network gone mid-upload")
        real(fs, src, dest)

    monkeypatch.setattr(model_store, "_upload_file", dying)
    new = make_model(tmp / "v2", b"new" * 100)
    with pytest.raises(ConnectionError):
        publish_model(new, root, ["task_adapter", "a"], tmp / "cache", version="v2")
    assert any("/v2/" in p for p in all_paths(root)), "the crash left a partial v2 behind (the case to survive)"
    assert current_version(root, ["task_adapter", "a"])["version"] == "v1"
    got = fetch_model(root, ["task_adapter", "a"], tmp / "reader")
    assert (got / "model.safetensors").read_bytes() == b"old" * 100

    monkeypatch.setattr(model_store, "_upload_file", real)
    publish_model(new, root, ["task_adapter", "a"], tmp / "cache", version="v2")
    got = fetch_model(root, ["task_adapter", "a"], tmp / "reader2")
    assert got.name == "v2" and (got / "model.safetensors").read_bytes() == b"new" * 100
    v2 = sorted(p for p in all_paths(root) if "/v2/" in p)
    assert len(v2) == 4 and not any("v2/v2" in p for p in v2), v2


def republish_same_version_uploads_nothing(root: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model(tmp / "m", b"w" * 64)
    publish_model(model, root, "sft_adapter", tmp / "cache", version="v1")
    uploads: list[str] = []
    real = model_store._upload_file
    monkeypatch.setattr(model_store, "_upload_file", lambda fs, s, d: (uploads.append(d), real(fs, s, d)))
    publish_model(model, root, "sft_adapter", tmp / "cache", version="v1")
    assert uploads == []


def reader_refuses_changed_bytes(root: str, tmp: Path) -> None:
    """A stored weights file that is not the published one (same size, other bytes) is refused on read."""
    published = publish_model(make_model(tmp / "m", b"w" * 64), root, "base_model", tmp / "cache")
    weights = UPath(published["location"]) / "model.safetensors"
    weights.fs.pipe_file(weights.path, b"x" * 64)
    with pytest.raises(ModelStoreError, match=r"model\.safetensors"):
        fetch_model(root, "base_model", tmp / "fresh-reader")
