"""A publisher SIGKILLed mid-upload to a real S3 API: a moto server on 127.0.0.1 (a free port), reached by s3fs
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

from mixtrain.faults import KILL_ENV
from mixtrain.model_store import current_version, fetch_model, publish_model
from tests.model_store_cases import all_paths, make_model


@pytest.fixture
def s3_root(s3_endpoint) -> str:
    import s3fs

    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem().mkdir(bucket)
    return f"s3://{bucket}/storage"


PUBLISH = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from mixtrain import model_store

    model_store.publish_model(Path(sys.argv[1]), sys.argv[2], "base_model", sys.argv[3], version="v2")
    """
)


def test_s3_publisher_killed_mid_upload(s3_root, tmp_path):
    """SIGKILL of the publishing process after its second object (the ``model.file`` kill point): the pointer
    still names v1, whose bytes read back; the next publish replaces the partial v2 and commits it."""
    publish_model(make_model(tmp_path / "v1", b"old" * 50), s3_root, "base_model", tmp_path / "cache", version="v1")
    new = make_model(tmp_path / "v2", b"new" * 50)
    env = {**os.environ, KILL_ENV: "model.file@/v2/#2"}
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", PUBLISH, str(new), s3_root, str(tmp_path / "cache-child")],
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
