"""The tool-call suite: replies parsed and scored by ``engine.tool_calls`` (BFCL rules), per call kind."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from eval_assets.engine import tool_calls
from eval_assets.engine.evaluate import Generation
from eval_assets.engine.suites.rows import (
    UNKNOWN,
    conversation,
    dumps,
    generate_rendered,
    generation_reason,
    generation_rows,
    generation_summary,
    item_metadata,
    mean,
    render_all,
    to_table,
)
from eval_assets.engine.suites.settings import EvalSettings


def _tools(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    tools = meta.get("tools")
    if not isinstance(tools, list) or not tools:
        raise ValueError("a tool-call item needs metadata.tools, a non-empty list of function definitions")
    return tools


def _call_kind(reference: Any) -> str:
    calls = reference.get("calls") if isinstance(reference, dict) else None
    if not isinstance(calls, list):
        return UNKNOWN
    return "irrelevance" if not calls else ("single" if len(calls) == 1 else "parallel")


def score_tool_suite(
    items: pa.Table,
    generations: Sequence[Generation],
    *,
    model_label: str = "model",
    length_buckets: Sequence[int] = EvalSettings.length_buckets,
) -> pa.Table:
    """RUN_ITEM_SCHEMA rows for tool-call items: raw replies parsed and scored by ``tool_calls`` (BFCL rules).

    Item layout: ``prompt`` the chat messages, ``metadata.tools`` the OpenAI-style function definitions,
    ``reference`` the ``{"calls": [...]}`` spec of ``tool_calls``. ``details`` keeps the per-argument rows.
    """
    rows = []
    for item, gen, row in generation_rows("tool_calls", model_label, items, generations, length_buckets):
        try:
            meta = item_metadata(item.get("metadata"))
            reference = json.loads(item["reference"])
            row["call_kind"] = _call_kind(reference)
            item_table, arg_table = tool_calls.score_tool_calls(
                [item["item_id"]], [gen.output], [reference], tools=[_tools(meta)]
            )
            scored = item_table.to_pylist()[0]
            row.update(
                tool_correct=scored["correct"],
                tool_selection_correct=scored["selection_correct"],
                tool_arg_accuracy=scored["arg_accuracy"],
                reason=generation_reason(gen, scored["reason"]),
                details=dumps({**scored, "arguments": arg_table.to_pylist()}),
            )
        except Exception as e:
            row.update(
                tool_correct=False,
                tool_selection_correct=False,
                tool_arg_accuracy=0.0,
                error=row["error"] or f"scoring failed: {e!r}",
                reason="not scored",
            )
            row.setdefault("call_kind", UNKNOWN)
        rows.append(row)
    return to_table(rows)


def summarise_tool_suite(table: pa.Table) -> dict[str, float]:
    """Accuracy over all items, call items and irrelevance items apart, and argument accuracy pooled per argument."""
    rows = table.to_pylist()
    details = [json.loads(r["details"]) if r["details"] else None for r in rows]
    calls = [(r, d) for r, d in zip(rows, details, strict=True) if r["call_kind"] != "irrelevance"]
    args_total = sum(d["args_total"] for _, d in calls if d)
    out = {
        **generation_summary(rows),
        "tool_accuracy": mean([r["tool_correct"] for r in rows]),
        "tool_selection_accuracy": mean([r["tool_selection_correct"] for r in rows]),
        "tool_call_accuracy": mean([r["tool_correct"] for r, _ in calls]),
        "tool_arg_accuracy": sum(d["args_correct"] for _, d in calls if d) / args_total if args_total else math.nan,
        "tool_parse_error_rate": mean([d["parse_errors"] > 0 for d in details if d]),
    }
    irrelevance = [r["tool_correct"] for r in rows if r["call_kind"] == "irrelevance"]
    if irrelevance:
        out["tool_irrelevance_accuracy"] = mean(irrelevance)
    return out


def run_tool_calls(
    model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, *, model_label: str = "model"
) -> tuple[pa.Table, dict[str, float]]:
    """Prompts rendered by ``tool_template.render_prompt``, the exact rendering training used for tool records."""
    from training_assets.engine.tool_template import render_prompt

    stops: set[str] = set()

    def render(item: Mapping[str, Any]) -> str:
        text, template = render_prompt(tokenizer, conversation(item["prompt"]), _tools(item_metadata(item["metadata"])))
        if template.end_of_turn:
            stops.add(template.end_of_turn)
        return text

    texts, errors = render_all(items, render)
    gens = generate_rendered(
        model,
        tokenizer,
        texts,
        errors,
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
        extra_stop=sorted(stops),
    )
    table = score_tool_suite(items, gens, model_label=model_label, length_buckets=settings.length_buckets)
    return table, summarise_tool_suite(table)
