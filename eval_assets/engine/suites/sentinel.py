"""The sentinel suite: simple tasks with one checkable answer, each asked several ways, for regressions and
for stability across prompt variants."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from eval_assets.engine import metrics
from eval_assets.engine.evaluate import Generation
from eval_assets.engine.suites.rows import (
    UNKNOWN,
    generation_reason,
    generation_rows,
    generation_summary,
    lenient_metadata,
    mean,
    run_chat_suite,
    to_table,
)
from eval_assets.engine.suites.settings import EvalSettings


def sentinel_match(output: str, reference: str) -> bool:
    """The normalised reply is the answer, or starts with it followed by a non-alphanumeric character.

    "42", "42." and "42\\n(17 + 25)" are right; "420" and "The answer is 42" are not: the prompts ask for the
    answer alone, and accepting the answer anywhere would credit a reply that lists several candidates.
    """
    out, ref = metrics.normalise_answer(output), metrics.normalise_answer(reference)
    if not ref:
        return False
    return out == ref or (out.startswith(ref) and not out[len(ref)].isalnum())


def score_sentinel(items: pa.Table, generations: Sequence[Generation], *, model_label: str = "model") -> pa.Table:
    """RUN_ITEM_SCHEMA rows for sentinel items: correctness per phrasing; ``group`` ties the phrasings together."""
    rows = []
    for item, gen, row in generation_rows("sentinel", model_label, items, generations):
        meta = lenient_metadata(item.get("metadata"))
        row.update(
            group=str(meta.get("group") or item["item_id"]),
            variant=f"v{meta['variant']}" if "variant" in meta else UNKNOWN,
        )
        ok = gen.error is None and sentinel_match(gen.output, item["reference"])
        row.update(
            sentinel_correct=ok,
            reason=None if ok else generation_reason(gen, f"expected {item['reference']!r}"),
        )
        rows.append(row)
    return to_table(rows)


def stability_groups(table: pa.Table) -> list[dict[str, Any]]:
    """One row per sentinel group: ``item_id`` (the group), ``stability_all_agree``, ``stability_pairwise``.

    Items whose generation failed are left out of their group (an error is not an answer that disagrees).
    """
    rows = [r for r in table.to_pylist() if r["error"] is None]
    groups = metrics.group_outputs([r["group"] for r in rows], [r["output"] or "" for r in rows])
    group_table, _ = metrics.prompt_variant_stability(groups)
    return [
        {
            "item_id": g["group"],
            "stability_all_agree": g["all_agree"],
            "stability_pairwise": g["pairwise_agreement"],
        }
        for g in group_table.to_pylist()
    ]


def summarise_sentinel(table: pa.Table) -> dict[str, float]:
    rows = table.to_pylist()
    groups = [g for g in stability_groups(table) if g["stability_all_agree"] is not None]
    return {
        **generation_summary(rows),
        "sentinel_accuracy": mean([r["sentinel_correct"] for r in rows]),
        "n_groups": float(len(groups)),
        "stability_all_agree": mean([g["stability_all_agree"] for g in groups]),
        "stability_pairwise": mean([g["stability_pairwise"] for g in groups]),
    }


def run_sentinel(
    model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, *, model_label: str = "model"
) -> tuple[pa.Table, dict[str, float]]:
    return run_chat_suite(score_sentinel, summarise_sentinel, model, tokenizer, items, settings, model_label)
