"""The suite table: each suite's runner, summary, slice columns and the metrics a comparison reads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from eval_assets.engine.suites.calibration import run_calibration, summarise_calibration
from eval_assets.engine.suites.efficiency import run_efficiency, summarise_efficiency
from eval_assets.engine.suites.perplexity import run_perplexity, summarise_perplexity
from eval_assets.engine.suites.refusal import run_refusal, summarise_refusal
from eval_assets.engine.suites.rows import json_or_text
from eval_assets.engine.suites.sentinel import run_sentinel, stability_groups, summarise_sentinel
from eval_assets.engine.suites.structured import reference_answer, run_structured, summarise_structured
from eval_assets.engine.suites.tool_calls import run_tool_calls, summarise_tool_suite


@dataclass(frozen=True)
class ItemMetric:
    """A metric that is the mean of a per-item column (over the items ``only`` selects), so it can be compared
    item by item with a paired bootstrap."""

    name: str
    column: str
    higher_is_better: bool = True
    only: tuple[str, str] | None = None  # (column, value): the items the metric is defined on
    token_level: bool = False  # depends on the tokenizer: not comparable across different vocabularies

    def value(self, row: Mapping[str, Any]) -> float | None:
        if self.only is not None and row.get(self.only[0]) != self.only[1]:
            return None
        v = row.get(self.column)
        return None if v is None else float(v)


@dataclass(frozen=True)
class Suite:
    name: str
    run: Callable[..., tuple[pa.Table, dict[str, Any]]]
    summarise: Callable[[pa.Table], dict[str, Any]]
    slice_columns: tuple[str, ...]
    item_metrics: tuple[ItemMetric, ...]
    # summary metrics that are not item means (point comparison only): name -> higher is better
    aggregate_metrics: Mapping[str, bool] = field(default_factory=dict)
    token_level_aggregates: tuple[str, ...] = ()
    # per-group units for metrics defined on groups of items (sentinel stability)
    group_units: Callable[[pa.Table], list[dict[str, Any]]] | None = None
    group_metrics: tuple[ItemMetric, ...] = ()
    # the answer an item expects, as text: what the generation budget is derived from (None: no references)
    reference_text: Callable[[Mapping[str, Any]], str] | None = None
    generates: bool = True  # False: likelihood only (no generation budget)


def structured_reference(item: Mapping[str, Any]) -> str:
    """The answer in the format training taught (the same text the held-out loss scores)."""
    return reference_answer(json_or_text(item["reference"]))


def raw_reference(item: Mapping[str, Any]) -> str:
    """The stored reference (a tool call as canonical JSON): the template adds a few tokens, which the budget's
    margin covers."""
    return item["reference"]


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "structured",
            run_structured,
            summarise_structured,
            ("source_module", "length_bucket"),
            (
                ItemMetric("json_valid_rate", "json_valid"),
                ItemMetric("json_strict_rate", "json_strict"),
                ItemMetric("schema_valid_rate", "schema_valid"),
                ItemMetric("field_accuracy", "field_accuracy"),
                ItemMetric("exact_match", "exact_match"),
                ItemMetric("heldout_item_nll", "nll", higher_is_better=False, token_level=True),
            ),
            {"heldout_loss": False, "truncated_rate": False},
            token_level_aggregates=("heldout_loss",),
            reference_text=structured_reference,
        ),
        Suite(
            "tool_calls",
            run_tool_calls,
            summarise_tool_suite,
            ("call_kind", "length_bucket"),
            (
                ItemMetric("tool_accuracy", "tool_correct"),
                ItemMetric("tool_selection_accuracy", "tool_selection_correct"),
                ItemMetric("tool_item_arg_accuracy", "tool_arg_accuracy"),
            ),
            {"tool_arg_accuracy": True, "tool_parse_error_rate": False, "truncated_rate": False},
            reference_text=raw_reference,
        ),
        Suite(
            "refusal",
            run_refusal,
            summarise_refusal,
            ("category",),
            (
                ItemMetric("refusal_rate", "refused", only=("expected_behaviour", "refuse")),
                ItemMetric(
                    "over_refusal_rate", "refused", higher_is_better=False, only=("expected_behaviour", "comply")
                ),
            ),
        ),
        Suite(
            "sentinel",
            run_sentinel,
            summarise_sentinel,
            ("variant",),
            (ItemMetric("sentinel_accuracy", "sentinel_correct"),),
            group_units=stability_groups,
            group_metrics=(
                ItemMetric("stability_all_agree", "stability_all_agree"),
                ItemMetric("stability_pairwise", "stability_pairwise"),
            ),
        ),
        Suite(
            "calibration",
            run_calibration,
            summarise_calibration,
            ("topic",),
            (
                ItemMetric("calibration_accuracy", "calibration_correct"),
                ItemMetric("brier", "brier", higher_is_better=False),
            ),
            {"ece": False, "mce": False},
        ),
        Suite(
            "perplexity",
            run_perplexity,
            summarise_perplexity,
            ("domain",),
            (ItemMetric("text_item_nll", "nll", higher_is_better=False, token_level=True),),
            {"text_nll": False, "ppl": False},
            token_level_aggregates=("text_nll", "ppl"),
            generates=False,
        ),
        Suite(
            "efficiency",
            run_efficiency,
            summarise_efficiency,
            ("length_bucket",),
            (ItemMetric("latency_mean_s", "latency_s", higher_is_better=False),),
            {"latency_p50_s": False, "latency_p95_s": False, "tokens_per_s": True},
            reference_text=structured_reference,
        ),
    )
}
