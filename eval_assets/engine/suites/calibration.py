"""The calibration suite: option probabilities on yes/no (or multiple-choice) items; ECE, MCE and Brier."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from eval_assets.engine import behaviour_sets, calibration
from eval_assets.engine.suites.rows import (
    UNKNOWN,
    base_row,
    conversation,
    dumps,
    item_metadata,
    lenient_metadata,
    per_item_fallback,
    to_table,
)
from eval_assets.engine.suites.settings import EvalSettings


def calibration_options(meta: Mapping[str, Any]) -> tuple[list[str], int]:
    options = meta.get("options", list(behaviour_sets.YES_NO_OPTIONS))
    answer = meta.get("answer_index")
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) and o for o in options):
        raise ValueError("metadata.options must be a list of at least 2 non-empty strings")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(options):
        raise ValueError(f"metadata.answer_index must be an option index in [0, {len(options)}), got {answer!r}")
    return options, answer


def score_calibration(
    items: pa.Table,
    probs: Sequence[Sequence[float] | None],
    *,
    model_label: str = "model",
    errors: Sequence[str | None] | None = None,
) -> pa.Table:
    """RUN_ITEM_SCHEMA rows from each item's option probabilities (``calibration.option_probabilities``).

    ``output`` is the preferred option; an item without probabilities (``errors[i]`` says why) has null scores.
    """
    rows = []
    for i, item in enumerate(items.to_pylist()):
        row = base_row("calibration", model_label, item, None)
        meta = lenient_metadata(item.get("metadata"))
        row["topic"] = str(meta.get("topic") or UNKNOWN)
        try:
            if errors is not None and errors[i] is not None:
                raise RuntimeError(errors[i])
            if probs[i] is None:
                raise RuntimeError("no option probabilities")
            options, answer = calibration_options(meta)
            scored = calibration.calibration_items([item["item_id"]], [probs[i]], [answer]).to_pylist()[0]
            row.update(
                output=options[scored["predicted"]],
                calibration_correct=scored["correct"],
                confidence=scored["confidence"],
                brier=scored["brier"],
                reason=None if scored["correct"] else f"preferred {options[scored['predicted']]!r}",
                details=dumps({"probs": scored["probs"], "label": answer, "options": options}),
            )
        except Exception as e:
            row.update(error=f"{e!r}" if not isinstance(e, RuntimeError) else str(e), reason="not scored")
        rows.append(row)
    return to_table(rows)


def summarise_calibration(table: pa.Table, n_bins: int = EvalSettings.calibration_bins) -> dict[str, float]:
    """ECE, MCE, Brier, accuracy and mean confidence (``calibration.calibration_metrics``) over scored items."""
    rows = table.to_pylist()
    scored = [json.loads(r["details"]) for r in rows if r["details"]]
    got = calibration.calibration_metrics([d["probs"] for d in scored], [d["label"] for d in scored], n_bins=n_bins)
    return {
        "n": float(len(rows)),
        "n_errors": float(sum(r["error"] is not None for r in rows)),
        "calibration_accuracy": got["accuracy"],
        "ece": got["ece"],
        "mce": got["mce"],
        "brier": got["brier"],
        "mean_confidence": got["mean_confidence"],
    }


def run_calibration(
    model: Any, tokenizer: Any, items: pa.Table, settings: EvalSettings, *, model_label: str = "model"
) -> tuple[pa.Table, dict[str, float]]:
    rows = items.to_pylist()

    def probabilities(idx: list[int]) -> list[list[float]]:
        prompts = [conversation(rows[i]["prompt"]) for i in idx]
        options = [calibration_options(item_metadata(rows[i]["metadata"]))[0] for i in idx]
        return calibration.option_probabilities(model, tokenizer, prompts, options, batch_size=settings.batch_size)

    probs, errors = per_item_fallback(probabilities, len(rows))
    table = score_calibration(items, probs, model_label=model_label, errors=errors)
    return table, summarise_calibration(table, settings.calibration_bins)
