"""Cross-source exact and near-duplicate removal.

Why this shape:

* **Exact duplicates** are found by a 128-bit hash of the normalised text (NFKC, lowercase, punctuation
  removed, whitespace collapsed; see :mod:`mixassets.engine.text_norm`), so re-encoded or re-spaced copies
  of a page fall together without any sketching.
* **Near duplicates** are found with word 5-gram shingles, MinHash (datasketch, ``MinHash.bulk``) and
  ``MinHashLSH``. LSH only proposes candidates; every candidate is verified by the *exact* Jaccard of the
  two shingle sets, and a document is dropped only when that exact value reaches ``threshold``. The
  MinHash estimate is what the cluster table records in ``estimated_jaccard`` (1.0 for exact matches).
  Because of that verification, false LSH candidates cost only time, while a missed candidate is a
  duplicate left in the corpus; so the LSH bands are chosen for recall (>= 95% at ``threshold``, see
  :func:`lsh_params`) rather than with datasketch's default balance, which finds only ~40% of pairs
  sitting exactly at the threshold and ~70% at threshold + 0.05.
  A document with fewer words than the shingle size is one shingle of all its words.
* **Keeper rule** (deterministic and independent of input row order): of two duplicates the one kept is
  the one with the higher ``source_rank[source_id]`` (the source's trust tier; sources missing from the
  mapping rank 0), then the earlier ``capture_time`` (a missing time loses to any known time), then the
  smaller ``doc_id`` (then ``source_id`` and the text key, which only matter for rows that repeat a
  doc_id).
* **Transitive safety**: documents are processed best-keeper first, and each one is compared only with
  documents already *kept*. So every dropped document names a keeper that is in the output, and a chain
  A~B~C never drops both B and C because of each other. When several kept documents match, the cluster
  row names the one with the highest exact Jaccard (ties: the better keeper).
* A document whose normalised text is empty (e.g. only punctuation) has nothing to compare, so it is kept
  and never used as a keeper: dropping it would be losing a document for no stated reason.

Shingle sets are kept as sorted ``uint64`` arrays (8 bytes per shingle), not Python sets, so verifying
candidates costs a vectorised intersection; 20k documents of 2 KB take about 120 MB beyond the input.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from datasketch import MinHash, MinHashLSH

from mixassets.engine.text_norm import TokenHasher, dedupe_words, ngram_hashes, text_key
from mixassets.schema import DEDUPE_CLUSTER_SCHEMA

REQUIRED_COLUMNS = ("doc_id", "source_id", "text", "capture_time")
_LOW32 = np.uint64(0xFFFFFFFF)
# Documents are sketched in chunks so that MinHash.bulk amortises its set-up while the per-chunk token
# lists (the largest transient structure) stay small.
_CHUNK = 1024
LSH_RECALL_AT_THRESHOLD = 0.95


@dataclass(frozen=True)
class _Prepared:
    key: bytes | None  # exact-duplicate key; None when the normalised text is empty
    shingles: np.ndarray  # sorted unique uint64 shingle hashes


def _check_columns(docs: pa.Table) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in docs.column_names]
    if missing:
        raise ValueError(f"dedupe: input table lacks required column(s) {missing}; got {docs.column_names}")
    for name in ("doc_id", "source_id"):
        nulls = docs.column(name).null_count
        if nulls:
            raise ValueError(f"dedupe: column '{name}' has {nulls} null value(s); every document needs one")


def _capture_micros(docs: pa.Table) -> list[int | None]:
    col = docs.column("capture_time")
    if not pa.types.is_timestamp(col.type):
        raise ValueError(f"dedupe: column 'capture_time' must be a timestamp, got {col.type}")
    return col.cast(pa.timestamp("us", tz=col.type.tz), safe=False).cast(pa.int64()).to_pylist()


def keeper_order(docs: pa.Table, source_rank: Mapping[str, int] | None = None) -> list[int]:
    """Row indices of ``docs``, best keeper first (see the module docstring for the rule)."""
    _check_columns(docs)
    rank = source_rank or {}
    doc_ids = docs.column("doc_id").to_pylist()
    sources = docs.column("source_id").to_pylist()
    times = _capture_micros(docs)
    # The text only breaks ties between rows that repeat a (doc_id, source_id); fetch it for those alone.
    repeats = Counter(zip(doc_ids, sources, strict=True))
    tied = [i for i, ident in enumerate(zip(doc_ids, sources, strict=True)) if repeats[ident] > 1]
    tied_texts = docs.column("text").take(pa.array(tied, type=pa.int64())).to_pylist()
    text_keys = {i: text_key(t or "") for i, t in zip(tied, tied_texts, strict=True)}

    def sort_key(i: int) -> tuple:
        t = times[i]
        return (
            -int(rank.get(sources[i], 0)),
            t is None,
            t if t is not None else 0,
            doc_ids[i],
            sources[i],
            text_keys.get(i, b""),
        )

    return sorted(range(docs.num_rows), key=sort_key)


def lsh_params(threshold: float, num_perm: int, recall: float = LSH_RECALL_AT_THRESHOLD) -> tuple[int, int]:
    """(bands, rows) of the most selective banding that still proposes a pair at ``threshold`` with
    probability >= ``recall``: the widest band, with as many bands as the permutations allow."""
    for rows in range(num_perm // 2, 0, -1):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


def _prepare(texts: Sequence[str | None], ngram: int, hasher: TokenHasher) -> list[_Prepared]:
    out = []
    for text in texts:
        words = dedupe_words(text or "")
        if not words:
            out.append(_Prepared(None, np.empty(0, dtype=np.uint64)))
            continue
        shingles = np.unique(ngram_hashes(hasher.hashes(words), ngram, short_as_one=True))
        out.append(_Prepared(text_key(" ".join(words)), shingles))
    return out


def _chunks(seq: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - inter
    return inter / union if union else 0.0


def dedupe(
    docs: pa.Table,
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    seed: int = 1,
    source_rank: Mapping[str, int] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Drop exact and near duplicates across all sources.

    Returns ``(kept, clusters)``: ``kept`` has the input's schema and row order; ``clusters`` is in
    ``DEDUPE_CLUSTER_SCHEMA`` with one row per dropped document, in keeper order.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"dedupe: threshold must be in (0, 1], got {threshold}")
    if ngram < 1:
        raise ValueError(f"dedupe: ngram must be >= 1, got {ngram}")
    if num_perm < 2:
        raise ValueError(f"dedupe: num_perm must be >= 2, got {num_perm}")
    order = keeper_order(docs, source_rank)
    doc_ids = docs.column("doc_id").to_pylist()
    sources = docs.column("source_id").to_pylist()
    text_col = docs.column("text")

    lsh = MinHashLSH(num_perm=num_perm, params=lsh_params(threshold, num_perm))
    by_key: dict[bytes, int] = {}  # exact key -> kept row
    kept_shingles: dict[int, np.ndarray] = {}
    kept_sketch: dict[int, MinHash] = {}
    rank_of: dict[int, int] = {}  # kept row -> position in keeper order, for tie-breaks
    dropped: list[int] = []
    rows: dict[str, list] = {name: [] for name in DEDUPE_CLUSTER_SCHEMA.names}
    hasher = TokenHasher()

    def add_cluster(row: int, keeper: int, match_type: str, estimate: float) -> None:
        dropped.append(row)
        rows["doc_id"].append(doc_ids[row])
        rows["source_id"].append(sources[row])
        rows["kept_doc_id"].append(doc_ids[keeper])
        rows["kept_source_id"].append(sources[keeper])
        rows["match_type"].append(match_type)
        rows["estimated_jaccard"].append(estimate)

    position = 0
    for chunk in _chunks(order, _CHUNK):
        texts = text_col.take(pa.array(chunk, type=pa.int64())).to_pylist()
        prepared = _prepare(texts, ngram, hasher)
        sketches = MinHash.bulk(
            [(p.shingles & _LOW32).tolist() for p in prepared], num_perm=num_perm, seed=seed, hashfunc=int
        )
        for row, prep, sketch in zip(chunk, prepared, sketches, strict=True):
            position += 1
            if prep.key is None:
                continue
            keeper = by_key.get(prep.key)
            if keeper is not None:
                add_cluster(row, keeper, "exact", 1.0)
                continue
            best: tuple[float, int, int] | None = None  # (-jaccard, keeper position, keeper row)
            for cand in lsh.query(sketch):
                j = _exact_jaccard(prep.shingles, kept_shingles[cand])
                if j >= threshold:
                    option = (-j, rank_of[cand], cand)
                    if best is None or option < best:
                        best = option
            if best is not None:
                keeper = best[2]
                add_cluster(row, keeper, "near", float(sketch.jaccard(kept_sketch[keeper])))
                continue
            by_key[prep.key] = row
            kept_shingles[row] = prep.shingles
            kept_sketch[row] = sketch
            rank_of[row] = position
            lsh.insert(row, sketch, check_duplication=False)

    drop = np.zeros(docs.num_rows, dtype=bool)
    drop[dropped] = True
    kept = docs.filter(pa.array(~drop))
    clusters = pa.Table.from_pydict(rows, schema=DEDUPE_CLUSTER_SCHEMA)
    return kept, clusters
