"""The blocking checks fail on the inputs they exist to catch."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
from dagster import build_asset_check_context

from eval_assets.checks import gate_verdict
from mixassets.checks import mixture_contamination_free, mixture_license_policy
from mixassets.resources import ProjectResource
from mixassets.schema import DOCUMENT_SCHEMA, FINDING_SCHEMA


def _docs(licenses: list[str]) -> pa.Table:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = [
        {
            "doc_id": f"d{i}",
            "source_id": "s",
            "locator": f"f:{i}",
            "kind": "text",
            "text": "x",
            "messages": None,
            "license": lic,
            "rights_tags": [],
            "domain": "d",
            "language": "en",
            "capture_time": now,
        }
        for i, lic in enumerate(licenses)
    ]
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def test_license_check_fails_on_a_non_commercial_document(tiny_project):
    project = ProjectResource(project_dir=str(tiny_project))
    ctx = build_asset_check_context()
    assert mixture_license_policy(ctx, project=project, mixture=_docs(["MIT", "PSF-2.0"])).passed
    bad = mixture_license_policy(ctx, project=project, mixture=_docs(["MIT", "CC-BY-NC-4.0"]))
    assert not bad.passed and bad.metadata["forbidden_documents"].value == 1


def test_contamination_check_fails_when_a_finding_is_in_the_mixture():
    finding = {
        "doc_id": "d1",
        "source_id": "s",
        "eval_set": "e",
        "item_id": "i",
        "field": "prompt",
        "match_type": "ngram13",
        "overlap_text": "t",
        "score": 1.0,
    }
    findings = pa.Table.from_pylist([finding], schema=FINDING_SCHEMA)
    assert not mixture_contamination_free(mixture=_docs(["MIT", "MIT"]), contamination_findings=findings).passed
    assert mixture_contamination_free(mixture=_docs(["MIT"]), contamination_findings=findings).passed


def test_release_gate_verdict_uses_tolerance():
    report = pa.table(
        {
            "eval_set": ["h"] * 4,
            "model": ["base", "base", "sft_adapter", "sft_adapter"],
            "field_accuracy": [0.5, 0.7, 0.5, 0.6],
        }
    )
    passed, means = gate_verdict(report, "h", "field_accuracy", 0.0)
    assert not passed and abs(means["base"] - 0.6) < 1e-9 and abs(means["sft_adapter"] - 0.55) < 1e-9
    assert gate_verdict(report, "h", "field_accuracy", 0.06)[0]
