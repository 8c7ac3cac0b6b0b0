"""Each task adapter against the base it was trained on, one partition per adapter, on the configured suites.

An adapter trained on one tenant's or task's slice of the mixture is only worth shipping if it gains there
without losing elsewhere, so every suite runs, not just the adapter's own task: the per-domain perplexity on
held-out text and the tool-call and behaviour sets show what it costs outside its slice. The base's rows come
from ``base_eval`` (evaluated once, not once per partition) rather than from ``eval_report``, so an adapter's
evaluation depends only on what made it (and reruns only when that adapter, the base or the eval sets change),
not on the other models.
"""

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, multi_asset

from eval_assets.assets.live import reuse_base
from eval_assets.assets.wiring import GROUP, log_progress, model_in, run_outputs
from eval_assets.engine.candidates import ADAPTER_LABEL, BASELINE, adapter_label, adapter_models
from eval_assets.engine.comparison import run_evaluation
from eval_assets.engine.live import run_fingerprint
from eval_assets.engine.reporting import adapter_headline, eval_settings, reported_metrics, suite_items
from mixtrain.automation import changed_out
from mixtrain.partitions import adapter_partitions
from mixtrain.resources import ProjectResource


@multi_asset(
    outs={
        "task_adapter_report": changed_out(
            "adapter-eval-2", "One task adapter's and its base's output and scores per item, suite and slice."
        ),
        "task_adapter_comparison": changed_out(
            "adapter-eval-2", "One task adapter vs its base per metric and slice, with paired bootstrap intervals."
        ),
    },
    ins={
        "task_adapter": model_in(),
        "base_model": model_in(),
        "base_eval": AssetIn(),
        "eval_registry": AssetIn(),
        "heldout_text": AssetIn(),
    },
    deps=["eval_spec"],
    partitions_def=adapter_partitions,
    group_name=GROUP,
)
def task_adapter_eval(
    context: AssetExecutionContext,
    project: ProjectResource,
    task_adapter: dict,
    base_model: dict,
    base_eval: pa.Table,
    eval_registry: pa.Table,
    heldout_text: pa.Table,
):
    proj = project.load()
    cfg = proj.spec
    models, identities = adapter_models(base_model, context.partition_key, task_adapter, proj.storage_root)
    items = suite_items(cfg.evaluation.suites, cfg.eval_sets, eval_registry, heldout_text)
    settings = eval_settings(cfg.evaluation)
    reused = reuse_base(models, base_eval, run_fingerprint(items, settings))
    run = run_evaluation(
        models, BASELINE, items, settings, identities=identities, reused=reused, on_progress=log_progress(context)
    )
    label = adapter_label(context.partition_key)
    values = reported_metrics(run, {label: ADAPTER_LABEL})  # the same keys in every partition
    headline = adapter_headline(values, run, label, ADAPTER_LABEL)
    yield from run_outputs(run, "task_adapter_report", "task_adapter_comparison", headline, values)
