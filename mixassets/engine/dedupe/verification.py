"""Verification of candidate pairs by the exact Jaccard of their shingle sets, with a cache of earlier values.

Why a module: a band collision is only a proposal; nothing is dropped before this step has computed (or
reused, when both documents are unchanged) the exact similarity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.dedupe.config import _META_BANDING, _META_FINGERPRINT, _META_SKETCH_SET, DedupeConfig
from mixassets.engine.dedupe.corpus import Corpus
from mixassets.engine.dedupe.digest import _row_keys, _stored_sketch_set
from mixassets.engine.dedupe.shingle_sets import ShingleSpill
from mixassets.engine.dedupe.sketching import _content_hash, shingle_set
from mixassets.engine.dedupe.tables import VERIFIED_PAIR_SCHEMA, _check_sketches, _fixed_list_numpy, _take_sorted
from mixassets.engine.text_norm import TokenHasher

# -- verification --------------------------------------------------------------------------------------
# Where verification reads texts by sketch position: a corpus (streamed), an Arrow string column aligned with the
# sketches, or a callable taking ascending positions.
TextSource = Corpus | pa.ChunkedArray | pa.Array | Callable[[np.ndarray], Sequence[str | None]]
# Bytes of shingle sets a verification pass holds at once (n_shingles uint64 each plus an array header): ~25k
# documents of ~2 KB. Pairs are verified in windows of their lower ends whose sets (and their partners') fit;
# each window gets the sets it needs once, so a set is read once per window it is in.
_HELD_SETS_BYTES = 64 << 20
_SET_OVERHEAD_BYTES = 112
_TAKE_TEXTS = 2048
# Pairs whose MinHash estimates are computed at a time: their signatures are at most 2 x 8k x 0.5 KB = 8 MB.
_ESTIMATE_PAIRS = 8192


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


def _text_stream(texts: TextSource, positions: np.ndarray) -> Iterator[tuple[np.ndarray, Sequence[str | None]]]:
    """The texts of ``positions`` (ascending, distinct) as ``(positions, texts)`` chunks in position order."""
    if isinstance(texts, Corpus):
        yield from texts.texts_at(positions)
        return
    if callable(texts):
        got = texts(positions)
        if len(got) != len(positions):
            raise ValueError(f"dedupe: the text callable returned {len(got)} texts for {len(positions)} positions")
        yield positions, got
        return
    for at in range(0, len(positions), _TAKE_TEXTS):
        chunk = positions[at : at + _TAKE_TEXTS]
        yield chunk, texts.take(pa.array(chunk, pa.int64())).to_pylist()


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
    sketches: pa.Table,
    pairs: np.ndarray,
    texts: TextSource,
    cfg: DedupeConfig,
    cached: _Cached | None,
    spill: ShingleSpill | None = None,
) -> VerifiedPairs:
    """:func:`verify` with the previous pairs already placed (:func:`_cached_pairs`), so a caller that needs
    them again places them once; ``spill`` holds the shingle sets of the documents this run sketched."""
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
        exact[todo] = _exact_jaccards(sketches, pairs[todo], texts, cfg, spill)
    estimated = _estimates(sketches, pairs, cfg, spill)
    return VerifiedPairs(pairs, exact, estimated, computed=int(todo.size), reused=reused)


def _estimates(sketches: pa.Table, pairs: np.ndarray, cfg: DedupeConfig, spill: ShingleSpill | None) -> np.ndarray:
    """The MinHash estimate of each pair, :data:`_ESTIMATE_PAIRS` pairs at a time: only those pairs' rows of the
    signatures (the largest column) are read, so the signatures held are bounded rather than one ``num_perm`` row
    per document in any pair (~0.5 KB each, ~200 MB at 1M documents). Rows the run sketched are read from
    ``spill`` by ``pread``: reading them through the sketches' column, a map of the same file, would map their
    pages into the process."""
    out = np.empty(len(pairs), dtype=np.float64)
    column = sketches.column("signature")
    for start in range(0, len(pairs), _ESTIMATE_PAIRS):
        chunk = pairs[start : start + _ESTIMATE_PAIRS]
        rows, local = np.unique(chunk.reshape(-1), return_inverse=True)
        held = spill.held(rows) if spill is not None else np.zeros(len(rows), dtype=bool)
        sig = np.empty((len(rows), cfg.num_perm), dtype=np.uint32)
        if held.any():
            assert spill is not None
            sig[held] = spill.signatures_at(rows[held])
        if not held.all():
            sig[~held] = _fixed_list_numpy(_take_sorted(column, rows[~held]), cfg.num_perm, np.uint32)
        out[start : start + len(chunk)] = _estimated(sig, local.reshape(-1, 2))
    return out


def _windows(costs: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive ranges of items whose ``costs`` sum to at most ``budget`` (a range holds at least one item)."""
    out, start, held = [], 0, 0
    for k, cost in enumerate(costs.tolist()):
        if held + cost > budget and k > start:
            out.append((start, k))
            start, held = k, 0
        held += cost
    out.append((start, len(costs)))
    return out


