"""Verification of candidate pairs by the exact Jaccard of their shingle sets, with a cache of earlier values.

Why a module: a band collision is only a proposal; nothing is dropped before this step has computed (or
reused, when both documents are unchanged) the exact similarity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.dedupe.config import _META_BANDING, _META_FINGERPRINT, _META_SKETCH_SET, DedupeConfig
from mixassets.engine.dedupe.digest import _row_keys, _stored_sketch_set
from mixassets.engine.dedupe.sketching import _content_hash, shingle_set
from mixassets.engine.dedupe.tables import VERIFIED_PAIR_SCHEMA, _check_sketches, _fixed_list_numpy
from mixassets.engine.text_norm import TokenHasher

# -- verification --------------------------------------------------------------------------------------
TextSource = pa.ChunkedArray | pa.Array | Callable[[np.ndarray], Sequence[str | None]]


@dataclass(frozen=True)
class VerifiedPairs:
    """Verified candidate pairs by sketch position; ``computed``/``reused`` count how each value was got."""

    positions: np.ndarray  # (m, 2) int64, low < high
    exact_jaccard: np.ndarray  # (m,) float64
    estimated_jaccard: np.ndarray  # (m,) float64
    computed: int = 0
    reused: int = 0

    def __len__(self) -> int:
        return len(self.positions)

    def table(self, sketches: pa.Table, config: DedupeConfig | None = None) -> pa.Table:
        """The pairs in :data:`VERIFIED_PAIR_SCHEMA`, sorted by keys, with metadata naming the sketches
        they cover, so a later run can tell whether they are complete for the documents it reuses."""
        cfg = config or DedupeConfig()
        lo, hi = self.positions[:, 0], self.positions[:, 1]
        # a is the end with the smaller (source_id, doc_id), bytewise; a tie keeps the lower position first.
        swap = _key_greater(sketches, lo, hi)
        a = np.where(swap, hi, lo)
        b = np.where(swap, lo, hi)
        out = pa.table(
            {
                "a_source_id": sketches.column("source_id").take(a),
                "a_doc_id": sketches.column("doc_id").take(a),
                "a_content_hash": sketches.column("content_hash").take(a),
                "b_source_id": sketches.column("source_id").take(b),
                "b_doc_id": sketches.column("doc_id").take(b),
                "b_content_hash": sketches.column("content_hash").take(b),
                "exact_jaccard": pa.array(self.exact_jaccard, pa.float64()),
                "estimated_jaccard": pa.array(self.estimated_jaccard, pa.float64()),
            },
            schema=VERIFIED_PAIR_SCHEMA,
        )
        out = out.sort_by(
            [
                ("a_source_id", "ascending"),
                ("a_doc_id", "ascending"),
                ("b_source_id", "ascending"),
                ("b_doc_id", "ascending"),
            ]
        )
        bands, rows = cfg.banding
        meta = {
            _META_FINGERPRINT: cfg.fingerprint().encode(),
            _META_BANDING: f"{bands},{rows}".encode(),
            _META_SKETCH_SET: _stored_sketch_set(sketches).encode(),
        }
        return out.replace_schema_metadata(meta)


def _key_greater(sketches: pa.Table, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Where row ``lo``'s (source_id, doc_id) sorts after row ``hi``'s: compared pair by pair, so only the
    pairs' ids are read rather than sorting the ids of the whole corpus."""
    if len(lo) == 0:
        return np.zeros(0, dtype=bool)
    at_lo, at_hi = pa.array(lo, pa.int64()), pa.array(hi, pa.int64())
    s_lo, s_hi = sketches.column("source_id").take(at_lo), sketches.column("source_id").take(at_hi)
    d_lo, d_hi = sketches.column("doc_id").take(at_lo), sketches.column("doc_id").take(at_hi)
    greater = pc.or_(pc.greater(s_lo, s_hi), pc.and_(pc.equal(s_lo, s_hi), pc.greater(d_lo, d_hi)))
    return greater.to_numpy(zero_copy_only=False).astype(bool)


