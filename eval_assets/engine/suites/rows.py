"""What every suite shares: the one per-item row layout (RUN_ITEM_SCHEMA), the row every item starts from,
prompt rendering and batched generation with per-item errors, and small summary helpers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from eval_assets.engine.evaluate import Generation, chat_prompt, generate_texts
from eval_assets.engine.suites.settings import EvalSettings

UNKNOWN = "unknown"

RUN_ITEM_SCHEMA = pa.schema(
    [
        pa.field("suite", pa.string(), nullable=False),
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),  # as stored in the registry (JSON chat messages) / the text
        pa.field("output", pa.string()),  # null where nothing is generated (perplexity)
        pa.field("prompt_tokens", pa.int64()),
        pa.field("new_tokens", pa.int64()),
        pa.field("truncated", pa.bool_()),  # hit max_new_tokens without ending the turn
        pa.field("latency_s", pa.float64()),
        pa.field("reason", pa.string()),  # why the item lost points
        pa.field("error", pa.string()),  # the suite failed on this item
        pa.field("details", pa.string()),  # JSON: the scorer's full record (wrong fields, argument rows, probs, ...)
        # structured output
        pa.field("json_valid", pa.bool_()),
        pa.field("json_strict", pa.bool_()),
        pa.field("schema_valid", pa.bool_()),
        pa.field("field_accuracy", pa.float64()),
        pa.field("exact_match", pa.bool_()),
        # likelihood: mean NLL per scored token (reference answer / held-out text) and how many tokens
        pa.field("nll", pa.float64()),
        pa.field("nll_tokens", pa.int64()),
        # tool calls
        pa.field("tool_correct", pa.bool_()),
        pa.field("tool_selection_correct", pa.bool_()),
        pa.field("tool_arg_accuracy", pa.float64()),
        # refusal / sentinel / calibration
        pa.field("refused", pa.bool_()),
        pa.field("sentinel_correct", pa.bool_()),
        pa.field("calibration_correct", pa.bool_()),
        pa.field("confidence", pa.float64()),
        pa.field("brier", pa.float64()),
        # a plugin task's score (eval_assets.engine.task_plugins)
        pa.field("task_score", pa.float64()),
        # slices
        pa.field("source_module", pa.string()),
        pa.field("length_bucket", pa.string()),
        pa.field("call_kind", pa.string()),
        pa.field("category", pa.string()),
        pa.field("expected_behaviour", pa.string()),
        pa.field("variant", pa.string()),
        pa.field("group", pa.string()),
        pa.field("topic", pa.string()),
        pa.field("domain", pa.string()),
    ]
)


def length_bucket(n_tokens: int | None, bounds: Sequence[int]) -> str:
    """``<=b0``, ``b0+1-b1``, ..., ``>bk``: the band of a prompt's token count (``unknown`` when not measured)."""
    if n_tokens is None or n_tokens <= 0:
        return UNKNOWN
    lower = 0
    for b in bounds:
        if n_tokens <= b:
            return f"<={b}" if lower == 0 else f"{lower + 1}-{b}"
        lower = b
    return f">{lower}"


def item_metadata(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"metadata must be a JSON object, got {type(value).__name__}")
    return value


def lenient_metadata(raw: str | None) -> dict[str, Any]:
    try:
        return item_metadata(raw)
    except (json.JSONDecodeError, ValueError):
        return {}


def conversation(prompt: str) -> list[dict[str, Any]]:
    """A registry prompt as chat messages: JSON messages as stored, or plain text (HumanEval) as one user turn."""
    try:
        value = json.loads(prompt)
    except json.JSONDecodeError:
        return [{"role": "user", "content": prompt}]
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
        return value
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    raise ValueError("prompt is JSON but not a list of chat messages with a 'role'")


def json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)


def base_row(suite: str, model_label: str, item: Mapping[str, Any], gen: Generation | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "suite": suite,
        "eval_set": item.get("eval_set") or UNKNOWN,
        "model": model_label,
        "item_id": item["item_id"],
        "prompt": item.get("prompt") or "",
        "error": None,
        "reason": None,
    }
    if gen is not None:
        row.update(
            output=gen.output,
            prompt_tokens=gen.prompt_tokens or None,
            new_tokens=gen.new_tokens,
            truncated=gen.truncated,
            latency_s=gen.latency_s,
            error=gen.error,
        )
    return row


