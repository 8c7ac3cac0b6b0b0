"""Per-document sketches: exact key, shingles, MinHash signature and LSH band hashes.

Why a module: a sketch depends only on a document and the shingling settings, so it is the unit that is
persisted and reused; everything that reads text to make one lives here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache

import numpy as np
import pyarrow as pa

from mixassets.engine.dedupe.config import REQUIRED_COLUMNS, DedupeConfig
from mixassets.engine.dedupe.digest import _with_sketch_set
from mixassets.engine.dedupe.shingle_sets import ShingleSpill
from mixassets.engine.dedupe.tables import (
    _capture_utc,
    _check_columns,
    _fixed_list,
    _in_set,
    _optional_string,
    sketch_schema,
)
from mixassets.engine.text_norm import (
    TokenHasher,
    code_tokens,
    combine_hashes,
    dedupe_words,
    ngram_hashes,
    normalize_key,
    stable_hash64,
    text_key,
)

# Shingles hashed per signature batch: 4k shingles x 128 permutations x 8 bytes = 4 MB of transient memory. At
# 16k (16 MB) the batches took ~1.5x the CPU time on 10k documents; smaller ones pay per-batch overhead again.
_BATCH_SHINGLES = 4_096
_TEXT_CHUNK = 2048
_EMPTY_MIN = np.uint32(0xFFFFFFFF)


def _content_hash(text: str | None, code: bool) -> int:
    return stable_hash64(("code\0" if code else "text\0") + (text or ""))


def _text_chunks(texts: pa.ChunkedArray | pa.Array) -> Iterator[list[str | None]]:
    """The texts as Python strings, ``_TEXT_CHUNK`` at a time: only one chunk is ever materialised."""
    for start in range(0, len(texts), _TEXT_CHUNK):
        yield texts.slice(start, _TEXT_CHUNK).to_pylist()


def _content_hashes(texts: pa.ChunkedArray | pa.Array, codes: np.ndarray) -> pa.UInt64Array:
    """:func:`_content_hash` of every text (``codes``: its shingling mode), chunk by chunk."""
    out = np.empty(len(texts), dtype=np.uint64)
    start = 0
    for chunk in _text_chunks(texts):
        stop = start + len(chunk)
        out[start:stop] = [_content_hash(t, c) for t, c in zip(chunk, codes[start:stop].tolist(), strict=True)]
        start = stop
    return pa.array(out, pa.uint64())


# -- shingles and signatures -----------------------------------------------------------------------------
_EMPTY = np.empty(0, dtype=np.uint64)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` of a small array by sort and mask: numpy 2's hash-based unique costs ~6x more at the few
    hundred values of one document, which made it a fifth of the sketch time."""
    out = np.sort(values)
    if out.size < 2:
        return out
    keep = np.empty(out.size, dtype=bool)
    keep[0] = True
    np.not_equal(out[1:], out[:-1], out=keep[1:])
    return out[keep]


def _shingles_of(tokens: list[str], n: int, hasher: TokenHasher) -> np.ndarray:
    if not tokens:
        return _EMPTY
    return _sorted_unique(ngram_hashes(hasher.hashes(tokens), n, short_as_one=True))


def shingle_set(text: str | None, *, code: bool, config: DedupeConfig, hasher: TokenHasher | None = None) -> np.ndarray:
    """Sorted unique ``uint64`` shingle hashes of a document, as sketching and verification see it."""
    hasher = hasher if hasher is not None else TokenHasher()
    if code:
        return _shingles_of(code_tokens(text or ""), config.code_ngram, hasher)
    return _shingles_of(dedupe_words(text or ""), config.ngram, hasher)


def _default_key_flags(cfg: DedupeConfig) -> bool:
    return cfg.lowercase and cfg.collapse_whitespace and cfg.strip_punctuation and not cfg.strip_digits


