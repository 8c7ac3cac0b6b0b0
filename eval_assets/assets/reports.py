"""Evaluation of the base and every candidate (``engine.candidates.CANDIDATES``) on the configured suites, item
by item, and each candidate's comparison with the base, with bootstrap intervals per slice."""

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, multi_asset

from eval_assets.assets.wiring import GROUP, candidate_ins, log_progress, model_in, run_outputs
from eval_assets.engine.candidates import BASELINE, candidate_models
from eval_assets.engine.comparison import run_evaluation
from eval_assets.engine.reporting import eval_settings, suite_items
from mixtrain.automation import changed_out
from mixtrain.resources import ProjectResource


@multi_asset(
    outs={
        "eval_report": changed_out("eval-2", "Every candidate's output and scores per item, suite and slice."),
        "eval_comparison": changed_out(
            "eval-2", "Each candidate vs the base per metric and slice, with paired bootstrap intervals."
        ),
    },
    ins={"eval_registry": AssetIn(), "heldout_text": AssetIn(), "base_model": model_in(), **candidate_ins()},
    deps=["eval_spec"],
    group_name=GROUP,
)
def eval_report(
    context: AssetExecutionContext,
    project: ProjectResource,
    eval_registry: pa.Table,
    heldout_text: pa.Table,
    base_model: dict,
    **trained: dict,
):
    proj = project.load()
    cfg = proj.spec
    models, identities = candidate_models(base_model, trained, proj.storage_root)
    items = suite_items(cfg.evaluation.suites, cfg.eval_sets, eval_registry, heldout_text)
    run = run_evaluation(
        models, BASELINE, items, eval_settings(cfg.evaluation), identities=identities, on_progress=log_progress(context)
    )
    yield from run_outputs(run, "eval_report", "eval_comparison")