def generation_reason(gen: Generation, scorer_reason: str | None) -> str | None:
    """The scorer's reason, prefixed by what went wrong in generation (so a 0 says "cut off", not only "bad JSON")."""
    parts = []
    if gen.error is not None:
        parts.append(f"generation failed: {gen.error}")
    elif not gen.output.strip():
        parts.append("empty output")
    if gen.truncated:
        parts.append("truncated at max_new_tokens")
    if scorer_reason and (gen.error is None):
        parts.append(scorer_reason)
    return "; ".join(parts) or None


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=RUN_ITEM_SCHEMA)


def conform_rows(table: pa.Table) -> pa.Table:
    """Stored rows in RUN_ITEM_SCHEMA's layout: a column added since they were written (``task_score``) is null,
    so rows a release or ``base_eval`` stored earlier can still stand in for a fresh evaluation."""
    for f in RUN_ITEM_SCHEMA:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table.select(RUN_ITEM_SCHEMA.names).cast(RUN_ITEM_SCHEMA)


def render_all(
    items: pa.Table, render: Callable[[Mapping[str, Any]], str]
) -> tuple[list[str | None], list[str | None]]:
    """Rendered prompt per item, or None with the rendering error (so the item gets an error row)."""
    texts: list[str | None] = []
    errors: list[str | None] = []
    for item in items.to_pylist():
        try:
            texts.append(render(item))
            errors.append(None)
        except Exception as e:
            texts.append(None)
            errors.append(f"cannot render the prompt: {e!r}")
    return texts, errors


def generate_rendered(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str | None],
    errors: Sequence[str | None],
    *,
    max_new_tokens: int,
    batch_size: int,
    extra_stop: Sequence[str] = (),
) -> list[Generation]:
    """Greedy generations of ``render_all``'s texts; an item whose prompt did not render gets its error instead."""
    gens, _ = generate_texts(
        model, tokenizer, texts, max_new_tokens=max_new_tokens, batch_size=batch_size, extra_stop=extra_stop
    )
    return [g if e is None else Generation("", error=e) for g, e in zip(gens, errors, strict=True)]


def generate_items(
    model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, render: Callable[[Mapping[str, Any]], str]
) -> list[Generation]:
    texts, errors = render_all(items, render)
    return generate_rendered(
        model, tokenizer, texts, errors, max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size
    )


def generation_rows(
    suite: str,
    model_label: str,
    items: pa.Table,
    generations: Sequence[Generation],
    length_buckets: Sequence[int] | None = None,
) -> Iterator[tuple[dict[str, Any], Generation, dict[str, Any]]]:
    """Per item, in order: the item, its generation and the row it starts from (``base_row``), with the prompt's
    ``length_bucket`` when the suite slices by it (``length_buckets`` given)."""
    for i, item in enumerate(items.to_pylist()):
        gen = generations[i]
        row = base_row(suite, model_label, item, gen)
        if length_buckets is not None:
            row["length_bucket"] = length_bucket(gen.prompt_tokens, length_buckets)
        yield item, gen, row


def run_chat_suite(
    score: Callable[..., pa.Table],
    summarise: Callable[[pa.Table], dict[str, float]],
    model: Any,
    tokenizer: Any,
    items: pa.Table,
    settings: EvalSettings,
    model_label: str,
) -> tuple[pa.Table, dict[str, float]]:
    """A suite that only needs each item's greedy reply to its chat prompt: generate, ``score``, ``summarise``."""
    gens = generate_items(model, tokenizer, items, settings, chat_render(tokenizer))
    table = score(items, gens, model_label=model_label)
    return table, summarise(table)


def chat_render(tokenizer: Any) -> Callable[[Mapping[str, Any]], str]:
    return lambda item: chat_prompt(tokenizer, conversation(item["prompt"]))


def mean(values: Sequence[Any]) -> float:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def generation_summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "n": float(len(rows)),
        "n_errors": float(sum(r["error"] is not None for r in rows)),
        "n_truncated": float(sum(bool(r["truncated"]) for r in rows)),
        "truncated_rate": mean([r["truncated"] for r in rows if r["error"] is None]),
    }


def per_item_fallback(fn: Callable[[list[int]], list[Any]], n: int) -> tuple[list[Any], list[str | None]]:
    """``fn`` on all indices; if that raises, on each index alone, so a failure is charged to its own item."""
    try:
        return fn(list(range(n))), [None] * n
    except Exception:
        values: list[Any] = []
        errors: list[str | None] = []
        for i in range(n):
            try:
                values.append(fn([i])[0])
                errors.append(None)
            except Exception as e:
                values.append(None)
                errors.append(repr(e))
        return values, errors
