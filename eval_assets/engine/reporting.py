"""What the evaluation assets need around a run: its settings and each suite's items from the project's config,
its metrics by ``<model>/<suite>/<metric>``, and the few of them that become numeric metadata.

Every numeric metadata entry is a plot over materializations and a row in the asset's sidebar
(:mod:`mixtrain.metadata`): a report keeps a handful of headline numbers there, under the same keys run after run
so the plots continue, and every reported metric in one table (and one JSON entry for tools)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from eval_assets.engine.behaviour_sets import benign_set, calibration_set, refusal_set, sentinel_set
from eval_assets.engine.candidates import BASELINE
from eval_assets.engine.comparison import EvalRun
from eval_assets.engine.gate import gate_verdict
from eval_assets.engine.report_checks import truncation_shares
from eval_assets.engine.suites import PERPLEXITY_TEXT_SET, EvalSettings
from mixtrain.config.evaluation import EvalSetSpec, EvalSpec, ReleaseGateSpec

# Per model, these summary metrics (slice "all") are reported in the metadata's table (with perplexity per domain).
REPORTED = (
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
# A task adapter's headline per model (the adapter and its base): the two tasks' scores and perplexity on every
# domain's held-out text, what the adapter costs outside its slice.
ADAPTER_HEADLINE = ("structured/field_accuracy", "tool_calls/tool_accuracy", "perplexity/ppl")
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


def reported_metrics(run: EvalRun, labels: Mapping[str, str] | None = None) -> dict[str, float]:
    """``<model>/<suite>/<metric>`` for the REPORTED metrics and per-domain perplexity over all items, with
    ``labels`` renaming models (so keys stay the same from one partition to the next)."""
    rows = run.summary.filter(pc.equal(run.summary["slice"], "all")).to_pylist()
    return {
        f"{(labels or {}).get(r['model'], r['model'])}/{r['suite']}/{r['metric']}": float(r["value"])
        for r in rows
        if (r["metric"] in REPORTED or r["metric"].startswith("ppl/")) and r["value"] is not None
    }


def worst_truncation(run: EvalRun, model: str) -> float | None:
    """The largest share of ``model``'s outputs cut off by the generation budget over the suites that generate
    (what ``eval_report_truncation`` holds against ``release_gate.max_truncated_share``); None: it generated
    nothing."""
    shares = [r["share"] for r in truncation_shares(run.items) if r["model"] == model]
    return max(shares) if shares else None


def gate_headline(run: EvalRun, gate: ReleaseGateSpec, baseline: str, baseline_name: str) -> dict[str, Any]:
    """``eval_report``'s headline: every model's score on the gate's primary metric and eval set (under its
    ``<model>/<suite>/<metric>`` key), the gate's verdict against ``baseline`` with the candidate's difference on
    that metric, and the candidate's worst truncated share. The ``release_gate`` check decides; these are here
    so that a run's outcome is one glance, and plots, on the report."""
    rows = run.summary.filter(
        pc.and_(
            pc.and_(pc.equal(run.summary["slice"], "all"), pc.equal(run.summary["eval_set"], gate.eval_set)),
            pc.equal(run.summary["metric"], gate.primary_metric),
        )
    ).to_pylist()
    passed, checks = gate_verdict(run.comparison, gate, baseline, baseline_name)
    headline: dict[str, Any] = {f"{r['model']}/{r['suite']}/{r['metric']}": r["value"] for r in rows}
    headline["release_gate/passed"] = passed
    headline["release_gate/diff"] = checks[0]["diff"]  # the primary criterion: candidate minus baseline
    headline[f"{gate.candidate}/truncated_share"] = worst_truncation(run, gate.candidate)
    return {k: v for k, v in headline.items() if v is not None}


def adapter_headline(values: Mapping[str, float], run: EvalRun, adapter: str, label: str) -> dict[str, Any]:
    """``task_adapter_report``'s headline from its ``reported_metrics`` (models relabelled): ``ADAPTER_HEADLINE``
    for the base and the adapter (``label``), and the adapter's (``adapter``, its name in ``run``) worst
    truncated share."""
    headline: dict[str, Any] = {
        f"{m}/{c}": values[f"{m}/{c}"] for m in (BASELINE, label) for c in ADAPTER_HEADLINE if f"{m}/{c}" in values
    }
    truncated = worst_truncation(run, adapter)
    return headline if truncated is None else {**headline, f"{label}/truncated_share": truncated}


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