def _prepare(text: str | None, code: bool, cfg: DedupeConfig, hasher: TokenHasher) -> tuple[bytes | None, np.ndarray]:
    """(exact key or None, shingle set) of one document; prose with default flags normalises once."""
    text = text or ""
    if not code and _default_key_flags(cfg):
        words = dedupe_words(text)  # normalised once: the key is over normalize(text), their join
        key = text_key(" ".join(words)) if words else None
        return key, _shingles_of(words, cfg.ngram, hasher)
    if code:
        # Operators are content in code: the key is over the code tokens, never punctuation-stripped.
        tokens = code_tokens(text)
        normalized = normalize_key(
            " ".join(tokens), lowercase=cfg.lowercase, strip_punctuation=False, strip_digits=cfg.strip_digits
        )
        shingles = _shingles_of(tokens, cfg.code_ngram, hasher)
    else:
        normalized = normalize_key(
            text,
            lowercase=cfg.lowercase,
            collapse_whitespace=cfg.collapse_whitespace,
            strip_punctuation=cfg.strip_punctuation,
            strip_digits=cfg.strip_digits,
        )
        shingles = shingle_set(text, code=False, config=cfg, hasher=hasher)
    return (text_key(normalized) if normalized else None), shingles


@lru_cache(maxsize=16)
def _permutations(seed: int, num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """Multiply-shift parameters (odd a, any b) per permutation, from BLAKE2b so every run agrees."""
    a = np.array([stable_hash64(f"mixtrain.minhash.a.{seed}.{k}") | 1 for k in range(num_perm)], dtype=np.uint64)
    b = np.array([stable_hash64(f"mixtrain.minhash.b.{seed}.{k}") for k in range(num_perm)], dtype=np.uint64)
    return a, b


def signatures(shingle_sets: Sequence[np.ndarray], config: DedupeConfig) -> np.ndarray:
    """``(len(shingle_sets), num_perm)`` ``uint32`` MinHash signatures; an empty set gets all-max values.

    Permutation k maps a shingle hash x to the top 32 bits of ``a_k * x + b_k mod 2**64`` (multiply-shift,
    a universal family), and a batch of documents is hashed as one ``outer`` product and reduced per
    document with ``minimum.reduceat``.
    """
    a, b = _permutations(config.seed, config.num_perm)
    out = np.full((len(shingle_sets), config.num_perm), _EMPTY_MIN, dtype=np.uint32)
    live = [i for i, s in enumerate(shingle_sets) if s.size]
    start = 0
    while start < len(live):
        stop, total = start, 0
        while stop < len(live) and (stop == start or total + shingle_sets[live[stop]].size <= _BATCH_SHINGLES):
            total += shingle_sets[live[stop]].size
            stop += 1
        batch = live[start:stop]
        sizes = np.array([shingle_sets[i].size for i in batch])
        x = np.concatenate([shingle_sets[i] for i in batch])
        h = np.multiply.outer(a, x)  # (num_perm, shingles): reduceat runs along contiguous memory
        h += b[:, None]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        # The shift is monotone, so the minimum of the top 32 bits is the top 32 bits of the minimum: shifting
        # the (num_perm, documents) minima instead of every hash saves a pass over the largest array.
        out[batch] = (np.minimum.reduceat(h, offsets, axis=1) >> np.uint64(32)).T
        start = stop
    return out


def band_hashes(signature: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``(n, bands)`` ``uint64`` LSH band keys: band k hashes signature values k*rows .. (k+1)*rows-1."""
    n = signature.shape[0]
    return combine_hashes(signature[:, : bands * rows].reshape(n, bands, rows))


def sketch(
    docs: pa.Table,
    config: DedupeConfig | None = None,
    *,
    code_sources: Sequence[str] | set[str] | frozenset[str] = frozenset(),
    content_hashes: pa.UInt64Array | pa.ChunkedArray | None = None,
) -> pa.Table:
    """One :func:`sketch_schema` row per document of ``docs``, in row order.

    Needs ``doc_id``, ``source_id``, ``text`` and ``capture_time``; ``license`` and ``domain`` are carried
    when present (null otherwise). Documents of ``code_sources`` are shingled as code tokens.
    ``content_hashes`` (aligned with ``docs``) are hashes a caller already computed, so a text is not hashed
    twice; a null entry is computed here. The schema metadata records the sketch-set digest, which lets a
    later run tell whether verified pairs were made for exactly these sketches without re-hashing them.

    Texts are read, shingled and signed a chunk at a time and each chunk's shingle sets are dropped once
    its signatures are made, so memory holds one chunk of texts and sets besides the output.
    """
    _check_columns(docs)
    return sketch_streamed(
        docs, [docs.column("text")], config, code_sources=code_sources, content_hashes=content_hashes
    )


def sketch_streamed(
    meta: pa.Table,
    texts: Iterable[pa.Array | pa.ChunkedArray],
    config: DedupeConfig | None = None,
    *,
    code_sources: Sequence[str] | set[str] | frozenset[str] = frozenset(),
    content_hashes: pa.UInt64Array | pa.ChunkedArray | None = None,
    spill: ShingleSpill | None = None,
) -> pa.Table:
    """:func:`sketch` of documents whose texts come apart from the other columns: ``meta`` holds every column
        but ``text`` (one row per document), ``texts`` their texts in row order, in pieces of any size (a corpus read
        back batch by batch). The output is filled piece by piece, so memory holds one piece of texts. With ``spill``,
    each document's shingle set and signature are also appended to it (slot k = row k), so verification need not
    shingle the text again, and the output's signature column is the spill's map of them
    (:meth:`~mixassets.engine.dedupe.shingle_sets.ShingleSpill.signature_column`): no signature stays in memory."""
    cfg = config or DedupeConfig()
    _check_columns(meta, [c for c in REQUIRED_COLUMNS if c != "text"])
    schema = sketch_schema(cfg)
    bands, rows = cfg.banding
    n = meta.num_rows
    if content_hashes is not None and len(content_hashes) != n:
        raise ValueError(f"dedupe: {len(content_hashes)} content hashes given for {n} documents")
    codes = _in_set(meta.column("source_id"), code_sources)
    hasher = TokenHasher()
    # Exact keys as one small Arrow array per chunk: a list of a million 16-byte ``bytes`` objects would hold
    # ~70 bytes a document for the whole pass, four times the keys themselves.
    key_parts: list[pa.Array] = []
    hashes = np.empty(n, dtype=np.uint64)
    sizes = np.empty(n, dtype=np.int32)
    sig = np.empty((n if spill is None else 0, cfg.num_perm), dtype=np.uint32)
    band = np.empty((n, bands), dtype=np.uint64)
    start = 0
    for piece in texts:
        if start + len(piece) > n:
            raise ValueError(f"dedupe: more texts than the {n} documents to sketch")
        for chunk in _text_chunks(piece):
            stop = start + len(chunk)
            chunk_codes = codes[start:stop].tolist()
            known = (
                [None] * len(chunk) if content_hashes is None else content_hashes.slice(start, len(chunk)).to_pylist()
            )
            sets: list[np.ndarray] = []
            keys: list[bytes | None] = []
            for k, (text, code) in enumerate(zip(chunk, chunk_codes, strict=True)):
                key, shingles = _prepare(text, code, cfg, hasher)
                keys.append(key)
                sets.append(shingles)
                hashes[start + k] = _content_hash(text, code) if known[k] is None else known[k]
            key_parts.append(pa.array(keys, pa.binary(16)))
            sizes[start:stop] = [s.size for s in sets]
            chunk_sig = signatures(sets, cfg)
            if spill is None:
                sig[start:stop] = chunk_sig
            else:
                spill.append(sets, chunk_sig)
            band[start:stop] = band_hashes(chunk_sig, bands, rows)
            start = stop
    if start != n:
        raise ValueError(f"dedupe: {start} texts given for {n} documents to sketch")
    band[sizes == 0] = 0  # documents without shingles are never indexed; keep their bytes deterministic
    columns = {
        "doc_id": meta.column("doc_id").cast(pa.string()),
        "source_id": meta.column("source_id").cast(pa.string()),
        "domain": _optional_string(meta, "domain"),
        "license": _optional_string(meta, "license"),
        "capture_time": _capture_utc(meta),
        "code": pa.array(codes, pa.bool_()),
        "content_hash": pa.array(hashes, pa.uint64()),
        "exact_key": pa.concat_arrays(key_parts) if key_parts else pa.array([], pa.binary(16)),
        "n_shingles": pa.array(sizes, pa.int32()),
        "bands": _fixed_list(band, pa.uint64()),
        "signature": _fixed_list(sig, pa.uint32())
        if spill is None
        else spill.signature_column(cfg.num_perm, mapped=True),
    }
    return _with_sketch_set(pa.table(columns, schema=schema))
