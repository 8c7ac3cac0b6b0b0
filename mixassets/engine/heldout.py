"""Held-out text: a few documents per source kept out of the mixture, so perplexity per domain means something.

Perplexity on text the model trained on measures memory, not fit. The mixture therefore sets aside, before it
samples, ``per_source`` documents of every source the release policy admits, and never draws them. Which ones is a
pure function of the seed and the document ids (lowest ``sha256(seed:source:doc_id)`` first), so the hold-out is
stable when unrelated documents come and go, and a changed seed picks a new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

HELDOUT_COLUMNS = ("doc_id", "source_id", "domain", "text")


def _rank_key(seed: int, source_id: str, doc_id: str) -> bytes:
    return hashlib.sha256(f"{seed}:{source_id}:{doc_id}".encode()).digest()


def heldout_mask(docs: pa.Table, per_source: int, seed: int, *, allowed: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the held-out rows: up to ``per_source`` allowed documents of each source.

    Exact duplicates of a doc id within a source (the same document listed twice) are held out together, so no
    copy of a held-out document can reach the mixture.
    """
    n = docs.num_rows
    mask = np.zeros(n, dtype=bool)
    if per_source <= 0 or n == 0:
        return mask
    if len(allowed) != n:
        raise ValueError(f"allowed has {len(allowed)} entries for {n} documents")
    sources = docs.column("source_id").to_pylist()
    doc_ids = docs.column("doc_id").to_pylist()
    by_source: dict[str, set[str]] = {}
    for sid, did, ok in zip(sources, doc_ids, allowed, strict=True):
        if ok:
            by_source.setdefault(sid, set()).add(did)
    chosen: set[tuple[str, str]] = set()
    for sid, ids in by_source.items():
        ranked = sorted(ids, key=lambda d, s=sid: _rank_key(seed, s, d))
        chosen.update((sid, d) for d in ranked[:per_source])
    for i, (sid, did) in enumerate(zip(sources, doc_ids, strict=True)):
        mask[i] = (sid, did) in chosen
    return mask


def heldout_table(docs: pa.Table, mask: np.ndarray, seed: int, *, columns: Sequence[str] = HELDOUT_COLUMNS) -> pa.Table:
    """The held-out rows with the columns the perplexity suite reads (text, domain) and their identity, or the
    ``columns`` asked for (which must include ``doc_id`` and ``source_id``: a text-free index of them).

    Rows go round-robin over sources (each source's first pick, then every second pick, ...), so an evaluation
    limited to its first N texts still covers every source and domain it can.
    """
    picked = docs.filter(pa.array(mask, pa.bool_())).select(list(columns))
    sources = picked.column("source_id").to_pylist()
    doc_ids = picked.column("doc_id").to_pylist()
    keys = [_rank_key(seed, s, d) for s, d in zip(sources, doc_ids, strict=True)]
    within: dict[str, list[int]] = {}
    for i in sorted(range(len(keys)), key=keys.__getitem__):
        within.setdefault(sources[i], []).append(i)
    ordinal = {i: k for rows in within.values() for k, i in enumerate(rows)}
    order = sorted(range(len(keys)), key=lambda i: (ordinal[i], sources[i], keys[i]))
    return picked.take(pa.array(order, pa.int64()))
