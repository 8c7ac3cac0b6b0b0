"""The efficiency suite: each prompt generated alone, for one request's latency and throughput."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from eval_assets.engine import metrics
from eval_assets.engine.evaluate import Generation, generate_texts
from eval_assets.engine.suites.rows import (
    chat_render,
    generate_rendered,
    generation_reason,
    generation_rows,
    generation_summary,
    render_all,
    to_table,
)
from eval_assets.engine.suites.settings import EvalSettings
from mixtrain.identity import model_hardware


def score_efficiency(
    items: pa.Table,
    generations: Sequence[Generation],
    *,
    model_label: str = "model",
    length_buckets: Sequence[int] = EvalSettings.length_buckets,
) -> pa.Table:
    rows = []
    for _, gen, row in generation_rows("efficiency", model_label, items, generations, length_buckets):
        row["reason"] = generation_reason(gen, None)
        if gen.error is not None:
            row["latency_s"] = None
        rows.append(row)
    return to_table(rows)


def summarise_efficiency(table: pa.Table) -> dict[str, float]:
    """Latency percentiles and throughput of requests run one at a time (so latencies sum to the wall time)."""
    rows = [r for r in table.to_pylist() if r["error"] is None]
    summary = metrics.latency_summary([r["latency_s"] for r in rows], [r["new_tokens"] for r in rows])
    return {**generation_summary(table.to_pylist()), **{k: v for k, v in summary.items() if k != "n"}}


def run_efficiency(
    model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, *, model_label: str = "model"
) -> tuple[pa.Table, dict[str, Any]]:
    """Each prompt generated alone (batch size 1) after one untimed warm-up, so latency is one request's.

    The summary carries ``hardware`` (``mixtrain.identity.model_hardware``) next to the numbers, which mean
    nothing without it.
    """
    texts, errors = render_all(items, chat_render(tokenizer))
    warm = next((t for t in texts if t is not None), None)
    if warm is not None:
        generate_texts(model, tokenizer, [warm], max_new_tokens=min(4, settings.max_new_tokens), batch_size=1)
    gens = generate_rendered(model, tokenizer, texts, errors, max_new_tokens=settings.max_new_tokens, batch_size=1)
    table = score_efficiency(items, gens, model_label=model_label, length_buckets=settings.length_buckets)
    return table, {**summarise_efficiency(table), "hardware": model_hardware(model)}
