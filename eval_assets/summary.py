"""The evaluation side's lines of the run summary: the tables per suite over every candidate, task adapters
against the base, the comparison, the release gate and what is live."""

from __future__ import annotations

from typing import Any

from dagster import DagsterInstance

from eval_assets.engine.candidates import ADAPTER_LABEL, BASELINE, CANDIDATES, adapter_label
from mixtrain.markdown import markdown_table
from mixtrain.partitions import ADAPTERS_PARTITION
from mixtrain.summary import latest_check, latest_metadata

# Metrics of task_adapter_report (``<model>/<suite>/<metric>``), as printed per adapter.
ADAPTER_EVAL_COLUMNS = (
    "structured/field_accuracy",
    "structured/heldout_loss",
    "tool_calls/tool_accuracy",
    "perplexity/ppl",
)


def metric_values(metadata: dict[str, Any]) -> dict[str, Any]:
    """A report's metrics by ``<model>/<suite>/<metric>``: its ``all_metrics`` entry, or, in a materialization
    from before the metadata kept only a few headline numbers, the flat keys themselves."""
    return metadata.get("all_metrics") or metadata


def _adapter_eval_rows(instance: DagsterInstance) -> list[dict[str, Any]]:
    """The base once (it is the same model on the same items in every partition), then each adapter."""
    rows: list[dict[str, Any]] = []
    for aid in sorted(instance.get_dynamic_partitions(ADAPTERS_PARTITION)):
        m = metric_values(latest_metadata(instance, "task_adapter_report", aid))
        if not m:
            continue
        if not rows:
            rows.append({"model": BASELINE, **{c: m.get(f"{BASELINE}/{c}") for c in ADAPTER_EVAL_COLUMNS}})
        label = adapter_label(aid)
        rows.append({"model": label, **{c: m.get(f"{ADAPTER_LABEL}/{c}") for c in ADAPTER_EVAL_COLUMNS}})
    return rows


def _model_rows(report: dict[str, Any], models: list[str], infix: str, columns: list[str]) -> list[dict[str, Any]]:
    """One row per model that has any of ``<model><infix><column>`` in the report's metadata."""
    return [
        {"model": m, **{c: report.get(f"{m}{infix}{c}") for c in columns}}
        for m in models
        if any(f"{m}{infix}{c}" in report for c in columns)
    ]


def summary_lines(instance: DagsterInstance) -> list[str]:
    out: list[str] = []
    e = metric_values(latest_metadata(instance, "eval_report"))
    models = [BASELINE, *(c.name for c in CANDIDATES)]
    metrics = ["json_valid_rate", "schema_valid_rate", "field_accuracy", "exact_match", "heldout_loss", "tokens_per_s"]
    rows = [
        {"model": m, **{k: e.get(f"{m}/structured/{k}", e.get(f"{m}/efficiency/{k}")) for k in metrics}}
        for m in models
        if any(f"{m}/structured/{k}" in e for k in metrics)
    ]
    if rows:
        out.append("== evaluation (structured-output holdout) ==")
        out.append(markdown_table(rows, ["model", *metrics]))
        by = {r["model"]: r for r in rows}
        teacher = (by.get("sft_adapter") or {}).get("field_accuracy")
        if teacher:
            for student in ("distilled_student", "student_sft_baseline"):
                acc = (by.get(student) or {}).get("field_accuracy")
                if acc is not None:
                    out.append(
                        f"  retention {student}: field accuracy {float(acc):.3f} / teacher {float(teacher):.3f}"
                        f" = {float(acc) / float(teacher):.2f}"
                    )
    tool_metrics = [
        "tool_accuracy",
        "tool_selection_accuracy",
        "tool_arg_accuracy",
        "tool_irrelevance_accuracy",
        "tool_parse_error_rate",
    ]
    tool_rows = _model_rows(e, models, "/tool_calls/", tool_metrics)
    if tool_rows:
        out.append("== evaluation (tool-call holdout) ==")
        out.append(markdown_table(tool_rows, ["model", *tool_metrics]))
    prefix = "/perplexity/ppl/"
    domains = sorted({k.split(prefix, 1)[1] for k in e if prefix in k})
    ppl_rows = _model_rows(e, models, prefix, domains)
    if ppl_rows:
        out.append("== perplexity on held-out documents, per domain (lower is better) ==")
        out.append(markdown_table(ppl_rows, ["model", *domains]))
    adapter_rows = _adapter_eval_rows(instance)
    if adapter_rows:
        out.append("== task adapters vs base (all suites; perplexity on every domain's held-out text) ==")
        out.append(markdown_table(adapter_rows, ["model", *ADAPTER_EVAL_COLUMNS]))
    comparison = latest_metadata(instance, "eval_comparison")
    if comparison.get("comparison"):
        out.append("== candidates vs base (paired bootstrap 95% intervals) ==")
        out.append(str(comparison["comparison"]))
    gate = latest_check(instance, "eval_comparison", "release_gate")
    if gate is not None:
        verdict = "PASSED" if gate["passed"] else "FAILED"
        out.append(
            f"== release gate == {verdict}: {gate.get('metric')} {gate.get('candidate_model')} "
            f"{gate.get('candidate')} vs base {gate.get('base')} (tolerance {gate.get('tolerance')})"
        )
        if gate.get("criteria"):
            out.append(str(gate["criteria"]))
    release = latest_metadata(instance, "released_model")
    if release:
        out.append(
            f"== released == {release.get('model')}@{release.get('version')} (previous: {release.get('previous')})"
        )
    return out
