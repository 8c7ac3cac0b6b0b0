"""Each task adapter against the base it was trained on, one partition per adapter, on the configured suites.

An adapter trained on one tenant's or task's slice of the mixture is only worth shipping if it gains there
without losing elsewhere, so every suite runs, not just the adapter's own task: the per-domain perplexity on
held-out text and the tool-call and behaviour sets show what it costs outside its slice. The base is
evaluated in each partition rather than read from ``eval_report``, so an adapter's evaluation depends only on
what made it (and reruns only when that adapter, the base or the eval sets change), not on the other models.
"""

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, MetadataValue, multi_asset

from eval_assets.assets.reports import (
    BASELINE,
    base_identity,
    eval_settings,
    plotted_metrics,
    suite_items,
    trained_identity,
)
from eval_assets.engine.comparison import run_evaluation
from mixtrain.automation import changed_out
from mixtrain.partitions import adapter_partitions
from mixtrain.resources import ProjectResource
from mixtrain.versioning import table_output

# The adapter's label in metadata keys, the same in every partition (the partition names the adapter).
ADAPTER_LABEL = "adapter"


def adapter_label(adapter_id: str) -> str:
    return f"task_adapter[{adapter_id}]"


@multi_asset(
    outs={
        "task_adapter_report": changed_out(
            "adapter-eval-1", "One task adapter's and its base's output and scores per item, suite and slice."
        ),
        "task_adapter_comparison": changed_out(
            "adapter-eval-1", "One task adapter vs its base per metric and slice, with paired bootstrap intervals."
        ),
    },
    ins={
        "task_adapter": AssetIn(input_manager_key="json_io_manager"),
        "base_model": AssetIn(input_manager_key="json_io_manager"),
        "eval_registry": AssetIn(),
        "heldout_text": AssetIn(),
    },
    deps=["eval_spec"],
    partitions_def=adapter_partitions,
    group_name="evaluation",
)
def task_adapter_eval(
    context: AssetExecutionContext,
    project: ProjectResource,
    task_adapter: dict,
    base_model: dict,
    eval_registry: pa.Table,
    heldout_text: pa.Table,
):
    proj = project.load()
    label = adapter_label(context.partition_key)
    candidates = {BASELINE: (base_model["path"], None), label: (base_model["path"], task_adapter["path"])}
    identities = {BASELINE: base_identity(base_model), label: trained_identity(task_adapter)}
    items = suite_items(proj, eval_registry, heldout_text)
    run = run_evaluation(candidates, BASELINE, items, eval_settings(proj), identities=identities)
    metadata: dict = plotted_metrics(run, {label: ADAPTER_LABEL})
    metadata["problems"] = len(run.problems)
    metadata["record"] = MetadataValue.json(run.record)
    yield table_output(run.items, metadata, name="task_adapter_report")
    comparison = {"comparison": MetadataValue.md(run.to_markdown())}
    yield table_output(run.comparison, comparison, name="task_adapter_comparison")