def _cached_pairs(previous: pa.Table, sketches: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of ``previous`` whose two document versions are both in ``sketches``, by position (low, high)."""
    here = _row_keys(sketches.column("source_id"), sketches.column("doc_id"), sketches.column("content_hash"))
    a = pc.index_in(
        _row_keys(previous.column("a_source_id"), previous.column("a_doc_id"), previous.column("a_content_hash")),
        value_set=here,
    )
    b = pc.index_in(
        _row_keys(previous.column("b_source_id"), previous.column("b_doc_id"), previous.column("b_content_hash")),
        value_set=here,
    )
    valid = pc.and_(pc.is_valid(a), pc.is_valid(b)).to_numpy(zero_copy_only=False)
    ia = pc.fill_null(a, 0).to_numpy(zero_copy_only=False)[valid].astype(np.int64)
    ib = pc.fill_null(b, 0).to_numpy(zero_copy_only=False)[valid].astype(np.int64)
    exact = previous.column("exact_jaccard").to_numpy()[valid]
    estimated = previous.column("estimated_jaccard").to_numpy()[valid]
    pos = np.stack([np.minimum(ia, ib), np.maximum(ia, ib)], axis=1)
    keep = pos[:, 0] != pos[:, 1]
    return pos[keep], exact[keep], estimated[keep]


def _texts_at(texts: TextSource, positions: np.ndarray) -> Sequence[str | None]:
    if callable(texts):
        got = texts(positions)
        if len(got) != len(positions):
            raise ValueError(f"dedupe: the text callable returned {len(got)} texts for {len(positions)} positions")
        return got
    return texts.take(pa.array(positions, pa.int64())).to_pylist()


def _estimated(sig: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    out = np.empty(len(pairs), dtype=np.float64)
    step = max(1, 2**22 // max(1, sig.shape[1]))
    for start in range(0, len(pairs), step):
        p = pairs[start : start + step]
        out[start : start + step] = (sig[p[:, 0]] == sig[p[:, 1]]).mean(axis=1)
    return out


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - inter
    return inter / union if union else 0.0


def verify(
    sketches: pa.Table,
    pairs: np.ndarray,
    texts: TextSource,
    config: DedupeConfig | None = None,
    *,
    previous: pa.Table | None = None,
) -> VerifiedPairs:
    """Exact shingle Jaccard (and the MinHash estimate) of every candidate pair.

    ``texts`` gives a document's text by sketch position (an Arrow string array aligned with the sketches,
    or a callable taking an array of positions). Values for pairs found in ``previous`` (a
    :data:`VERIFIED_PAIR_SCHEMA` table) with both documents' content hashes unchanged are reused; shingles
    are recomputed only for documents of the remaining pairs. A text whose hash disagrees with its sketch
    is an error, since it means texts and sketches are misaligned or the sketch is stale.
    """
    cfg = config or DedupeConfig()
    _check_sketches(sketches, cfg)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    cached = None
    if previous is not None:
        made_with = (previous.schema.metadata or {}).get(_META_FINGERPRINT, b"").decode()
        if made_with != cfg.fingerprint():
            raise ValueError(f"dedupe: previous verified pairs were made with settings {made_with or '<none>'}")
        if len(pairs) and previous.num_rows:
            cached = _cached_pairs(previous, sketches)
    return _verify(sketches, pairs, texts, cfg, cached)


_Cached = tuple[np.ndarray, np.ndarray, np.ndarray]  # what _cached_pairs returns


def _verify(
    sketches: pa.Table, pairs: np.ndarray, texts: TextSource, cfg: DedupeConfig, cached: _Cached | None
) -> VerifiedPairs:
    """:func:`verify` with the previous pairs already placed (:func:`_cached_pairs`), so a caller that needs
    them again places them once."""
    n = sketches.num_rows
    exact = np.full(len(pairs), np.nan)
    reused = 0
    if cached is not None and len(pairs):
        cpos, cexact, _ = cached
        codes = cpos[:, 0] * n + cpos[:, 1]
        order = np.argsort(codes, kind="stable")
        codes, cexact = codes[order], cexact[order]
        want = np.minimum(pairs[:, 0], pairs[:, 1]) * n + np.maximum(pairs[:, 0], pairs[:, 1])
        at = np.clip(np.searchsorted(codes, want), 0, max(0, len(codes) - 1))
        hit = (codes[at] == want) if len(codes) else np.zeros(len(pairs), dtype=bool)
        exact[hit] = cexact[at[hit]]
        reused = int(hit.sum())
    todo = np.flatnonzero(np.isnan(exact))
    if todo.size:
        need = np.unique(pairs[todo].reshape(-1))
        got = _texts_at(texts, need)
        codes_col = sketches.column("code").take(pa.array(need, pa.int64())).to_pylist()
        hashes = sketches.column("content_hash").take(pa.array(need, pa.int64())).to_pylist()
        hasher = TokenHasher()
        sets: dict[int, np.ndarray] = {}
        for pos, text, code, expected in zip(need.tolist(), got, codes_col, hashes, strict=True):
            if _content_hash(text, code) != expected:
                raise ValueError(
                    f"dedupe: the text given for {sketches.column('source_id')[pos]}/"
                    f"{sketches.column('doc_id')[pos]} (position {pos}) is not the text it was sketched from"
                )
            sets[pos] = shingle_set(text, code=code, config=cfg, hasher=hasher)
        for k in todo.tolist():
            exact[k] = _jaccard(sets[int(pairs[k, 0])], sets[int(pairs[k, 1])])
    estimated = np.empty(0)
    if len(pairs):
        # Only the pairs' rows are converted: the whole signature column is the largest thing in memory.
        rows, local = np.unique(pairs.reshape(-1), return_inverse=True)
        sig = _fixed_list_numpy(sketches.column("signature").take(pa.array(rows, pa.int64())), cfg.num_perm, np.uint32)
        estimated = _estimated(sig, local.reshape(-1, 2))
    return VerifiedPairs(pairs, exact, estimated, computed=int(todo.size), reused=reused)
