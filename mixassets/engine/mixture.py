"""Token-budgeted, weighted sampling of the screened corpus into a training mixture.

Why these rules:

* Weights are shares of the *token* budget, not of documents, because sources differ a lot in
  document length and the model sees tokens. Source ``s`` gets
  ``target = token_budget * w_s / sum(w)`` over the weights > 0 in the spec.
* Each source is drawn in its own seeded random order (numpy ``Generator`` seeded from
  ``(spec.seed, hash(source_id))``) over its documents sorted by ``doc_id``, so the selection does not
  depend on input row order and adding or re-weighting one source never reshuffles another.
* Documents are taken in that order until the source's target is reached (the last document taken may
  overshoot the target by less than its own length), ``max_docs[source]`` is hit, or the source runs
  out. There is no upsampling: a source that cannot fill its target is reported with its shortfall
  rather than repeated, because repeating documents silently changes what a weight means.
* Documents the release policy forbids (``allowed[i]`` False, decided by the caller) and sources with
  weight 0 or no weight are never drawn, and are counted in the stats so the mixture report shows
  what was left out and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from mixassets.engine.text_norm import stable_hash64
from mixassets.project import MixtureSpec

TOKENS_COLUMN = "tokens"


def source_rng(seed: int, source_id: str) -> np.random.Generator:
    """The sampling order generator of one source; independent of every other source."""
    return np.random.default_rng([seed, stable_hash64(source_id)])


def _validate(docs: pa.Table, token_counts: Sequence[int], allowed: Sequence[bool]) -> None:
    for name in ("doc_id", "source_id"):
        if name not in docs.column_names:
            raise ValueError(f"mixture: input table lacks required column '{name}'; got {docs.column_names}")
        if docs.column(name).null_count:
            raise ValueError(f"mixture: column '{name}' has null values")
    if TOKENS_COLUMN in docs.column_names:
        raise ValueError(f"mixture: input table already has a '{TOKENS_COLUMN}' column")
    if len(token_counts) != docs.num_rows:
        raise ValueError(f"mixture: {len(token_counts)} token counts for {docs.num_rows} documents")
    if len(allowed) != docs.num_rows:
        raise ValueError(f"mixture: {len(allowed)} policy flags for {docs.num_rows} documents")
    negative = [i for i, t in enumerate(token_counts) if t < 0]
    if negative:
        raise ValueError(f"mixture: negative token count at row(s) {negative[:10]}")


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def sample_mixture(
    docs: pa.Table, token_counts: Sequence[int], spec: MixtureSpec, *, allowed: Sequence[bool]
) -> tuple[pa.Table, dict[str, Any]]:
    """Sample the mixture; returns the chosen documents (+ ``tokens``) and per-source/total stats.

    Rows are ordered by source id, then sampling order. Same inputs, spec and seed give the same table.
    """
    _validate(docs, token_counts, allowed)
    doc_ids = docs.column("doc_id").to_pylist()
    sources = docs.column("source_id").to_pylist()
    tokens = np.asarray(token_counts, dtype=np.int64)
    ok = np.asarray(allowed, dtype=bool)

    rows_by_source: dict[str, list[int]] = {}
    for i, s in enumerate(sources):
        rows_by_source.setdefault(s, []).append(i)
    total_weight = sum(w for w in spec.weights.values() if w > 0)
    total_available = int(tokens[ok].sum())

    chosen: list[int] = []
    per_source: dict[str, dict[str, Any]] = {}
    for sid in sorted(set(rows_by_source) | set(spec.weights)):
        rows = np.asarray(rows_by_source.get(sid, []), dtype=np.int64)
        allowed_rows = rows[ok[rows]] if rows.size else rows
        weight = float(spec.weights.get(sid, 0.0))
        target = round(spec.token_budget * weight / total_weight) if weight > 0 else 0
        cap = spec.max_docs.get(sid)
        stats: dict[str, Any] = {
            "weight": weight,
            "available_docs": int(allowed_rows.size),
            "available_tokens": int(tokens[allowed_rows].sum()),
            "excluded_by_policy": int(rows.size - allowed_rows.size),
            "excluded_by_weight": 0,
            "max_docs": cap,
            "target_tokens": target,
            "docs": 0,
            "tokens": 0,
        }
        if weight <= 0:
            stats["excluded_by_weight"] = int(allowed_rows.size)
            stats["stop_reason"] = "weight_zero" if sid in spec.weights else "not_in_weights"
        else:
            canonical = sorted(allowed_rows.tolist(), key=lambda r: (doc_ids[r], r))
            order = source_rng(spec.seed, sid).permutation(len(canonical))
            taken: list[int] = []
            got = 0
            stop = "exhausted"
            for k in order:
                if got >= target:
                    stop = "target"
                    break
                if cap is not None and len(taken) >= cap:
                    stop = "max_docs"
                    break
                row = canonical[k]
                taken.append(row)
                got += int(tokens[row])
            else:
                if got >= target:
                    stop = "target"
            chosen.extend(taken)
            stats.update(docs=len(taken), tokens=got, stop_reason=stop)
        stats["shortfall_tokens"] = max(0, stats["target_tokens"] - stats["tokens"])
        per_source[sid] = stats

    mixture_tokens = sum(s["tokens"] for s in per_source.values())
    for s in per_source.values():
        s["effective_weight"] = _share(s["tokens"], mixture_tokens)
        s["raw_share"] = _share(s["available_tokens"], total_available)

    def total(key: str) -> int:
        return int(sum(s[key] for s in per_source.values()))

    totals = {
        key: total(key)
        for key in (
            "available_docs",
            "available_tokens",
            "excluded_by_policy",
            "excluded_by_weight",
            "docs",
            "tokens",
            "target_tokens",
            "shortfall_tokens",
        )
    }
    totals["token_budget"] = spec.token_budget
    idx = pa.array(chosen, type=pa.int64())
    out = docs.take(idx).append_column(pa.field(TOKENS_COLUMN, pa.int64(), nullable=False), pa.array(tokens[chosen]))
    return out, {"mixture_id": spec.id, "seed": spec.seed, "sources": per_source, "totals": totals}
