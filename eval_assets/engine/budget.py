"""The generation budget of a suite: how many new tokens each of its prompts may generate.

A fixed budget serves nobody: below the longest reference answer it cuts correct answers off (scored 0 as
"truncated at max_new_tokens"), far above it a model that never ends its turn costs minutes per suite. So a suite
with reference answers gets ``ceil(q-quantile of the references' token counts x margin)``, kept within
``[floor, cap]``; each model counts with its own tokenizer, so a student with another vocabulary gets the same
allowance in text. A suite without references (the behaviour sets) gets ``max_new_tokens``, and so does every
suite when ``derive_budget`` is off (an explicit ``evaluation.max_new_tokens``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from eval_assets.engine.suites import EvalSettings, Suite

FIXED = "fixed"  # evaluation.max_new_tokens set: the same budget everywhere
DEFAULT = "default"  # derived budgets, but the suite has no reference answers
REFERENCES = "references"  # derived from the suite's reference answers


def quantile_length(lengths: Sequence[int], q: float) -> int:
    """The nearest-rank ``q``-quantile (1.0: the longest); no interpolation, so it is a length that occurs."""
    if not lengths:
        raise ValueError("no reference lengths to take a quantile of")
    ordered = sorted(lengths)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def derived_budget(lengths: Sequence[int], settings: EvalSettings) -> int:
    raw = math.ceil(quantile_length(lengths, settings.budget_quantile) * settings.budget_margin)
    return min(settings.budget_cap, max(settings.budget_floor, raw))


def reference_lengths(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens of each reference answer, plus one for the end-of-turn token that ends a complete reply."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [len(x) + 1 for x in ids]


def suite_budget(suite: Suite, items: pa.Table, tokenizer: Any, settings: EvalSettings) -> dict[str, Any]:
    """``{"max_new_tokens", "source", "references", "reference_tokens"}``: the budget and what it came from
    (recorded per model and suite, so a report says how long an answer could be)."""
    fixed = {"max_new_tokens": settings.max_new_tokens, "references": 0, "reference_tokens": None}
    if not settings.derive_budget:
        return {**fixed, "source": FIXED}
    texts: list[str] = []
    if suite.reference_text is not None:
        for item in items.to_pylist():
            try:
                texts.append(suite.reference_text(item))
            except (ValueError, KeyError, TypeError):  # a malformed reference is the scorer's to report, per item
                continue
    texts = [t for t in texts if t]
    if not texts:
        return {**fixed, "source": DEFAULT}
    lengths = reference_lengths(tokenizer, texts)
    return {
        "max_new_tokens": derived_budget(lengths, settings),
        "source": REFERENCES,
        "references": len(lengths),
        "reference_tokens": quantile_length(lengths, settings.budget_quantile),
    }
