"""What ``eval_report`` must hold before a release may be decided on it (the checks in ``eval_assets.checks``).

A comparison is only as good as the rows under it: a model missing from a suite compares nothing, a NaN score
poisons a mean without failing anything, and a model cut off by the generation budget on most items scores 0
for the budget's sake, which makes "no regression" meaningless. Each function returns what is wrong, so a check
can block with the reason and show the figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

# Score columns of RUN_ITEM_SCHEMA (floats): null means "not scored" and is allowed; NaN never is.
SCORE_COLUMNS = ("field_accuracy", "nll", "tool_arg_accuracy", "confidence", "brier", "latency_s", "task_score")


def missing_results(items: pa.Table, models: Sequence[str], suites: Iterable[str]) -> list[str]:
    """``model/suite/eval_set`` combinations without a row: every model must have rows on every configured suite,
    and on every eval set any model was evaluated on in that suite."""
    have = set(zip(items["model"].to_pylist(), items["suite"].to_pylist(), items["eval_set"].to_pylist(), strict=True))
    sets_of: dict[str, set[str]] = {}
    for _, suite, eval_set in have:
        sets_of.setdefault(suite, set()).add(eval_set)
    missing = []
    for model in models:
        for suite in suites:
            sets = sorted(sets_of.get(suite, ()))
            if not sets:
                missing.append(f"{model}/{suite}/(no eval set: no model has rows)")
            missing.extend(f"{model}/{suite}/{s}" for s in sets if (model, suite, s) not in have)
    return sorted(dict.fromkeys(missing))


def nan_scores(items: pa.Table) -> list[str]:
    """``model/suite/column: count`` for every score column holding NaN."""
    out = []
    rows = items.select(["model", "suite", *SCORE_COLUMNS]).to_pylist()
    counts: dict[tuple[str, str, str], int] = {}
    for r in rows:
        for col in SCORE_COLUMNS:
            v = r[col]
            if isinstance(v, float) and math.isnan(v):
                counts[(r["model"], r["suite"], col)] = counts.get((r["model"], r["suite"], col), 0) + 1
    out.extend(f"{m}/{s}/{c}: {n} NaN" for (m, s, c), n in sorted(counts.items()))
    return out


def truncation_shares(items: pa.Table) -> list[dict[str, Any]]:
    """Per model and suite: generated items (with an output and no error), how many were cut off by the budget,
    and the share (suites that generate nothing, e.g. perplexity, have no row)."""
    counts: dict[tuple[str, str], list[int]] = {}
    for r in items.select(["model", "suite", "truncated", "error", "output"]).to_pylist():
        if r["output"] is None or r["error"] is not None or r["truncated"] is None:
            continue
        c = counts.setdefault((r["model"], r["suite"]), [0, 0])
        c[0] += 1
        c[1] += bool(r["truncated"])
    return [
        {"model": m, "suite": s, "generated": n, "truncated": t, "share": round(t / n, 4)}
        for (m, s), (n, t) in counts.items()
    ]


def over_threshold(shares: Sequence[dict[str, Any]], models: Iterable[str], threshold: float) -> list[dict[str, Any]]:
    """The rows of ``truncation_shares`` for ``models`` whose share exceeds ``threshold``."""
    wanted = set(models)
    return [r for r in shares if r["model"] in wanted and r["share"] > threshold]
