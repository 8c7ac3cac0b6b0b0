"""The blocking checks fail on the inputs they exist to catch."""

from __future__ import annotations

import pyarrow as pa
from dagster import build_asset_check_context

from eval_assets.engine.gate import gate_verdict
from mixassets.checks import mixture_contamination_free, mixture_license_policy
from mixtrain.resources import ProjectResource
from mixtrain.schema import FINDING_SCHEMA
from tests.helpers import documents


def _docs(licenses: list[str]) -> pa.Table:
    rows = [{"doc_id": f"d{i}", "locator": f"f:{i}", "license": lic} for i, lic in enumerate(licenses)]
    return documents(rows, source_id="s", text="x", domain="d")


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


def _comparison(rows: list[tuple[str, str, float, float]], baseline: str = "base") -> pa.Table:
    """(eval_set, metric, candidate, baseline) rows of sft_adapter vs ``baseline``, slice 'all'."""
    return pa.Table.from_pylist(
        [
            {
                "candidate_model": "sft_adapter",
                "baseline_model": baseline,
                "eval_set": es,
                "metric": m,
                "slice": "all",
                "candidate": c,
                "baseline": b,
                "diff": c - b,
                "ci_low": c - b - 0.1,
                "ci_high": c - b + 0.1,
            }
            for es, m, c, b in rows
        ]
    )


def test_release_gate_verdict_uses_tolerance_and_names_failing_criteria():
    from mixtrain.config.evaluation import ReleaseGateSpec

    comparison = _comparison([("h", "field_accuracy", 0.55, 0.6), ("h", "schema_valid_rate", 0.7, 0.9)])
    strict = ReleaseGateSpec(eval_set="h", tolerance=0.0)
    passed, checks = gate_verdict(comparison, strict)
    assert not passed and checks[0]["name"] == "field_accuracy no regression" and not checks[0]["passed"]
    assert gate_verdict(comparison, ReleaseGateSpec(eval_set="h", tolerance=0.06))[0]
    floor = {"name": "schema floor", "metric": "schema_valid_rate", "op": ">=", "value": 0.8}
    passed, checks = gate_verdict(comparison, ReleaseGateSpec(eval_set="h", tolerance=0.06, criteria=[floor]))
    assert not passed and [c["name"] for c in checks if not c["passed"]] == ["schema floor"]
    missing = {"metric": "no_such_metric", "op": ">=", "value": 0.1}
    passed, checks = gate_verdict(comparison, ReleaseGateSpec(eval_set="h", tolerance=0.06, criteria=[missing]))
    assert not passed and "no_such_metric" in checks[-1]["message"]


def test_release_gate_compares_with_the_baseline_it_is_given_and_fails_without_it():
    from mixtrain.config.evaluation import ReleaseGateSpec

    gate = ReleaseGateSpec(eval_set="h")
    # better than base, worse than what is live: only the comparison with the live model stops it
    both = pa.concat_tables(
        [_comparison([("h", "field_accuracy", 0.6, 0.5)]), _comparison([("h", "field_accuracy", 0.6, 0.7)], "live")]
    )
    assert gate_verdict(both, gate)[0]
    passed, checks = gate_verdict(both, gate, "live", "sft_adapter@v1")
    assert not passed and checks[0]["baseline"] == 0.7 and checks[0]["baseline_model"] == "live (sft_adapter@v1)"
    assert checks[0]["message"].startswith("vs live (sft_adapter@v1): field_accuracy[all]: candidate 0.6")
    passed, checks = gate_verdict(_comparison([("h", "field_accuracy", 0.6, 0.5)]), gate, "live", "sft_adapter@v1")
    assert not passed and "no comparison of sft_adapter with live (sft_adapter@v1) on h" in checks[0]["message"]


def test_release_gate_blocks_a_slice_that_drops_beyond_its_interval_even_when_the_whole_set_holds():
    from mixtrain.config.evaluation import ReleaseGateSpec

    def row(slice_: str, cand: float, base: float, low: float, high: float) -> dict:
        return {
            "candidate_model": "sft_adapter",
            "baseline_model": "base",
            "eval_set": "h",
            "metric": "field_accuracy",
            "slice": slice_,
            "candidate": cand,
            "baseline": base,
            "diff": cand - base,
            "ci_low": low,
            "ci_high": high,
        }

    overall = row("all", 0.62, 0.60, -0.03, 0.07)
    noisy = row("kind=rare", 0.40, 0.60, -0.55, 0.15)  # a drop, but a slice of a few items: within noise
    hard = row("kind=hard", 0.20, 0.50, -0.45, -0.15)  # a drop the interval shows
    gate = ReleaseGateSpec(eval_set="h")
    passed, checks = gate_verdict(pa.Table.from_pylist([overall, noisy]), gate)
    assert passed and {c["slice"] for c in checks} == {"all", "kind=rare"}
    passed, checks = gate_verdict(pa.Table.from_pylist([overall, noisy, hard]), gate)
    failing = [c for c in checks if not c["passed"]]
    assert not passed and [(c["slice"], c["name"]) for c in failing] == [
        ("kind=hard", "field_accuracy no regression in any slice (ci_high)")
    ]
    assert checks[0]["passed"] and checks[0]["slice"] == "all"  # the overall criterion alone would have passed
    passed, checks = gate_verdict(
        pa.Table.from_pylist([overall, noisy]), ReleaseGateSpec(eval_set="h", slice_basis="point")
    )
    assert not passed and [c["slice"] for c in checks if not c["passed"]] == ["kind=rare"]
    assert gate_verdict(pa.Table.from_pylist([overall, noisy, hard]), ReleaseGateSpec(eval_set="h", slice_basis=None))[
        0
    ]
