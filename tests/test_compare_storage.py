"""benchmarks/compare_storage.py: what it calls the same, what it calls different (on small synthetic roots)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.compare_storage import DIFFERENT, EQUAL_VOLATILE, IDENTICAL, ONLY_B, compare_roots, main


def _build(project: Path, *, loss: float = 0.5, wall: float = 1.0, latency: float = 0.1) -> Path:
    root = project / "storage"
    (root / "sft_adapter" / "v1").mkdir(parents=True)
    pq.write_table(pa.table({"cluster_id": ["a/1"], "doc_id": ["2"]}), root / "dedupe_clusters.parquet")
    report = {"model": ["base"], "nll": [loss], "latency_s": [latency], "path": [f"{root}/base_model"]}
    pq.write_table(pa.table(report), root / "eval_report.parquet")
    (root / "mixture_manifest.json").write_text(json.dumps({"manifest_id": "m1", "shards": [{"path": str(root)}]}))
    run = {"config_fingerprint": "f", "loss": [loss], "output_weights_sha256": "w1", "wall_time_s": wall}
    run |= {"hardware": {"cpu": str(wall)}, "execution": {"resume": wall}, "packages": {}, "git": None}
    record = {"path": f"{root}/sft_adapter/v1", "run_manifest": run}
    (root / "sft_adapter.json").write_text(json.dumps(record))
    (root / "sft_adapter" / "v1" / "adapter_model.safetensors").write_bytes(b"weights")
    (root / ".staging").mkdir()
    (root / ".staging" / "partial").write_bytes(str(wall).encode())  # temporary: never compared
    return root


def _status(report, path: str) -> str:
    return next(f.status for f in report.files if f.path == path)


def test_two_builds_that_differ_only_in_volatile_fields_and_roots_are_the_same(tmp_path):
    a = _build(tmp_path / "a")
    b = _build(tmp_path / "b", wall=9.0, latency=0.7)
    report = compare_roots(a, b)
    assert report.ok, [f for f in report.files if f.status != IDENTICAL]
    assert _status(report, "dedupe_clusters.parquet") == IDENTICAL
    assert _status(report, "eval_report.parquet") == EQUAL_VOLATILE
    assert _status(report, "sft_adapter.json") == EQUAL_VOLATILE
    assert _status(report, "mixture_manifest.json") == EQUAL_VOLATILE  # the root in a path, nothing else
    assert report.highlights["mixture manifest id"]["equal"]
    assert report.highlights["model weights sha256"] == {"sft_adapter.json": {"A": "w1", "B": "w1", "equal": True}}
    assert main([str(a), str(b)]) == 0


def test_a_changed_number_a_changed_weight_and_a_new_file_are_differences(tmp_path, capsys):
    a = _build(tmp_path / "a")
    b = _build(tmp_path / "b", loss=0.25)
    (b / "sft_adapter" / "v1" / "adapter_model.safetensors").write_bytes(b"other weights")
    (b / "extra.json").write_text("{}")
    report = compare_roots(a, b)
    assert not report.ok
    assert _status(report, "eval_report.parquet") == DIFFERENT
    assert "nll" in next(f.note for f in report.files if f.path == "eval_report.parquet")
    assert _status(report, "sft_adapter.json") == DIFFERENT
    assert _status(report, "sft_adapter/v1/adapter_model.safetensors") == DIFFERENT
    assert _status(report, "extra.json") == ONLY_B
    assert main([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "OUTPUTS DIFFER" in out and "extra.json" in out
