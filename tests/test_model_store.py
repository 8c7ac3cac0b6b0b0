"""Versioned model publishing (mixtrain.model_store) on ``memory://`` and on a local root, fast (no training)."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

from mixtrain.model_store import (
    POINTER,
    ModelStoreError,
    current_version,
    fetch_model,
    publish_model,
    tokenizer_sha256,
)
from tests.model_store_cases import (
    crash_mid_upload_keeps_previous,
    make_model,
    reader_refuses_changed_bytes,
    republish_same_version_uploads_nothing,
    republish_serves_new_weights,
)


@pytest.fixture(params=["memory", "s3"])
def store_root(request: pytest.FixtureRequest) -> str:
    """An object-store root: fsspec's in-memory store, and a real S3 API (moto on 127.0.0.1; skipped without the
    ``s3`` extra)."""
    if request.param == "memory":
        return f"memory://bucket-{uuid.uuid4().hex[:8]}/storage"
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    import s3fs

    request.getfixturevalue("s3_endpoint")
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem().mkdir(bucket)
    return f"s3://{bucket}/storage"


def test_republish_serves_new_weights(store_root, tmp_path):
    republish_serves_new_weights(store_root, tmp_path)


def test_crash_mid_upload_keeps_previous(store_root, tmp_path, monkeypatch):
    crash_mid_upload_keeps_previous(store_root, tmp_path, monkeypatch)


def test_same_version_is_not_uploaded_again(store_root, tmp_path, monkeypatch):
    republish_same_version_uploads_nothing(store_root, tmp_path, monkeypatch)


def test_reader_refuses_changed_bytes(store_root, tmp_path):
    reader_refuses_changed_bytes(store_root, tmp_path)


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_local_root_has_the_same_layout_and_readable_modes(tmp_path):
    root = str(tmp_path / "storage")
    built = make_model(tmp_path / "build", b"old" * 10)
    os.chmod(built, 0o700)  # what tempfile.mkdtemp leaves
    first = publish_model(built, root, "base_model", tmp_path / "cache", move=True)
    version_dir = tmp_path / "storage" / "base_model" / first["version"]
    assert first["local_path"] == first["location"] == str(version_dir)
    assert not built.exists()  # moved, not copied
    assert _mode(version_dir) == 0o755 and _mode(version_dir / "sub") == 0o755
    assert all(_mode(p) == 0o644 for p in version_dir.rglob("*") if p.is_file())
    assert (tmp_path / "storage" / "base_model" / POINTER).is_file()

    second = publish_model(make_model(tmp_path / "b2", b"new" * 10), root, "base_model", tmp_path / "cache")
    assert fetch_model(root, "base_model", tmp_path / "unused") == Path(second["location"])
    assert fetch_model(root, "base_model", tmp_path / "unused", version=first["version"]) == version_dir
    assert (version_dir / "model.safetensors").read_bytes() == b"old" * 10  # never overwritten


def test_local_incomplete_version_is_replaced_not_written_into(tmp_path):
    root = str(tmp_path / "storage")
    model = make_model(tmp_path / "m", b"w" * 10)
    leftover = tmp_path / "storage" / "sft_adapter" / "v1"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"w" * 3)  # a crashed copy
    (leftover / "stale.bin").write_bytes(b"?")
    publish_model(model, root, "sft_adapter", tmp_path / "cache", version="v1")
    assert sorted(p.name for p in leftover.iterdir()) == ["config.json", "model.safetensors", "sub", "tokenizer.json"]
    assert fetch_model(root, "sft_adapter", tmp_path / "c") == leftover


def test_local_reader_refuses_changed_weights(tmp_path):
    root = str(tmp_path / "storage")
    published = publish_model(make_model(tmp_path / "m", b"w" * 10), root, "sft_adapter", tmp_path / "c")
    (Path(published["location"]) / "model.safetensors").write_bytes(b"v" * 10)
    with pytest.raises(ModelStoreError, match=r"model\.safetensors"):
        fetch_model(root, "sft_adapter", tmp_path / "c")


def test_tokenizer_hash_follows_tokenizer_files_only(tmp_path):
    a = publish_model(make_model(tmp_path / "a", b"1" * 8), str(tmp_path / "s"), "x", tmp_path / "c")
    b = publish_model(make_model(tmp_path / "b", b"2" * 8), str(tmp_path / "s"), "x", tmp_path / "c")
    c = publish_model(make_model(tmp_path / "d", b"2" * 8, tokenizer="{}"), str(tmp_path / "s"), "x", tmp_path / "c")
    assert a["tokenizer_sha256"] == b["tokenizer_sha256"] != c["tokenizer_sha256"]
    assert a["weights_sha256"] != b["weights_sha256"] == c["weights_sha256"]
    assert tokenizer_sha256({"model.safetensors": {"size": 1, "sha256": "0"}}) is None


def test_nothing_published_is_an_error(tmp_path):
    assert current_version(str(tmp_path), "base_model") is None
    with pytest.raises(ModelStoreError, match="no model published"):
        fetch_model(str(tmp_path), "base_model", tmp_path / "c")