def _exact_jaccards(
    sketches: pa.Table, pairs: np.ndarray, texts: TextSource, cfg: DedupeConfig, spill: ShingleSpill | None = None
) -> np.ndarray:
    """The exact shingle Jaccard of each pair, holding a bounded number of shingle sets.

    Pairs are taken in windows of their lower ends whose sets, with those of their partners, fit
    :data:`_HELD_SETS_BYTES` (known beforehand from ``n_shingles``). A window gathers the sets of its documents
    (from ``spill`` for documents this run sketched, else shingled from their texts, read in position order and
    checked against their content hashes) and computes its pairs with ``intersect1d`` on the sorted sets. So the
    usual run (one window) shingles no text twice, and memory holds one window's sets whatever the corpus size.
    One call per pair stays: a vectorised form (dense ids by one ``np.unique`` per batch, keys merged as sorted
    runs) measured 3x slower at a few hundred shingles per set, and its transient arrays grew with text size."""
    lo, hi = pairs.min(axis=1), pairs.max(axis=1)
    out = np.empty(len(pairs), dtype=np.float64)
    order = np.lexsort((hi, lo))
    lo_sorted = lo[order]
    firsts = np.flatnonzero(np.r_[True, lo_sorted[1:] != lo_sorted[:-1]])
    n_shingles = sketches.column("n_shingles")
    ends = np.concatenate([lo_sorted[firsts], hi[order]])
    sizes = n_shingles.take(pa.array(ends, pa.int64())).to_numpy().astype(np.int64) * 8 + _SET_OVERHEAD_BYTES
    group_cost = sizes[: len(firsts)] + np.add.reduceat(sizes[len(firsts) :], firsts)
    bounds = np.append(firsts, len(order))
    for a, b in _windows(group_cost, _HELD_SETS_BYTES):
        window = order[bounds[a] : bounds[b]]
        need = np.unique(np.concatenate([lo[window], hi[window]]))
        sets = _sets_of(sketches, need, texts, cfg, spill)
        a_sets, b_sets = np.searchsorted(need, lo[window]).tolist(), np.searchsorted(need, hi[window]).tolist()
        out[window] = [_jaccard(sets[i], sets[j]) for i, j in zip(a_sets, b_sets, strict=True)]
        del sets  # else the next window's sets are gathered while these are still held: twice the budget
    return out


def _sets_of(
    sketches: pa.Table, need: np.ndarray, texts: TextSource, cfg: DedupeConfig, spill: ShingleSpill | None
) -> list[np.ndarray]:
    """The shingle sets of ``need`` (ascending positions), in that order: read from ``spill`` where it holds
    them, else shingled from the texts, each checked against the content hash its sketch recorded."""
    sets: list[np.ndarray | None] = [None] * len(need)
    held = spill.held(need) if spill is not None else np.zeros(len(need), dtype=bool)
    if held.any():
        assert spill is not None
        for k, got in zip(np.flatnonzero(held).tolist(), spill.read_positions(need[held]), strict=True):
            sets[k] = got
    rest = need[~held]
    if rest.size:
        at = pa.array(rest, pa.int64())
        codes = sketches.column("code").take(at).to_pylist()
        hashes = sketches.column("content_hash").take(at).to_pylist()
        slots = np.flatnonzero(~held).tolist()
        hasher = TokenHasher()
        seen = 0
        for rows, got in _text_stream(texts, rest):
            for pos, text in zip(rows.tolist(), got, strict=True):
                code, expected = codes[seen], hashes[seen]
                if _content_hash(text, code) != expected:
                    raise ValueError(
                        f"dedupe: the text given for {sketches.column('source_id')[pos]}/"
                        f"{sketches.column('doc_id')[pos]} (position {pos}) is not the text it was sketched from"
                    )
                sets[slots[seen]] = shingle_set(text, code=code, config=cfg, hasher=hasher)
                seen += 1
        if seen != rest.size:
            raise ValueError(f"dedupe: {seen} texts were read for {rest.size} positions")
    return [s for s in sets if s is not None]
