"""Evaluation of every candidate (base, SFT adapter, distilled student, its SFT-only twin) on the configured
suites, item by item, and each candidate's comparison with the base, with bootstrap intervals per slice."""

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetExecutionContext, AssetIn, MetadataValue, multi_asset

from eval_assets.engine.behaviour_sets import benign_set, calibration_set, refusal_set, sentinel_set
from eval_assets.engine.comparison import EvalRun, run_evaluation
from eval_assets.engine.suites import PERPLEXITY_TEXT_SET, EvalSettings
from mixtrain.automation import changed_out
from mixtrain.project import Project
from mixtrain.resources import ProjectResource
from mixtrain.versioning import table_output

BASELINE = "base"
CANDIDATES = ("sft_adapter", "distilled_student", "student_sft_baseline")
# Per model, these summary metrics (slice "all") become numeric metadata, so the UI plots them run over run.
PLOTTED = (
    "json_valid_rate",
    "schema_valid_rate",
    "field_accuracy",
    "exact_match",
    "heldout_loss",
    "tool_accuracy",
    "tool_selection_accuracy",
    "tool_arg_accuracy",
    "tool_irrelevance_accuracy",
    "tool_parse_error_rate",
    "refusal_rate",
    "over_refusal_rate",
    "stability_all_agree",
    "ece",
    "brier",
    "ppl",
    "latency_p50_s",
    "latency_p95_s",
    "tokens_per_s",
)


def eval_settings(proj: Project) -> EvalSettings:
    cfg = proj.spec.evaluation
    return EvalSettings(
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        limit=cfg.limit,
        n_resamples=cfg.n_resamples,
        ppl_max_tokens=cfg.perplexity_max_tokens,
        seed=cfg.seed,
    )


def plotted_metrics(run: EvalRun, labels: Mapping[str, str] | None = None) -> dict[str, float]:
    """``<model>/<suite>/<metric>`` for the PLOTTED metrics and per-domain perplexity over all items, with
    ``labels`` renaming models (so keys stay the same from one partition to the next)."""
    rows = run.summary.filter(pc.equal(run.summary["slice"], "all")).to_pylist()
    return {
        f"{(labels or {}).get(r['model'], r['model'])}/{r['suite']}/{r['metric']}": float(r["value"])
        for r in rows
        if (r["metric"] in PLOTTED or r["metric"].startswith("ppl/")) and r["value"] is not None
    }


def base_identity(base_model: dict) -> dict:
    return {"weights_sha256": base_model["weights_sha256"]}


def trained_identity(model: dict) -> dict:
    """What names a trained model in an evaluation's record: its version, weights and data (and, for a task
    adapter, the slice of the data it read)."""
    manifest = model["run_manifest"]
    identity = {
        "version": model.get("version"),
        "weights_sha256": manifest["output_weights_sha256"],
        "data_manifest_id": manifest["data_manifest_id"],
    }
    return identity | ({"data_filter": model["data_filter"]} if "data_filter" in model else {})


def suite_items(proj: Project, registry: pa.Table, heldout_text: pa.Table) -> dict[str, pa.Table]:
    """The items of each configured suite: task holdouts from the registry, behaviour sets frozen in code, and the
    mixture's held-out documents for perplexity."""

    def task_sets(task: str) -> pa.Table:
        ids = [e.id for e in proj.spec.eval_sets if e.task == task]
        return registry.filter(pc.is_in(registry["eval_set"], pa.array(ids, pa.string())))

    task_items = task_sets("json_signature")
    out: dict[str, pa.Table] = {}
    for suite in proj.spec.evaluation.suites:
        if suite in ("structured", "efficiency"):
            out[suite] = task_items
        elif suite == "tool_calls":
            out[suite] = task_sets("tool_calls")
        elif suite == "refusal":
            out[suite] = pa.concat_tables([refusal_set(), benign_set()])
        elif suite == "sentinel":
            out[suite] = sentinel_set()
        elif suite == "calibration":
            out[suite] = calibration_set()
        elif suite == "perplexity":  # documents of every source that the mixture never drew, by domain
            if heldout_text.num_rows == 0:  # heldout_docs > 0 (the project checks) but no source has a document
                raise ValueError("perplexity: the mixture held out no documents (no source admits one)")
            ids = pc.binary_join_element_wise(heldout_text["source_id"], heldout_text["doc_id"], "/")
            out[suite] = pa.table(
                {
                    "item_id": ids,
                    "eval_set": pa.array([PERPLEXITY_TEXT_SET] * heldout_text.num_rows, pa.string()),
                    "text": heldout_text["text"],
                    "domain": heldout_text["domain"],
                }
            )
    return out


@multi_asset(
    outs={
        "eval_report": changed_out("eval-2", "Every candidate's output and scores per item, suite and slice."),
        "eval_comparison": changed_out(
            "eval-2", "Each candidate vs the base per metric and slice, with paired bootstrap intervals."
        ),
    },
    ins={
        "eval_registry": AssetIn(),
        "heldout_text": AssetIn(),
        "base_model": AssetIn(input_manager_key="json_io_manager"),
        "sft_adapter": AssetIn(input_manager_key="json_io_manager"),
        "distilled_student": AssetIn(input_manager_key="json_io_manager"),
        "student_sft_baseline": AssetIn(input_manager_key="json_io_manager"),
    },
    deps=["eval_spec"],
    group_name="evaluation",
)
def eval_report(
    context: AssetExecutionContext,
    project: ProjectResource,
    eval_registry: pa.Table,
    heldout_text: pa.Table,
    base_model: dict,
    sft_adapter: dict,
    distilled_student: dict,
    student_sft_baseline: dict,
):
    proj = project.load()
    models = {"sft_adapter": sft_adapter, "distilled_student": distilled_student}
    models["student_sft_baseline"] = student_sft_baseline
    candidates = {
        BASELINE: (base_model["path"], None),
        "sft_adapter": (base_model["path"], sft_adapter["path"]),
        "distilled_student": (distilled_student["path"], None),
        "student_sft_baseline": (student_sft_baseline["path"], None),
    }
    identities = {BASELINE: base_identity(base_model), **{label: trained_identity(m) for label, m in models.items()}}
    items = suite_items(proj, eval_registry, heldout_text)
    run = run_evaluation(candidates, BASELINE, items, eval_settings(proj), identities=identities)
    metadata: dict = plotted_metrics(run)
    metadata["problems"] = len(run.problems)
    metadata["record"] = MetadataValue.json(run.record)
    yield table_output(run.items, metadata, name="eval_report")
    yield table_output(run.comparison, {"comparison": MetadataValue.md(run.to_markdown())}, name="eval_comparison")
