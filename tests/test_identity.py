"""One identity for one thing, whichever package asks."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mixtrain import identity


def test_canonical_json_is_order_free_compact_and_refuses_nan() -> None:
    assert identity.canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'
    assert identity.fingerprint({"a": 1, "b": 2}) == identity.fingerprint({"b": 2, "a": 1})
    with pytest.raises(ValueError):
        identity.canonical_json({"loss": float("nan")})


def test_spec_hash_format_is_frozen() -> None:
    """Stored ids (the mixture id) are built on spec_hash: its format must not drift."""
    assert identity.spec_hash({"b": 1, "a": 2}) == identity.spec_hash({"a": 2, "b": 1})
    assert identity.spec_hash({"a": 1}) == "f9d86028c6e0d64e"


def test_file_and_files_hashes(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(b"x" * 3_000_000)
    (tmp_path / "b.safetensors").write_bytes(b"y")
    assert identity.file_sha256(tmp_path / "b.safetensors") == identity.bytes_sha256(b"y")
    whole = identity.weights_sha256(tmp_path)
    (tmp_path / "b.safetensors").rename(tmp_path / "c.safetensors")
    assert identity.weights_sha256(tmp_path) != whole  # a renamed shard is another identity
    with pytest.raises(FileNotFoundError):
        identity.weights_sha256(tmp_path / "missing")


def test_every_package_records_the_same_vocab_identity(tiny_model_dir) -> None:
    """Training (student checks), evaluation (model records) and the core agree on a tokenizer's identity."""
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from eval_assets.engine.record import model_record
    from training_assets.engine import student

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    other = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected = identity.vocab_sha256(tok)
    assert student.check_same_vocab(tok, other) == expected
    record = model_record(tok, _OneParam(), with_tools=False)
    assert record["vocab_sha256"] == expected
    assert len({identity.vocab_sha256(tok), identity.vocab_sha256(other)}) == 1


class _OneParam:
    def parameters(self):
        import torch

        yield torch.zeros(1, dtype=torch.bfloat16)


def test_package_versions_include_python_and_unknowns() -> None:
    versions = identity.package_versions(("pyarrow", "no-such-dist-xyz"))
    assert versions["no-such-dist-xyz"] is None and versions["pyarrow"] and versions["python"]
    assert json.loads(json.dumps(versions)) == versions
    assert identity.hardware("cpu", "float32")["cpu_count"] == os.cpu_count()


def test_git_state_reads_commit_and_dirty_flag_and_never_raises(tmp_path: Path, monkeypatch) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@x"

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout

    try:
        git("init", "-q")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "HEAD").strip()
    assert identity.git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "a.txt").write_text("2")
    assert identity.git_state(tmp_path) == {"commit": head, "dirty": True}
    assert identity.git_state(tmp_path / "missing") is None

    def no_git(*a, **k):
        raise FileNotFoundError("git")

    monkeypatch.setattr(identity.subprocess, "run", no_git)
    assert identity.git_state(tmp_path) is None
