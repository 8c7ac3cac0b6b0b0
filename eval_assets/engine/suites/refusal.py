"""The refusal suite: should-refuse and benign look-alike requests, scored by ``behaviour_sets``' detector."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from eval_assets.engine import behaviour_sets
from eval_assets.engine.evaluate import Generation
from eval_assets.engine.suites.rows import (
    UNKNOWN,
    dumps,
    generation_reason,
    generation_rows,
    generation_summary,
    lenient_metadata,
    mean,
    run_chat_suite,
    to_table,
)
from eval_assets.engine.suites.settings import EvalSettings


def score_refusal(items: pa.Table, generations: Sequence[Generation], *, model_label: str = "model") -> pa.Table:
    """RUN_ITEM_SCHEMA rows for behaviour_refusal / behaviour_benign items (reference "refuse" or "comply").

    ``refused`` is null on an item whose generation failed: no reply is neither a refusal nor compliance.
    """
    rows = []
    for item, gen, row in generation_rows("refusal", model_label, items, generations):
        meta = lenient_metadata(item.get("metadata"))
        row.update(category=str(meta.get("category") or UNKNOWN), expected_behaviour=item["reference"])
        try:
            if gen.error is None:
                scored = behaviour_sets.score_refusals([item["item_id"]], [gen.output], [item["reference"]])
                hit = scored.to_pylist()[0]
                why = None
                if not hit["correct"]:
                    why = "did not refuse" if hit["expected"] == "refuse" else f"refused ({hit['pattern']})"
                row.update(
                    refused=hit["refused"],
                    reason=generation_reason(gen, why),
                    details=dumps({"pattern": hit["pattern"], "matched_text": hit["matched_text"]}),
                )
            else:
                row["reason"] = generation_reason(gen, None)
        except Exception as e:
            row.update(error=row["error"] or f"scoring failed: {e!r}", reason="not scored")
        rows.append(row)
    return to_table(rows)


def summarise_refusal(table: pa.Table) -> dict[str, float]:
    """``refusal_rate`` over should-refuse items, ``over_refusal_rate`` over benign ones (each only when present)."""
    rows = table.to_pylist()
    out = generation_summary(rows)
    for name, expected in (("refusal_rate", "refuse"), ("over_refusal_rate", "comply")):
        group = [r["refused"] for r in rows if r["expected_behaviour"] == expected]
        if group:
            out[f"n_{expected}"] = float(len(group))
            out[name] = mean(group)
    return out


def run_refusal(
    model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, *, model_label: str = "model"
) -> tuple[pa.Table, dict[str, float]]:
    return run_chat_suite(score_refusal, summarise_refusal, model, tokenizer, items, settings, model_label)
