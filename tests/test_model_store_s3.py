"""Versioned model publishing against a real S3 API: a moto server on 127.0.0.1 (a free port), reached by s3fs
through ``AWS_ENDPOINT_URL``, which botocore honours, so an ``s3://`` storage root needs no extra options.

Needs the ``s3`` extra (``make test`` installs it); skipped without it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from mixtrain.model_store import current_version, fetch_model, publish_model
from tests.model_store_cases import (
    all_paths,
    crash_mid_upload_keeps_previous,
    make_model,
    reader_refuses_changed_bytes,
    republish_same_version_uploads_nothing,
    republish_serves_new_weights,
)


@pytest.fixture
def s3_root(s3_endpoint) -> str:
    import s3fs

    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem().mkdir(bucket)
    return f"s3://{bucket}/storage"


def test_s3_republish_serves_new_weights(s3_root, tmp_path):
    republish_serves_new_weights(s3_root, tmp_path)


def test_s3_crash_mid_upload_keeps_previous(s3_root, tmp_path, monkeypatch):
    crash_mid_upload_keeps_previous(s3_root, tmp_path, monkeypatch)


def test_s3_same_version_is_not_uploaded_again(s3_root, tmp_path, monkeypatch):
    republish_same_version_uploads_nothing(s3_root, tmp_path, monkeypatch)


def test_s3_reader_refuses_changed_bytes(s3_root, tmp_path):
    reader_refuses_changed_bytes(s3_root, tmp_path)


_KILLED_PUBLISHER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from mixtrain import model_store

    real = model_store._upload_file
    done = []

    def upload(fs, src, dest):
        real(fs, src, dest)
        done.append(dest)
        if len(done) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # the process dies between two objects, no cleanup runs

    model_store._upload_file = upload
    model_store.publish_model(Path(sys.argv[1]), sys.argv[2], "base_model", sys.argv[3], version="v2")
    """
)


def test_s3_publisher_killed_mid_upload(s3_root, tmp_path):
    """SIGKILL of the publishing process after two objects: the pointer still names v1, whose bytes read back;
    the next publish replaces the partial v2 and commits it."""
    publish_model(make_model(tmp_path / "v1", b"old" * 50), s3_root, "base_model", tmp_path / "cache", version="v1")
    new = make_model(tmp_path / "v2", b"new" * 50)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_PUBLISHER, str(new), s3_root, str(tmp_path / "cache-child")],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert len([p for p in all_paths(s3_root) if "/v2/" in p]) == 2
    assert current_version(s3_root, "base_model")["version"] == "v1"
    assert (fetch_model(s3_root, "base_model", tmp_path / "r1") / "model.safetensors").read_bytes() == b"old" * 50

    publish_model(new, s3_root, "base_model", tmp_path / "cache", version="v2")
    got = fetch_model(s3_root, "base_model", tmp_path / "r2")
    assert got.name == "v2" and (got / "model.safetensors").read_bytes() == b"new" * 50
