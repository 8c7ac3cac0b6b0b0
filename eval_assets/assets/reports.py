"""Evaluation of the base model and the fine-tuned adapter on the task holdouts, item by item."""

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, MetadataValue, asset

from eval_assets.engine.evaluate import evaluate_candidates
from mixassets.automation import rerun_when_changed
from mixassets.markdown import markdown_table
from mixassets.resources import ProjectResource
from mixassets.versioning import table_output

METRICS = ("json_valid_rate", "schema_valid_rate", "field_accuracy", "exact_match", "heldout_loss", "tokens_per_s")


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
    proj = project.load()
    cfg = proj.spec.evaluation
    sets = [e.id for e in proj.spec.eval_sets if e.task == "json_signature"]
    candidates = {"base": (base_model["path"], None), "sft_adapter": (base_model["path"], sft_adapter["path"])}
    report, summary = evaluate_candidates(
        candidates,
        eval_registry,
        sets,
        limit=cfg.limit,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
    )
    metadata = {f"{k}/{m}": float(v) for k, ms in summary.items() for m, v in ms.items() if m in METRICS}
    table = markdown_table([{"model": k, **m} for k, m in summary.items()], ["model", *METRICS])
    metadata["summary"] = MetadataValue.md(table)
    return table_output(report, metadata)
