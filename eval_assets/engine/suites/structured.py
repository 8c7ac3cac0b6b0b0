"""The structured-output suite (json_signature and any item with a JSON Schema): JSON and schema validity,
field accuracy, exact match and the held-out loss of the reference answer."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from eval_assets.engine import metrics
from eval_assets.engine.evaluate import Generation, reference_nll
from eval_assets.engine.suites.rows import (
    UNKNOWN,
    chat_render,
    conversation,
    dumps,
    generate_items,
    generation_reason,
    generation_rows,
    generation_summary,
    json_or_text,
    lenient_metadata,
    per_item_fallback,
    to_table,
)
from eval_assets.engine.suites.settings import EvalSettings
from eval_assets.tasks import json_signature


def _item_schema(meta: Mapping[str, Any]) -> Any:
    """The item's own ``metadata.schema``; json_signature items without one use the task's answer schema."""
    if "schema" in meta:
        return meta["schema"]
    if meta.get("task", json_signature.TASK_ID) == json_signature.TASK_ID:
        return json_signature.ANSWER_SCHEMA
    return None


def reference_answer(reference: Any) -> str:
    """The assistant turn whose likelihood is the held-out loss: json_signature's training format when the
    reference is a signature, the raw text for a string reference, else compact JSON."""
    if isinstance(reference, dict) and set(json_signature.FIELDS) <= reference.keys():
        return json_signature.format_answer(reference)
    if isinstance(reference, str):
        return reference
    return json.dumps(reference)


def score_structured(
    items: pa.Table,
    generations: Sequence[Generation],
    *,
    model_label: str = "model",
    nll: Sequence[tuple[float, int] | None] | None = None,
    nll_errors: Sequence[str | None] | None = None,
    length_buckets: Sequence[int] = EvalSettings.length_buckets,
) -> pa.Table:
    """RUN_ITEM_SCHEMA rows for structured-output items from their generations (and reference NLLs).

    JSON validity, schema validity, field accuracy and exact match follow ``metrics.score_structured_output``
    (the first JSON object in the reply is scored; ``json_strict`` says whether the reply was only JSON).
    """
    rows = []
    for i, (item, gen, row) in enumerate(
        generation_rows("structured", model_label, items, generations, length_buckets)
    ):
        meta = lenient_metadata(item.get("metadata"))
        row["source_module"] = str(meta.get("module") or UNKNOWN)
        try:
            scored = metrics.score_structured_output(
                gen.output, json_or_text(item["reference"]), _item_schema(meta), item_id=item["item_id"]
            )
            why = scored["error"] or (f"schema: {scored['schema_error']}" if scored["schema_error"] else None)
            if why is None and scored["wrong_fields"]:
                why = f"wrong fields: {', '.join(scored['wrong_fields'])}"
            row.update(
                {k: scored[k] for k in ("json_valid", "json_strict", "schema_valid", "field_accuracy", "exact_match")},
                reason=generation_reason(gen, why),
                details=dumps({k: scored[k] for k in ("wrong_fields", "fields_correct", "fields_total")}),
            )
        except Exception as e:
            row.update(
                json_valid=False,
                json_strict=False,
                schema_valid=False,
                field_accuracy=0.0,
                exact_match=False,
                error=row["error"] or f"scoring failed: {e!r}",
                reason="not scored",
            )
        if nll is not None and nll[i] is not None:
            total, count = nll[i]
            row.update(nll=total / count if count else None, nll_tokens=count)
        elif nll_errors is not None and nll_errors[i] is not None:
            row["error"] = "; ".join(x for x in (row["error"], f"held-out loss failed: {nll_errors[i]}") if x)
        rows.append(row)
    return to_table(rows)


def summarise_structured(table: pa.Table) -> dict[str, float]:
    """Rates (``metrics.summarise_structured``) plus the token-weighted held-out loss and generation health."""
    rows = table.to_pylist()
    out = {**generation_summary(rows), **metrics.summarise_structured(table)}
    scored = [(r["nll"], r["nll_tokens"]) for r in rows if r["nll"] is not None and r["nll_tokens"]]
    tokens = sum(n for _, n in scored)
    out["heldout_loss"] = sum(v * n for v, n in scored) / tokens if tokens else float("nan")
    return out


def run_structured(
    model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, *, model_label: str = "model"
) -> tuple[pa.Table, dict[str, float]]:
    gens = generate_items(model, tokenizer, items, settings, chat_render(tokenizer))
    rows = items.to_pylist()

    def losses(idx: list[int]) -> list[tuple[float, int]]:
        convs = [conversation(rows[i]["prompt"]) for i in idx]
        answers = [reference_answer(json_or_text(rows[i]["reference"])) for i in idx]
        return reference_nll(model, tokenizer, convs, answers, settings.batch_size)

    nll, nll_errors = per_item_fallback(losses, len(rows))
    table = score_structured(
        items, gens, model_label=model_label, nll=nll, nll_errors=nll_errors, length_buckets=settings.length_buckets
    )
    return table, summarise_structured(table)
