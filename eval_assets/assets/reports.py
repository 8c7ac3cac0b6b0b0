"""Evaluation of the base model and the fine-tuned adapter on the task holdouts, item by item."""

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, MetadataValue, asset

from eval_assets.engine.evaluate import evaluate_json_signature
from mixassets.automation import rerun_when_changed
from mixassets.resources import ProjectResource
from mixassets.versioning import table_output

METRICS = ("json_valid_rate", "schema_valid_rate", "field_accuracy", "exact_match", "heldout_loss", "tokens_per_s")


def _markdown(summary: dict[str, dict[str, float]]) -> str:
    lines = ["| model | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for label, m in summary.items():
        lines.append(f"| {label} | " + " | ".join(f"{m.get(k, float('nan')):.3f}" for k in METRICS) + " |")
    return "\n".join(lines)


@asset(
    ins={
        "eval_registry": AssetIn(),
        "base_model": AssetIn(input_manager_key="json_io_manager"),
        "sft_adapter": AssetIn(input_manager_key="json_io_manager"),
    },
    deps=["eval_spec"],
    code_version="eval-1",
    automation_condition=rerun_when_changed(),
    group_name="evaluation",
    description="Per-item outputs and scores of base and adapter on every json_signature holdout set.",
)
def eval_report(
    context: AssetExecutionContext,
    project: ProjectResource,
    eval_registry: pa.Table,
    base_model: dict,
    sft_adapter: dict,
):
    from training_assets.engine.loading import load_for_inference

    proj = project.load()
    cfg = proj.spec.evaluation
    sets = [e.id for e in proj.spec.eval_sets if e.task == "json_signature"]
    candidates = {"base": (base_model["path"], None), "sft_adapter": (base_model["path"], sft_adapter["path"])}
    tables, summary = [], {}
    for label, (base_dir, adapter_dir) in candidates.items():
        model, tokenizer = load_for_inference(base_dir, adapter_dir)
        for set_id in sets:
            items = eval_registry.filter(pa.compute.equal(eval_registry["eval_set"], set_id))
            if cfg.limit:
                items = items.slice(0, cfg.limit)
            table, metrics = evaluate_json_signature(
                model,
                tokenizer,
                items,
                max_new_tokens=cfg.max_new_tokens,
                batch_size=cfg.batch_size,
                model_label=label,
            )
            tables.append(table.append_column("eval_set", pa.array([set_id] * table.num_rows, pa.string())))
            summary[f"{label}/{set_id}"] = metrics
        del model
    report = pa.concat_tables(tables)
    metadata = {f"{k}/{m}": float(v) for k, ms in summary.items() for m, v in ms.items() if m in METRICS}
    metadata["summary"] = MetadataValue.md(_markdown(summary))
    return table_output(report, metadata)
