"""The base model's evaluation, run once: ``eval_report`` and every ``task_adapter_eval`` partition compare with
these rows instead of each evaluating the base again (the demo evaluated it once per adapter and once more for
the report). The rows carry the base's model record and the fingerprint of their items and settings
(``engine.live.with_provenance``); a reader whose own fingerprint differs evaluates the base itself.

It depends only on the base and the eval sets, so an adapter's evaluation still reruns only when that adapter,
the base or the eval sets change.
"""

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, MetadataValue

from eval_assets.assets.wiring import evaluation_asset, log_progress, model_in
from eval_assets.engine.candidates import BASELINE, base_only
from eval_assets.engine.comparison import run_evaluation
from eval_assets.engine.live import run_fingerprint, with_provenance
from eval_assets.engine.reporting import eval_settings, suite_items
from mixtrain.resources import ProjectResource
from mixtrain.versioning import table_output


@evaluation_asset(
    ins={"base_model": model_in(), "eval_registry": AssetIn(), "heldout_text": AssetIn()},
    deps=["eval_spec"],
    code_version="base-eval-1",
    description="The base model's output and scores per item on the configured suites, evaluated once and reused.",
)
def base_eval(
    context: AssetExecutionContext,
    project: ProjectResource,
    base_model: dict,
    eval_registry: pa.Table,
    heldout_text: pa.Table,
):
    proj = project.load()
    cfg = proj.spec
    items = suite_items(cfg.evaluation.suites, cfg.eval_sets, eval_registry, heldout_text)
    settings = eval_settings(cfg.evaluation)
    dirs, identities = base_only(base_model, proj.storage_root)
    run = run_evaluation(dirs, BASELINE, items, settings, identities=identities, on_progress=log_progress(context))
    for p in run.problems:
        context.log.warning(f"base evaluation: {p['suite'] or '-'} ({p['kind']}): {p['message']}")
    model = {k: v for k, v in run.record["models"][BASELINE].items() if k not in ("base_dir", "adapter_dir")}
    rows = with_provenance(run.items, model, run_fingerprint(items, settings))
    return table_output(rows, {"problems": len(run.problems), "record": MetadataValue.json(run.record)})
