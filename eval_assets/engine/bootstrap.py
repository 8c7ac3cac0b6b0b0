"""Paired bootstrap confidence intervals for "candidate minus baseline" on the same items.

Both models answer the same items, so the per-item differences are resampled (not the two score lists apart):
item difficulty cancels and the interval is as narrow as the data allows. Intervals are percentile intervals of
the resampled mean difference. Seeds are derived per (metric, slice) from the caller's seed with a stable hash,
so one slice's interval does not change when another slice is added.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

COMPARISON_SCHEMA = pa.schema(
    [
        pa.field("metric", pa.string(), nullable=False),
        pa.field("slice", pa.string(), nullable=False),  # ALL_SLICE for every item together
        pa.field("n", pa.int64(), nullable=False),  # paired items with a value on both sides
        pa.field("candidate", pa.float64()),
        pa.field("baseline", pa.float64()),
        pa.field("diff", pa.float64()),
        pa.field("ci_low", pa.float64()),
        pa.field("ci_high", pa.float64()),
        pa.field("confidence", pa.float64(), nullable=False),
        pa.field("n_resamples", pa.int64(), nullable=False),
    ]
)

ALL_SLICE = "all"
_CHUNK_ELEMENTS = 4_000_000  # indices drawn per chunk: bounds memory to ~32 MB whatever n * n_resamples is


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(key.encode())]))


def bootstrap_mean_diffs(
    diffs: Sequence[float] | np.ndarray, *, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``n_resamples`` means of ``diffs`` resampled with replacement, drawn in chunks to bound memory."""
    d = np.asarray(diffs, dtype=float)
    n = d.size
    out = np.empty(n_resamples)
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, n_resamples, step):
        k = min(step, n_resamples - start)
        out[start : start + k] = d[rng.integers(0, n, size=(k, n))].mean(axis=1)
    return out


def paired_bootstrap(
    candidate: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Mean candidate, mean baseline, their difference and its percentile interval ``[ci_low, ci_high]``.

    ``candidate[i]`` and ``baseline[i]`` must be the same item's values. With no items every figure is NaN.
    """
    return _paired(candidate, baseline, n_resamples=n_resamples, confidence=confidence, rng=_rng(seed, ""))


def _paired(
    candidate: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    *,
    n_resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> dict[str, float]:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    c = np.asarray(candidate, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if c.shape != b.shape or c.ndim != 1:
        raise ValueError(f"paired values need equal 1-d shapes, got {c.shape} and {b.shape}")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(b))):
        raise ValueError("paired values must be finite (drop missing items before pairing)")
    nan = float("nan")
    if c.size == 0:
        return {"n": 0.0, "candidate": nan, "baseline": nan, "diff": nan, "ci_low": nan, "ci_high": nan}
    d = c - b
    means = bootstrap_mean_diffs(d, n_resamples=n_resamples, rng=rng)
    alpha = 1.0 - confidence
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {
        "n": float(c.size),
        "candidate": float(c.mean()),
        "baseline": float(b.mean()),
        "diff": float(d.mean()),
        "ci_low": float(lo),
        "ci_high": float(hi),
    }


def _as_rows(table: pa.Table | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return table.to_pylist() if isinstance(table, pa.Table) else list(table)


def _to_float(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)  # bools become 0/1, which is what a rate of a yes/no metric averages
    return None if np.isnan(f) else f


def compare_paired(
    candidate: pa.Table | Sequence[Mapping[str, Any]],
    baseline: pa.Table | Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    *,
    key: str = "item_id",
    slice_column: str | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pa.Table:
    """A COMPARISON_SCHEMA table: per metric, one row over all items (slice ALL_SLICE) and one per slice.

    Both inputs are per-item score tables (e.g. the ``metrics`` scorers' output) keyed by ``key``. The item sets
    must be the same: a paired comparison on different items would measure the items, so a mismatch raises and
    names the items. Slices come from ``slice_column`` of the candidate table. Per metric, an item whose value is
    null (or NaN) on either side is left out of that metric, and ``n`` says how many pairs remained.
    """
    c_rows, b_rows = _as_rows(candidate), _as_rows(baseline)
    by_key_c = _index(c_rows, key, "candidate")
    by_key_b = _index(b_rows, key, "baseline")
    only_c, only_b = sorted(by_key_c.keys() - by_key_b.keys()), sorted(by_key_b.keys() - by_key_c.keys())
    if only_c or only_b:
        raise ValueError(
            f"paired comparison needs the same items: only in candidate {only_c[:5]} ({len(only_c)}), "
            f"only in baseline {only_b[:5]} ({len(only_b)})"
        )
    keys = list(by_key_c)  # candidate order, so the output order follows the input
    for m in metrics:
        for side, rows in (("candidate", c_rows), ("baseline", b_rows)):
            if rows and m not in rows[0]:
                raise ValueError(f"metric column '{m}' is not in the {side} table")
    slices: dict[str, list[Any]] = {ALL_SLICE: keys}
    if slice_column is not None:
        if c_rows and slice_column not in c_rows[0]:
            raise ValueError(f"slice column '{slice_column}' is not in the candidate table")
        for k in keys:
            slices.setdefault(str(by_key_c[k][slice_column]), []).append(k)
        if ALL_SLICE in {str(by_key_c[k][slice_column]) for k in keys}:
            raise ValueError(f"a slice is named '{ALL_SLICE}', which is reserved for all items together")
    out = []
    for m in metrics:
        for name, members in slices.items():
            pairs = [(_to_float(by_key_c[k][m]), _to_float(by_key_b[k][m])) for k in members]
            kept = [(c, b) for c, b in pairs if c is not None and b is not None]
            stats = _paired(
                [c for c, _ in kept],
                [b for _, b in kept],
                n_resamples=n_resamples,
                confidence=confidence,
                rng=_rng(seed, f"{m}\x00{name}"),
            )
            out.append(
                {
                    "metric": m,
                    "slice": name,
                    **{k: v for k, v in stats.items() if k != "n"},
                    "n": int(stats["n"]),
                    "confidence": confidence,
                    "n_resamples": n_resamples,
                }
            )
    nan_to_null = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in out]
    return pa.Table.from_pylist(nan_to_null, schema=COMPARISON_SCHEMA)


def _index(rows: list[Mapping[str, Any]], key: str, side: str) -> dict[Any, Mapping[str, Any]]:
    out: dict[Any, Mapping[str, Any]] = {}
    for i, r in enumerate(rows):
        if key not in r:
            raise ValueError(f"{side} row {i} has no '{key}' column")
        if r[key] in out:
            raise ValueError(f"{side} table has item '{r[key]}' twice; pairing needs one row per item")
        out[r[key]] = r
    return out
