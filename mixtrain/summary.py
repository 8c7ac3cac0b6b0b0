"""What a run produced, read back from Dagster's event log: the numbers the demo prints."""

from __future__ import annotations

from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from mixtrain.markdown import markdown_table
from mixtrain.partitions import ADAPTERS_PARTITION, SOURCES_PARTITION


def latest_metadata(instance: DagsterInstance, key: str, partition: str | None = None) -> dict[str, Any]:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(key), asset_partitions=[partition] if partition else None), limit=1
    ).records
    if not records:
        return {}
    mat = records[0].asset_materialization
    return {k: getattr(v, "value", v) for k, v in (mat.metadata if mat else {}).items()}


def latest_check(instance: DagsterInstance, key: str, check: str) -> dict[str, Any] | None:
    from dagster import AssetCheckKey

    rec = instance.event_log_storage.get_latest_asset_check_execution_by_key([AssetCheckKey(AssetKey(key), check)])
    execution = rec.get(AssetCheckKey(AssetKey(key), check))
    if execution is None or execution.event is None:
        return None
    data = execution.event.dagster_event.event_specific_data  # AssetCheckEvaluation
    passed = getattr(data, "passed", None)
    meta = {k: getattr(v, "value", v) for k, v in (getattr(data, "metadata", {}) or {}).items()}
    return {"passed": passed, **meta}


# Headline metrics of task_adapter_report (``<model>/<suite>/<metric>``), as printed per adapter.
ADAPTER_EVAL_COLUMNS = (
    "structured/field_accuracy",
    "structured/heldout_loss",
    "tool_calls/tool_accuracy",
    "perplexity/ppl",
)


def _adapter_eval_rows(instance: DagsterInstance) -> list[dict[str, Any]]:
    """The base once (it is the same model on the same items in every partition), then each adapter."""
    rows: list[dict[str, Any]] = []
    for aid in sorted(instance.get_dynamic_partitions(ADAPTERS_PARTITION)):
        m = latest_metadata(instance, "task_adapter_report", aid)
        if not m:
            continue
        if not rows:
            rows.append({"model": "base", **{c: m.get(f"base/{c}") for c in ADAPTER_EVAL_COLUMNS}})
        rows.append({"model": f"task_adapter[{aid}]", **{c: m.get(f"adapter/{c}") for c in ADAPTER_EVAL_COLUMNS}})
    return rows


def render_summary(instance: DagsterInstance) -> str:
    out: list[str] = []
    sources = sorted(instance.get_dynamic_partitions(SOURCES_PARTITION))
    out.append("== gating (per source) ==")
    out.append(f"{'source':<20}{'ingested':>10}{'accepted':>10}{'quarant.':>10}{'rejected':>10}")
    for sid in sources:
        m = latest_metadata(instance, "gated_documents", sid)
        out.append(
            f"{sid:<20}{m.get('ingested', '-')!s:>10}{m.get('accepted', '-')!s:>10}"
            f"{m.get('quarantined', '-')!s:>10}{m.get('rejected', '-')!s:>10}"
        )
    d = latest_metadata(instance, "deduplicated_corpus")
    out.append(
        f"== dedupe ==  in {d.get('documents_in', '-')}  kept {d.get('documents_kept', '-')}  "
        f"exact dups {d.get('exact_duplicates', '-')}  near dups {d.get('near_duplicates', '-')}"
    )
    s = latest_metadata(instance, "screened_corpus")
    f = latest_metadata(instance, "contamination_findings")
    by_method = {k.split("/", 1)[1]: v for k, v in f.items() if k.startswith("findings/")}
    out.append(
        f"== contamination screen ==  in {s.get('documents_in', '-')}  clean {s.get('documents_clean', '-')}  "
        f"contaminated docs {s.get('contaminated', '-')}  findings by method {by_method}"
    )
    r = latest_metadata(instance, "contamination_report")
    for eval_set in sorted({k.split("/", 1)[0] for k in r if k.endswith("/items_leaked")}):
        out.append(
            f"  {eval_set:<20} items leaked {r[f'{eval_set}/items_leaked']} (holdout "
            f"{r.get(f'{eval_set}/holdout_leaked', '-')}, target {r.get(f'{eval_set}/target_leaked', '-')}) "
            f"in {r.get(f'{eval_set}/documents_hit', '-')} documents"
        )
    m = latest_metadata(instance, "mixture")
    out.append(f"== mixture ==  documents {m.get('documents', '-')}  tokens {m.get('tokens', '-')}")
    for k, v in sorted(m.items()):
        if k.startswith("share/"):
            src = k.split("/", 1)[1]
            out.append(
                f"  {src:<20} share {float(v):6.3f}  tokens {m.get(f'tokens/{src}', 0)!s:>8}"
                f"  excluded by policy {m.get(f'excluded_by_policy/{src}', 0)}"
            )
    t = latest_metadata(instance, "sft_adapter")
    if t:
        out.append(
            f"== training ==  loss (mean of first/last 5 steps) {float(t['loss_start']):.3f} -> "
            f"{float(t['loss_end']):.3f} over {t['steps']} steps"
            f"  ({float(t['tokens_per_s']):.0f} tok/s, {float(t['wall_time_s']):.0f} s; batches mix task chats with"
            " raw text, so per-step loss is noisy: the held-out loss below is the measure)"
        )
    for aid in sorted(instance.get_dynamic_partitions(ADAPTERS_PARTITION)):
        a = latest_metadata(instance, "task_adapter", aid)
        if a:
            out.append(
                f"== task_adapter[{aid}] ==  loss {float(a['loss_start']):.3f} -> {float(a['loss_end']):.3f} over "
                f"{a['steps']} steps  ({float(a['tokens_per_s']):.0f} tok/s, version {a['version']})"
            )
    e = latest_metadata(instance, "eval_report")
    models = ["base", "sft_adapter", "distilled_student", "student_sft_baseline"]
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
    tool_rows = [
        {"model": m, **{k: e.get(f"{m}/tool_calls/{k}") for k in tool_metrics}}
        for m in models
        if any(f"{m}/tool_calls/{k}" in e for k in tool_metrics)
    ]
    if tool_rows:
        out.append("== evaluation (tool-call holdout) ==")
        out.append(markdown_table(tool_rows, ["model", *tool_metrics]))
    prefix = "/perplexity/ppl/"
    domains = sorted({k.split(prefix, 1)[1] for k in e if prefix in k})
    ppl_rows = [
        {"model": m, **{d: e.get(f"{m}{prefix}{d}") for d in domains}}
        for m in models
        if any(f"{m}{prefix}{d}" in e for d in domains)
    ]
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
    return "\n".join(out)
