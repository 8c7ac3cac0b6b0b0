"""eval_report's blocking checks: every model on every suite, no NaN score, the gate's baseline present, and
truncation by the generation budget within the threshold for the candidate and its baseline."""

from __future__ import annotations

import pyarrow as pa
import yaml

from eval_assets.checks import eval_report_complete, eval_report_truncation
from eval_assets.engine.report_checks import missing_results, nan_scores, over_threshold, truncation_shares
from eval_assets.engine.suites import RUN_ITEM_SCHEMA
from mixtrain.resources import ProjectResource

MODELS = ("base", "sft_adapter", "distilled_student", "student_sft_baseline")


def _rows(model: str, suite: str = "structured", eval_set: str = "signature_holdout", n: int = 4, **over) -> list:
    row = {"suite": suite, "eval_set": eval_set, "model": model, "prompt": "p", "output": "o", "truncated": False}
    return [{**row, "item_id": f"i{k}", **over} for k in range(n)]


def _report(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=RUN_ITEM_SCHEMA)


def test_missing_results_and_nan_scores_are_named():
    report = _report(_rows("base") + _rows("sft_adapter") + _rows("sft_adapter", eval_set="other", n=1))
    assert missing_results(report, ["base", "sft_adapter"], ["structured"]) == ["base/structured/other"]
    assert (
        missing_results(report, ["base"], ["structured", "refusal"])[0]
        == "base/refusal/(no eval set: no model has rows)"
    )
    assert nan_scores(report) == []
    assert nan_scores(_report(_rows("base", n=2, field_accuracy=float("nan")))) == [
        "base/structured/field_accuracy: 2 NaN"
    ]


def test_truncation_share_counts_generated_items_only():
    rows = _rows("base", n=4, truncated=True) + _rows("sft_adapter", n=3) + _rows("sft_adapter", n=1, truncated=True)
    rows += _rows("sft_adapter", n=2, output=None, truncated=None, suite="perplexity")  # generates nothing
    rows += [{**_rows("sft_adapter", n=1, truncated=True)[0], "item_id": "err", "error": "boom"}]
    shares = truncation_shares(_report(rows))
    assert sorted((r["model"], r["suite"], r["generated"], r["truncated"], r["share"]) for r in shares) == [
        ("base", "structured", 4, 4, 1.0),
        ("sft_adapter", "structured", 4, 1, 0.25),
    ]
    assert [r["model"] for r in over_threshold(shares, ["sft_adapter", "base"], 0.5)] == ["base"]
    assert over_threshold(shares, ["sft_adapter"], 0.2)[0]["share"] == 0.25


def test_the_checks_block_an_incomplete_or_truncated_report(tiny_project):
    project = ProjectResource(project_dir=str(tiny_project))
    suites = yaml.safe_load((tiny_project / "mixtrain.yaml").read_text())["evaluation"]["suites"]
    complete = [r for m in MODELS for s in suites for r in _rows(m, suite=s)]
    assert eval_report_complete(project=project, eval_report=_report(complete)).passed
    no_student = [r for r in complete if r["model"] != "distilled_student"]
    result = eval_report_complete(project=project, eval_report=_report(no_student))
    assert not result.passed and "missing: distilled_student/" in result.description
    no_base = [r for r in complete if r["model"] != "base"]
    result = eval_report_complete(project=project, eval_report=_report(no_base))
    assert not result.passed and result.description.startswith("the gate's baseline base ('base') has no rows")

    cfg = yaml.safe_load((tiny_project / "mixtrain.yaml").read_text())
    cfg["release_gate"]["max_truncated_share"] = 0.5
    (tiny_project / "mixtrain.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert eval_report_truncation(project=project, eval_report=_report(complete)).passed
    cut = [{**r, "truncated": r["model"] == "sft_adapter"} for r in complete]
    result = eval_report_truncation(project=project, eval_report=_report(cut))
    assert not result.passed and "sft_adapter/structured: 100% truncated" in result.description
    assert result.metadata["truncated_share/sft_adapter"].value == 1.0
    # before the first release the base is the baseline: its truncation is reported, not enforced
    cut_base = [{**r, "truncated": r["model"] == "base"} for r in complete]
    result = eval_report_truncation(project=project, eval_report=_report(cut_base))
    assert result.passed and result.description.startswith("note, the gate's baseline base/structured: 100%")
    cut_student = [{**r, "truncated": r["model"] == "distilled_student"} for r in complete]
    result = eval_report_truncation(project=project, eval_report=_report(cut_student))
    assert result.passed and result.description is None  # not the gate's candidate or baseline
