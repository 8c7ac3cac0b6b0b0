"""What the evaluation assets need around a run: its settings and each suite's items from the project's config,
and the headline metrics that become numeric metadata (so the UI plots them run over run)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from eval_assets.engine.behaviour_sets import benign_set, calibration_set, refusal_set, sentinel_set
from eval_assets.engine.comparison import EvalRun
from eval_assets.engine.suites import PERPLEXITY_TEXT_SET, EvalSettings
from mixtrain.config.evaluation import EvalSetSpec, EvalSpec

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
    "truncated_rate",
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
# EvalSpec fields that EvalSettings takes under the same name (perplexity_max_tokens is ppl_max_tokens there).
_SAME_NAME = ("batch_size", "limit", "n_resamples", "seed", "generation_timeout_s")


def eval_settings(cfg: EvalSpec) -> EvalSettings:
    """The run settings of a config: an explicit ``max_new_tokens`` is every suite's budget; without it each
    suite's budget is derived from its reference answers (``budget.suite_budget``) by ``generation_budget``."""
    rule = cfg.generation_budget
    return EvalSettings(
        **{name: getattr(cfg, name) for name in _SAME_NAME},
        ppl_max_tokens=cfg.perplexity_max_tokens,
        max_new_tokens=rule.default if cfg.max_new_tokens is None else cfg.max_new_tokens,
        derive_budget=cfg.max_new_tokens is None,
        budget_quantile=rule.quantile,
        budget_margin=rule.margin,
        budget_floor=rule.floor,
        budget_cap=rule.cap,
        tasks=tuple(sorted(cfg.tasks.items())),
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


def suite_items(
    suites: Sequence[str], eval_sets: Sequence[EvalSetSpec], registry: pa.Table, heldout_text: pa.Table
) -> dict[str, pa.Table]:
    """The items of each configured suite: task holdouts from the registry, behaviour sets frozen in code, and the
    mixture's held-out documents for perplexity; a plugin task's suite scores the eval sets of its task."""

    def task_sets(task: str) -> pa.Table:
        ids = [e.id for e in eval_sets if e.task == task]
        return registry.filter(pc.is_in(registry["eval_set"], pa.array(ids, pa.string())))

    task_items = task_sets("json_signature")
    out: dict[str, pa.Table] = {}
    for suite in suites:
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
        else:  # a plugin task (the project checked that it is one and that an eval set has it as its task)
            out[suite] = task_sets(suite)
    return out
