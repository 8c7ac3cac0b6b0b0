"""The perplexity suite: token-weighted NLL of held-out documents, window by window, per domain."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from eval_assets.engine.evaluate import sequence_nll
from eval_assets.engine.suites.rows import (
    UNKNOWN,
    base_row,
    per_item_fallback,
    to_table,
)
from eval_assets.engine.suites.settings import EvalSettings

PERPLEXITY_TEXT_SET = "heldout_text"


def text_windows(ids: Sequence[int], window: int) -> list[tuple[list[int], int]]:
    """``(ids, start)`` windows that score every token but the first exactly once, each with up to ``window``
    tokens in view: a window after the first starts one token early, so its first scored token has context."""
    out = []
    for w in range(0, len(ids), window):
        out.append((list(ids[max(0, w - 1) : w + window]), 1))
    return out


def _text_rows(texts: pa.Table) -> list[dict[str, Any]]:
    missing = {"text", "domain"} - set(texts.column_names)
    if missing:
        raise ValueError(f"perplexity texts need columns text and domain; missing {sorted(missing)}")
    rows = texts.to_pylist()
    for i, r in enumerate(rows):
        r.setdefault("item_id", None)
        r["item_id"] = r["item_id"] or f"text-{i}"
        r["eval_set"] = r.get("eval_set") or PERPLEXITY_TEXT_SET
    return rows


def score_perplexity(
    texts: pa.Table,
    nll: Sequence[tuple[float, int] | None],
    *,
    model_label: str = "model",
    errors: Sequence[str | None] | None = None,
) -> pa.Table:
    """RUN_ITEM_SCHEMA rows for held-out texts from per-text ``(summed NLL, scored tokens)``."""
    rows = []
    for i, item in enumerate(_text_rows(texts)):
        row = base_row("perplexity", model_label, {**item, "prompt": item["text"] or ""}, None)
        row["domain"] = str(item["domain"] or UNKNOWN)
        if errors is not None and errors[i] is not None:
            row.update(error=errors[i], reason="not scored")
        elif nll[i] is None or not nll[i][1]:
            row.update(reason="text has fewer than 2 tokens; nothing to score")
        else:
            total, count = nll[i]
            row.update(nll=total / count, nll_tokens=count)
        rows.append(row)
    return to_table(rows)


def summarise_perplexity(table: pa.Table) -> dict[str, float]:
    """Token-weighted NLL and its perplexity over the rows, plus ``ppl/<domain>`` per domain."""
    rows = table.to_pylist()

    def weighted(subset: list[dict[str, Any]]) -> tuple[float, int]:
        scored = [(r["nll"], r["nll_tokens"]) for r in subset if r["nll"] is not None]
        tokens = sum(n for _, n in scored)
        return (sum(v * n for v, n in scored) / tokens if tokens else float("nan")), tokens

    nll, tokens = weighted(rows)
    out = {
        "n": float(len(rows)),
        "n_errors": float(sum(r["error"] is not None for r in rows)),
        "n_tokens": float(tokens),
        "text_nll": nll,
        "ppl": math.exp(nll) if tokens else float("nan"),
    }
    for domain in sorted({r["domain"] for r in rows}):
        d_nll, d_tokens = weighted([r for r in rows if r["domain"] == domain])
        out[f"ppl/{domain}"] = math.exp(d_nll) if d_tokens else float("nan")
    return out


def run_perplexity(
    model: Any, tokenizer: Any, texts: pa.Table, settings: EvalSettings, *, model_label: str = "model"
) -> tuple[pa.Table, dict[str, float]]:
    """``texts``: a table with ``text`` and ``domain`` (and optionally ``item_id``, ``eval_set``) columns."""
    rows = _text_rows(texts)

    def nlls(idx: list[int]) -> list[tuple[float, int] | None]:
        out: list[tuple[float, int] | None] = []
        for i in idx:
            ids = tokenizer(rows[i]["text"] or "", add_special_tokens=False).input_ids[: settings.ppl_max_tokens]
            if len(ids) < 2:
                out.append(None)
                continue
            parts = sequence_nll(model, tokenizer, text_windows(ids, settings.ppl_window), settings.batch_size)
            out.append((sum(s for s, _ in parts), sum(n for _, n in parts)))
        return out

    nll, errors = per_item_fallback(nlls, len(rows))
    table = score_perplexity(texts, nll, model_label=model_label, errors=errors)
    return table, summarise_perplexity(table)
