"""Cross-source exact and near-duplicate removal: sketch -> band index -> verify -> resolve.

Why this shape:

* **Sketches are per document and persistable.** :func:`sketch` turns a table of documents into one row
  per document (:func:`sketch_schema`): the exact-duplicate key, a MinHash signature, its LSH band hashes
  and the metadata the keeper rule needs. A sketch depends only on the document and on the shingling
  parameters (recorded in the schema metadata), so a new or changed source is sketched alone and every
  other source's sketches are reused (:func:`dedupe_incremental`).
* **Exact duplicates** share a 128-bit key of the normalised text (NFKC always; lowercase, whitespace
  collapse, punctuation and digit stripping per :class:`DedupeConfig`), so re-encoded or re-spaced copies
  fall together without any sketching. For code sources the key is over the code tokens with punctuation
  kept (``a + b`` and ``a - b`` are different programs); the other flags apply.
* **Near duplicates.** Prose is shingled on word n-grams (``ngram``) of
  :func:`~mixassets.engine.text_norm.dedupe_words`; code sources on n-grams (``code_ngram``) of identifier,
  number and operator tokens (:func:`~mixassets.engine.text_norm.code_tokens`), where renamed words matter
  less than operators. A document with fewer tokens than n is one shingle of all its tokens. Signatures
  use numpy multiply-shift universal hashing over the ``uint64`` shingle hashes, ``num_perm`` at a time
  (datasketch's ``MinHash.bulk`` does the same arithmetic per document with a modulo and is slower).
  The :class:`~mixassets.engine.band_index.BandIndex` proposes pairs sharing a band. Bands are chosen for
  recall (>= 95% at the lowest configured threshold, :func:`lsh_params`) because **every candidate is
  verified by the exact Jaccard of the two shingle sets** before anything is dropped: a false candidate
  costs time, a missed one leaves a duplicate. Shingles are recomputed from text only for documents that
  appear in a candidate pair.
* **Thresholds.** A document's threshold is its source's override, else its domain's, else ``threshold``;
  a pair is a near duplicate when its exact Jaccard reaches the *larger* of its two documents' thresholds,
  so a strict source is never merged more loosely because its partner's source is lax.
* **Keeper rule** (deterministic, independent of row order), ``keeper_rule`` in order, default: the more
  permissive license first (public-domain-like < attribution < share-alike < non-commercial / no-derivatives
  / research-only / partner-only < unknown, from :mod:`mixassets.engine.licenses`, the best alternative of
  an ``OR``), the higher trust tier (``trust[source_id]``, missing = 0), the earlier ``capture_time``
  (missing last), the smaller ``doc_id``; then ``doc_id``, ``source_id`` and a hash of the text, which only
  matter for rows that repeat an id.
* **Resolution** (:func:`resolve`) walks documents best keeper first. A document is compared only with
  the *keepers* found so far: an exact-key match wins, else the verified near match with the highest exact
  Jaccard (ties: the better keeper). So a dropped document always names a keeper that is in the output,
  and a chain A~B~C never drops both B and C because of each other. ``max_per_cluster`` lets a source or
  domain keep up to N members of a cluster (keeper included if it is of that source/domain); those rows
  say ``kept_capped``. Capped members stay in the corpus but are not keepers, so clusters never chain
  through them.
* A document whose normalised text is empty has no key and no shingles: it is kept and never used as a
  keeper, since dropping it would be losing a document for no stated reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from types import MappingProxyType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.band_index import BandIndex
from mixassets.engine.licenses import (
    ATTRIBUTION_REQUIRED,
    COMMERCIAL_OK,
    NO_DERIVATIVES,
    NON_COMMERCIAL,
    PARTNER_ONLY,
    RESEARCH_ONLY,
    SHAREALIKE,
    LicenseError,
    license_alternatives,
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
from mixtrain.schema import DEDUPE_CLUSTER_SCHEMA

__all__ = [
    "KEEPER_CRITERIA",
    "SKETCH_PARQUET_OPTIONS",
    "SKETCH_SCHEMA",
    "VERIFIED_PAIR_SCHEMA",
    "DedupeConfig",
    "DedupeResult",
    "DedupeStats",
    "TextSource",
    "VerifiedPairs",
    "band_hashes",
    "band_index",
    "dedupe",
    "dedupe_incremental",
    "keeper_order",
    "license_rank",
    "lsh_params",
    "resolve",
    "shingle_set",
    "signatures",
    "sketch",
    "sketch_schema",
    "verify",
]

REQUIRED_COLUMNS = ("doc_id", "source_id", "text", "capture_time")
LSH_RECALL_AT_THRESHOLD = 0.95
KEEPER_CRITERIA = ("license", "trust_tier", "capture_time", "doc_id")
_META_FINGERPRINT = b"mixtrain.dedupe.fingerprint"
_META_BANDING = b"mixtrain.dedupe.banding"
_META_SKETCH_SET = b"mixtrain.dedupe.sketch_set"
# Shingles hashed per signature batch: 16k shingles x 128 permutations x 8 bytes = 16 MB of transient memory.
_BATCH_SHINGLES = 16_384
_TEXT_CHUNK = 2048
_EMPTY_MIN = np.uint32(0xFFFFFFFF)
_RESTRICTIVE = frozenset({NON_COMMERCIAL, NO_DERIVATIVES, RESEARCH_ONLY, PARTNER_ONLY})
_UNKNOWN_LICENSE = 4
# Above this many runs of consecutive reused rows, a refresh gathers its sketches with one take instead of slices.
_MAX_SLICES = 64
# Input rows per batch of kept rows handed to a writer: ~30 MB of text at ~2 KB/doc.
_KEPT_BATCH_ROWS = 16_384


def lsh_params(threshold: float, num_perm: int, recall: float = LSH_RECALL_AT_THRESHOLD) -> tuple[int, int]:
    """(bands, rows) of the most selective banding that still proposes a pair at ``threshold`` with
    probability >= ``recall``: the widest band, with as many bands as the permutations allow."""
    for rows in range(num_perm // 2, 0, -1):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


def _frozen_map(value: Mapping | None) -> Mapping:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class DedupeConfig:
    """Engine-side dedupe settings (the project's pydantic ``DedupeSpec`` maps onto this).

    ``source_threshold`` / ``domain_threshold`` override ``threshold`` per document (source first); a pair's
    threshold is the larger of its two documents'. ``max_per_cluster`` maps a source id or a domain (source
    first) to how many members of one cluster of that source/domain may stay; 1, the default, keeps only
    the keeper. The normalisation flags define the exact-duplicate key only; shingles always use
    :func:`~mixassets.engine.text_norm.dedupe_words` (prose) or ``code_tokens`` (code sources).
    """

    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 5
    code_ngram: int = 7
    seed: int = 1
    lowercase: bool = True
    collapse_whitespace: bool = True
    strip_punctuation: bool = True
    strip_digits: bool = False
    source_threshold: Mapping[str, float] = field(default_factory=dict)
    domain_threshold: Mapping[str, float] = field(default_factory=dict)
    max_per_cluster: Mapping[str, int] = field(default_factory=dict)
    keeper_rule: tuple[str, ...] = KEEPER_CRITERIA

    def __post_init__(self) -> None:
        for name in ("source_threshold", "domain_threshold", "max_per_cluster"):
            object.__setattr__(self, name, _frozen_map(getattr(self, name)))
        object.__setattr__(self, "keeper_rule", tuple(self.keeper_rule))
        thresholds = {"threshold": self.threshold}
        thresholds.update({f"source_threshold[{k}]": v for k, v in self.source_threshold.items()})
        thresholds.update({f"domain_threshold[{k}]": v for k, v in self.domain_threshold.items()})
        for name, value in thresholds.items():
            if not 0.0 < float(value) <= 1.0:
                raise ValueError(f"dedupe: {name} must be in (0, 1], got {value}")
        if self.ngram < 1 or self.code_ngram < 1:
            raise ValueError(f"dedupe: ngram and code_ngram must be >= 1, got {self.ngram}, {self.code_ngram}")
        if self.num_perm < 2:
            raise ValueError(f"dedupe: num_perm must be >= 2, got {self.num_perm}")
        bad_caps = {k: v for k, v in self.max_per_cluster.items() if int(v) < 1}
        if bad_caps:
            raise ValueError(f"dedupe: max_per_cluster values must be >= 1, got {bad_caps}")
        unknown = [c for c in self.keeper_rule if c not in KEEPER_CRITERIA]
        if unknown or len(set(self.keeper_rule)) != len(self.keeper_rule):
            raise ValueError(
                f"dedupe: keeper_rule must list distinct criteria from {KEEPER_CRITERIA}, got {self.keeper_rule}"
            )

    @property
    def banding(self) -> tuple[int, int]:
        """(bands, rows) for the lowest threshold any pair can have, so every pair gets the recall target."""
        lowest = min([self.threshold, *self.source_threshold.values(), *self.domain_threshold.values()])
        return lsh_params(lowest, self.num_perm)

    def fingerprint(self) -> str:
        """The settings a sketch depends on; sketches with another fingerprint cannot be compared."""
        return json.dumps(
            {
                "version": 1,
                "num_perm": self.num_perm,
                "seed": self.seed,
                "ngram": self.ngram,
                "code_ngram": self.code_ngram,
                "lowercase": self.lowercase,
                "collapse_whitespace": self.collapse_whitespace,
                "strip_punctuation": self.strip_punctuation,
                "strip_digits": self.strip_digits,
            },
            sort_keys=True,
        )

    def threshold_for(self, source_id: str, domain: str | None) -> float:
        if source_id in self.source_threshold:
            return float(self.source_threshold[source_id])
        if domain is not None and domain in self.domain_threshold:
            return float(self.domain_threshold[domain])
        return float(self.threshold)

    def cap_for(self, source_id: str, domain: str | None) -> tuple[int, str, str]:
        """(cap, "source"|"domain", value) for a document; cap 1 (keeper only) when no entry applies."""
        if source_id in self.max_per_cluster:
            return int(self.max_per_cluster[source_id]), "source", source_id
        if domain is not None and domain in self.max_per_cluster:
            return int(self.max_per_cluster[domain]), "domain", domain
        return 1, "source", source_id


# -- schemas -------------------------------------------------------------------------------------------
def sketch_schema(config: DedupeConfig | None = None) -> pa.Schema:
    """Schema of :func:`sketch` tables for ``config`` (list widths follow ``num_perm`` and the banding)."""
    cfg = config or DedupeConfig()
    bands, rows = cfg.banding
    return pa.schema(
        [
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("source_id", pa.string(), nullable=False),
            pa.field("domain", pa.string()),
            pa.field("license", pa.string()),
            pa.field("capture_time", pa.timestamp("us", tz="UTC")),
            pa.field("code", pa.bool_(), nullable=False),  # shingled as code tokens
            pa.field("content_hash", pa.uint64(), nullable=False),  # text + code flag: what verification depends on
            pa.field("exact_key", pa.binary(16)),  # null when the normalised text is empty
            pa.field("n_shingles", pa.int32(), nullable=False),
            pa.field("bands", pa.list_(pa.uint64(), bands), nullable=False),
            pa.field("signature", pa.list_(pa.uint32(), cfg.num_perm), nullable=False),
        ],
        metadata={_META_FINGERPRINT: cfg.fingerprint().encode(), _META_BANDING: f"{bands},{rows}".encode()},
    )


SKETCH_SCHEMA = sketch_schema()

# Parquet write options for sketch tables. The hash columns are random bits: dictionary encoding always
# falls back and compression gains ~1%, yet zstd-decoding them is most of a refresh's read time (~45 ms of
# ~120 ms CPU at 100k docs); ids and metadata keep dictionaries and zstd. Any encoding reads back the same.
_RANDOM_COLUMNS = ("content_hash", "exact_key", "bands.list.element", "signature.list.element")
SKETCH_PARQUET_OPTIONS: Mapping[str, object] = MappingProxyType(
    {
        "compression": {
            **{c: "zstd" for c in ("doc_id", "source_id", "domain", "license", "capture_time", "code", "n_shingles")},
            **dict.fromkeys(_RANDOM_COLUMNS, "none"),
        },
        "use_dictionary": ["doc_id", "source_id", "domain", "license"],
        "write_statistics": ["doc_id", "source_id", "capture_time"],
        "store_schema": True,
    }
)

# Every candidate pair that was verified (also those below any threshold), so a later run reuses the
# value instead of recomputing it. a/b ordered by (source_id, doc_id); the content hashes make a pair
# stale as soon as either document's text (or its code/prose shingling) changes.
VERIFIED_PAIR_SCHEMA = pa.schema(
    [
        pa.field("a_source_id", pa.string(), nullable=False),
        pa.field("a_doc_id", pa.string(), nullable=False),
        pa.field("a_content_hash", pa.uint64(), nullable=False),
        pa.field("b_source_id", pa.string(), nullable=False),
        pa.field("b_doc_id", pa.string(), nullable=False),
        pa.field("b_content_hash", pa.uint64(), nullable=False),
        pa.field("exact_jaccard", pa.float64(), nullable=False),
        pa.field("estimated_jaccard", pa.float64(), nullable=False),
    ]
)


# -- documents in ----------------------------------------------------------------------------------------
def _check_columns(docs: pa.Table, required: Sequence[str] = REQUIRED_COLUMNS) -> None:
    missing = [c for c in required if c not in docs.column_names]
    if missing:
        raise ValueError(f"dedupe: input table lacks required column(s) {missing}; got {docs.column_names}")
    for name in ("doc_id", "source_id"):
        nulls = docs.column(name).null_count
        if nulls:
            raise ValueError(f"dedupe: column '{name}' has {nulls} null value(s); every document needs one")
    col = docs.column("capture_time")
    if not pa.types.is_timestamp(col.type):
        raise ValueError(f"dedupe: column 'capture_time' must be a timestamp, got {col.type}")


def _capture_utc(docs: pa.Table) -> pa.ChunkedArray:
    col = docs.column("capture_time")
    return col.cast(pa.timestamp("us", tz=col.type.tz), safe=False).cast(pa.timestamp("us", tz="UTC"))


def _optional_string(docs: pa.Table, name: str) -> pa.ChunkedArray:
    if name in docs.column_names:
        return docs.column(name).cast(pa.string())
    return pa.chunked_array([pa.nulls(docs.num_rows, pa.string())])


def _in_set(sources: pa.ChunkedArray | pa.Array, members: Collection[str]) -> np.ndarray:
    """Mask of the rows whose source id is one of ``members`` (code sources, unchanged sources)."""
    if not members or len(sources) == 0:
        return np.zeros(len(sources), dtype=bool)
    return pc.is_in(sources, value_set=pa.array(sorted(members), pa.string())).to_numpy(zero_copy_only=False)


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


def _shingles_of(tokens: list[str], n: int, hasher: TokenHasher) -> np.ndarray:
    if not tokens:
        return _EMPTY
    return np.unique(ngram_hashes(hasher.hashes(tokens), n, short_as_one=True))


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
        words = dedupe_words(text)
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
        h >>= np.uint64(32)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        out[batch] = np.minimum.reduceat(h, offsets, axis=1).T
        start = stop
    return out


def band_hashes(signature: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``(n, bands)`` ``uint64`` LSH band keys: band k hashes signature values k*rows .. (k+1)*rows-1."""
    n = signature.shape[0]
    return combine_hashes(signature[:, : bands * rows].reshape(n, bands, rows))


def _fixed_list(values: np.ndarray, value_type: pa.DataType) -> pa.FixedSizeListArray:
    width = values.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=value_type), width)


def _fixed_list_numpy(column: pa.ChunkedArray | pa.Array, width: int, dtype: type) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(arr) == 0:
        return np.empty((0, width), dtype=dtype)
    return arr.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(-1, width)


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
    cfg = config or DedupeConfig()
    _check_columns(docs)
    schema = sketch_schema(cfg)
    bands, rows = cfg.banding
    n = docs.num_rows
    if content_hashes is not None and len(content_hashes) != n:
        raise ValueError(f"dedupe: {len(content_hashes)} content hashes given for {n} documents")
    codes = _in_set(docs.column("source_id"), code_sources)
    hasher = TokenHasher()
    keys: list[bytes | None] = []
    hashes = np.empty(n, dtype=np.uint64)
    sizes = np.empty(n, dtype=np.int32)
    sig = np.empty((n, cfg.num_perm), dtype=np.uint32)
    band = np.empty((n, bands), dtype=np.uint64)
    start = 0
    for chunk in _text_chunks(docs.column("text")):
        stop = start + len(chunk)
        chunk_codes = codes[start:stop].tolist()
        known = [None] * len(chunk) if content_hashes is None else content_hashes.slice(start, len(chunk)).to_pylist()
        sets: list[np.ndarray] = []
        for k, (text, code) in enumerate(zip(chunk, chunk_codes, strict=True)):
            key, shingles = _prepare(text, code, cfg, hasher)
            keys.append(key)
            sets.append(shingles)
            hashes[start + k] = _content_hash(text, code) if known[k] is None else known[k]
        sizes[start:stop] = [s.size for s in sets]
        sig[start:stop] = signatures(sets, cfg)
        band[start:stop] = band_hashes(sig[start:stop], bands, rows)
        start = stop
    band[sizes == 0] = 0  # documents without shingles are never indexed; keep their bytes deterministic
    columns = {
        "doc_id": docs.column("doc_id").cast(pa.string()),
        "source_id": docs.column("source_id").cast(pa.string()),
        "domain": _optional_string(docs, "domain"),
        "license": _optional_string(docs, "license"),
        "capture_time": _capture_utc(docs),
        "code": pa.array(codes, pa.bool_()),
        "content_hash": pa.array(hashes, pa.uint64()),
        "exact_key": pa.array(keys, pa.binary(16)),
        "n_shingles": pa.array(sizes, pa.int32()),
        "bands": _fixed_list(band, pa.uint64()),
        "signature": _fixed_list(sig, pa.uint32()),
    }
    return _with_sketch_set(pa.table(columns, schema=schema))


def _check_sketches(sketches: pa.Table, cfg: DedupeConfig, what: str = "sketches") -> None:
    meta = sketches.schema.metadata or {}
    got = meta.get(_META_FINGERPRINT, b"").decode()
    if got != cfg.fingerprint():
        raise ValueError(
            f"dedupe: {what} were made with settings {got or '<none>'}, the config needs {cfg.fingerprint()}; "
            "re-sketch them"
        )
    missing = [f.name for f in SKETCH_SCHEMA if f.name not in sketches.column_names]
    if missing:
        raise ValueError(f"dedupe: {what} lack column(s) {missing}")


def _banding_of(sketches: pa.Table) -> tuple[int, int]:
    raw = (sketches.schema.metadata or {}).get(_META_BANDING, b"0,0").decode()
    bands, rows = (int(x) for x in raw.split(","))
    return bands, rows


def _signature_matrix(sketches: pa.Table, cfg: DedupeConfig) -> np.ndarray:
    return _fixed_list_numpy(sketches.column("signature"), cfg.num_perm, np.uint32)


def _exact_groups(sketches: pa.Table) -> np.ndarray:
    """Dense id per distinct exact key, -1 where there is none."""
    keys = sketches.column("exact_key").combine_chunks()
    if len(keys) == 0:
        return np.empty(0, dtype=np.int64)
    encoded = pc.dictionary_encode(keys).indices
    return pc.fill_null(encoded.cast(pa.int64()), -1).to_numpy(zero_copy_only=False)


def band_index(sketches: pa.Table, config: DedupeConfig | None = None) -> BandIndex:
    """The band index of concatenated sketch tables (position i = row i).

    Sketches banded differently from ``config`` (e.g. a lower threshold was configured since) are rebanded
    from their stored signatures; no text is needed for that.
    """
    cfg = config or DedupeConfig()
    _check_sketches(sketches, cfg)
    matrix = _fixed_list_numpy(_reband(sketches, cfg).column("bands"), cfg.banding[0], np.uint64)
    return BandIndex(matrix, active=sketches.column("n_shingles").to_numpy() > 0)


def _pairs_touching(sketches: pa.Table, is_new: np.ndarray, cfg: DedupeConfig) -> np.ndarray:
    """Candidate pairs with at least one ``is_new`` row, without sorting the whole corpus's band hashes: a row
    can pair with a new row only if it shares a band hash with one, which a hash lookup per band finds in linear
    time; the band index is then built over those few rows alone. Same pairs as
    ``band_index(sketches).candidate_pairs(touching=is_new)``."""
    if not is_new.any():
        return np.empty((0, 2), dtype=np.int64)
    matrix = _fixed_list_numpy(_reband(sketches, cfg).column("bands"), cfg.banding[0], np.uint64)
    active = sketches.column("n_shingles").to_numpy() > 0
    new_active = is_new & active
    near = new_active.copy()
    for band in range(matrix.shape[1]):
        column = pa.array(matrix[:, band])
        near |= pc.is_in(column, value_set=pa.array(matrix[new_active, band])).to_numpy(zero_copy_only=False)
    subset = np.flatnonzero(near & active)
    pairs = BandIndex(matrix[subset]).candidate_pairs(touching=is_new[subset])
    return subset[pairs] if len(pairs) else np.empty((0, 2), dtype=np.int64)


# -- keeper order ------------------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def license_rank(expr: str | None) -> int:
    """0 public-domain-like, 1 attribution, 2 share-alike, 3 restricted use, 4 unknown; lower is kept first.

    The rank of an ``OR`` expression is that of its best alternative: the licensee may pick it.
    """
    try:
        alternatives = license_alternatives(expr)
    except LicenseError:
        return _UNKNOWN_LICENSE
    if not alternatives:
        return _UNKNOWN_LICENSE
    return min(_tags_rank(tags) for tags in alternatives)


def _tags_rank(tags: frozenset[str]) -> int:
    if tags & _RESTRICTIVE:
        return 3
    if SHAREALIKE in tags:
        return 2
    if ATTRIBUTION_REQUIRED in tags:
        return 1
    if COMMERCIAL_OK in tags:
        return 0
    return _UNKNOWN_LICENSE


def _keeper_positions(meta: pa.Table, cfg: DedupeConfig, trust: Mapping[str, int] | None) -> np.ndarray:
    """Row positions of ``meta`` (sketch-like columns), best keeper first."""
    n = meta.num_rows
    if n == 0:
        return np.empty(0, dtype=np.int64)
    sources = meta.column("source_id")
    capture = meta.column("capture_time").cast(pa.int64())
    columns: dict[str, pa.Array | pa.ChunkedArray | np.ndarray] = {}
    sort_keys: list[tuple[str, str]] = []
    for criterion in cfg.keeper_rule:
        if criterion == "license":
            licenses = meta.column("license").combine_chunks().dictionary_encode()
            ranks_of = pa.array(
                [license_rank(x) for x in licenses.dictionary.to_pylist()] + [_UNKNOWN_LICENSE], pa.int8()
            )
            codes = pc.fill_null(licenses.indices.cast(pa.int32()), len(licenses.dictionary))
            columns["license"] = pc.take(ranks_of, codes)
            sort_keys.append(("license", "ascending"))
        elif criterion == "trust_tier":
            ranks = trust or {}
            distinct = pc.unique(sources).to_pylist()
            tier = pa.array([int(ranks.get(s, 0)) for s in distinct], pa.int64())
            columns["trust"] = pc.take(tier, pc.index_in(sources, value_set=pa.array(distinct, pa.string())))
            sort_keys.append(("trust", "descending"))
        elif criterion == "capture_time":
            columns["time_missing"] = pc.is_null(capture)
            columns["time"] = pc.fill_null(capture, 0)
            sort_keys += [("time_missing", "ascending"), ("time", "ascending")]
        else:
            sort_keys.append(("doc_id", "ascending"))
    columns.update({"doc_id": meta.column("doc_id"), "source_id": sources, "content_hash": meta.column("content_hash")})
    sort_keys += [("doc_id", "ascending"), ("source_id", "ascending"), ("content_hash", "ascending")]
    seen: set[str] = set()
    unique_keys = [k for k in sort_keys if not (k[0] in seen or seen.add(k[0]))]
    table = pa.table({k: (pa.array(v) if isinstance(v, np.ndarray) else v) for k, v in columns.items()})
    return pc.sort_indices(table, sort_keys=unique_keys).to_numpy()


def keeper_order(
    docs: pa.Table,
    source_rank: Mapping[str, int] | None = None,
    *,
    config: DedupeConfig | None = None,
    code_sources: Sequence[str] | set[str] | frozenset[str] = frozenset(),
) -> list[int]:
    """Row indices of ``docs`` (documents or sketches), best keeper first (see the module docstring)."""
    cfg = config or DedupeConfig()
    if "content_hash" in docs.column_names:
        meta = docs
    else:
        _check_columns(docs)
        codes = _in_set(docs.column("source_id"), code_sources)
        meta = pa.table(
            {
                "doc_id": docs.column("doc_id"),
                "source_id": docs.column("source_id"),
                "license": _optional_string(docs, "license"),
                "capture_time": _capture_utc(docs),
                "content_hash": _content_hashes(docs.column("text"), codes),
            }
        )
    return _keeper_positions(meta, cfg, source_rank).tolist()


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


def _row_keys(
    sources: pa.ChunkedArray | pa.Array, docs: pa.ChunkedArray | pa.Array, hashes: pa.ChunkedArray | pa.Array
) -> pa.ChunkedArray | pa.Array:
    """One string per row identifying a document *version*: source, doc id and content hash."""
    return pc.binary_join_element_wise(sources, docs, pc.cast(hashes, pa.string()), "\x1f")


def _splitmix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _string_hashes(strings: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A ``uint64`` per string, computed over the Arrow data buffer with numpy (a polynomial over the bytes,
    then splitmix64): one vectorised pass instead of a hash call per row. Only for digests of ids."""
    arr = strings.combine_chunks() if isinstance(strings, pa.ChunkedArray) else strings
    arr = arr.cast(pa.large_binary())
    m = len(arr)
    if m == 0:
        return np.empty(0, dtype=np.uint64)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + m + 1]
    lengths = np.diff(offsets)
    out = lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    if offsets[-1] > offsets[0]:
        data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].astype(np.uint64)
        starts = offsets[:-1] - offsets[0]
        within = np.arange(data.size, dtype=np.int64) - np.repeat(starts, lengths)
        powers = np.empty(int(lengths.max()), dtype=np.uint64)
        powers[0] = 1
        with np.errstate(over="ignore"):
            for k in range(1, powers.size):
                powers[k] = powers[k - 1] * np.uint64(0x100000001B3)
        terms = (data + np.uint64(1)) * powers[within]
        live = lengths > 0
        out[live] += np.add.reduceat(terms, starts[live])
    return _splitmix(out)


_DIGEST_MOD = 1 << 64


def _digest_lanes(sketches: pa.Table) -> tuple[int, int]:
    """The two lane sums of :func:`_sketch_set_digest` (each modulo 2**64)."""
    if sketches.num_rows == 0:
        return 0, 0
    src = _string_hashes(sketches.column("source_id"))
    doc = _string_hashes(sketches.column("doc_id"))
    content = sketches.column("content_hash").to_numpy().astype(np.uint64, copy=False)
    with np.errstate(over="ignore"):
        row = _splitmix(_splitmix(src ^ np.uint64(0x51ED270B27B3F0A1)) + doc * np.uint64(0x9E3779B97F4A7C15))
        row = _splitmix(row + content * np.uint64(0xD6E8FEB86659FD93))
        lane_a = int(np.add.reduce(row, dtype=np.uint64))
        lane_b = int(np.add.reduce(_splitmix(row ^ np.uint64(0xA0761D6478BD642F)), dtype=np.uint64))
    return lane_a, lane_b


def _format_digest(n: int, lanes: tuple[int, int]) -> str:
    return f"v2:{n}:{lanes[0] % _DIGEST_MOD:016x}{lanes[1] % _DIGEST_MOD:016x}"


def _parse_digest(digest: str, n: int) -> tuple[int, int] | None:
    """The lanes of a current-format digest recorded for ``n`` rows; None for any other string."""
    prefix = f"v2:{n}:"
    hexes = digest[len(prefix) :]
    if not digest.startswith(prefix) or len(hexes) != 32:
        return None
    try:
        return int(hexes[:16], 16), int(hexes[16:], 16)
    except ValueError:
        return None


def _sketch_set_digest(sketches: pa.Table) -> str:
    """Order-independent digest of which document versions a set of sketches holds: a sum, modulo 2**64, of a
    hash of each row's (source_id, doc_id, content_hash), in two independent lanes (128 bits). Computed with
    numpy over the id buffers, so it costs milliseconds at 100k rows and needs no sort; being a sum, a refresh
    updates it by the rows that left and came (:func:`_assemble`) instead of hashing every id again."""
    return _format_digest(sketches.num_rows, _digest_lanes(sketches))


def _stored_sketch_set(sketches: pa.Table) -> str:
    """The sketch-set digest recorded in ``sketches``' metadata, or computed when it is absent or recorded
    for another number of rows (a table sliced or filtered after it was made)."""
    stored = (sketches.schema.metadata or {}).get(_META_SKETCH_SET, b"").decode()
    # "n:..." was the first (sorted-keys) format: still trusted when its pairs file recorded the same string.
    if stored.startswith((f"{sketches.num_rows}:", f"v2:{sketches.num_rows}:")):
        return stored
    return _sketch_set_digest(sketches)


def _with_sketch_set(sketches: pa.Table) -> pa.Table:
    """``sketches`` with their own digest in the metadata; other keys (a caller's own) are kept."""
    meta = {**(sketches.schema.metadata or {}), _META_SKETCH_SET: _sketch_set_digest(sketches).encode()}
    return sketches.replace_schema_metadata(meta)


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


# -- resolution ------------------------------------------------------------------------------------------
def _thresholds(sketches: pa.Table, cfg: DedupeConfig) -> np.ndarray:
    """Each document's pair threshold, looked up once per distinct (source, domain) rather than per row."""
    n = sketches.num_rows
    if not cfg.source_threshold and not cfg.domain_threshold:
        return np.full(n, float(cfg.threshold))
    key = (
        pc.binary_join_element_wise(sketches.column("source_id"), pc.fill_null(sketches.column("domain"), ""), "\x1f")
        .combine_chunks()
        .dictionary_encode()
    )
    per_key = [
        cfg.threshold_for(src, dom or None) for src, dom in (k.split("\x1f", 1) for k in key.dictionary.to_pylist())
    ]
    return np.asarray(per_key, dtype=np.float64)[key.indices.to_numpy(zero_copy_only=False)]


def resolve(
    sketches: pa.Table,
    verified: VerifiedPairs,
    config: DedupeConfig | None = None,
    *,
    trust: Mapping[str, int] | None = None,
) -> tuple[np.ndarray, pa.Table]:
    """Keepers, capped members and drops; returns ``(kept mask by position, DEDUPE_CLUSTER_SCHEMA rows)``.

    Only documents with an exact-key twin or a verified pair at or above their pair threshold are walked
    (best keeper first); every other document is its own keeper. Cluster rows come in walk order.
    """
    cfg = config or DedupeConfig()
    n = sketches.num_rows
    kept = np.ones(n, dtype=bool)
    rows: dict[str, list] = {name: [] for name in DEDUPE_CLUSTER_SCHEMA.names}
    if n == 0:
        return kept, pa.Table.from_pydict(rows, schema=DEDUPE_CLUSTER_SCHEMA)
    order = _keeper_positions(sketches, cfg, trust)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    thresholds = _thresholds(sketches, cfg)
    groups = _exact_groups(sketches)

    pos = verified.positions
    pair_threshold = np.maximum(thresholds[pos[:, 0]], thresholds[pos[:, 1]]) if len(pos) else np.empty(0)
    near = np.flatnonzero(verified.exact_jaccard >= pair_threshold - 1e-12)
    ends = np.concatenate([pos[near, 0], pos[near, 1]])
    partners = np.concatenate([pos[near, 1], pos[near, 0]])
    edge = np.concatenate([near, near])
    by_end = np.argsort(ends, kind="stable")
    ends, partners, edge = ends[by_end], partners[by_end], edge[by_end]
    first = np.searchsorted(ends, np.arange(n + 1))

    group_sizes = np.bincount(groups[groups >= 0], minlength=1) if n else np.empty(0, dtype=np.int64)
    involved = (first[1:] > first[:-1]) | ((groups >= 0) & (group_sizes[np.maximum(groups, 0)] > 1))
    walk = order[involved[order]]
    # Only the walked rows' source and domain are needed, and only when a cluster cap can apply: taking them
    # for the walk alone keeps a corpus-wide Python list of ids out of every run.
    capped = bool(cfg.max_per_cluster)
    walk_at = pa.array(walk, pa.int64())
    walk_sources = sketches.column("source_id").take(walk_at).to_pylist() if capped else []
    walk_domains = sketches.column("domain").take(walk_at).to_pylist() if capped else []
    slot_of = {int(d): k for k, d in enumerate(walk.tolist())} if capped else {}

    is_keeper = np.zeros(n, dtype=bool)
    group_keeper: dict[int, int] = {}
    cluster_counts: dict[int, dict[tuple[str, str], int]] = {}
    exact_j = verified.exact_jaccard
    member: list[int] = []
    keeper_of: list[int] = []
    via_edge: list[int] = []  # the verified pair that matched, -1 for an exact match
    capped_rows: list[bool] = []

    for w, d in enumerate(walk.tolist()):
        g = int(groups[d])
        keeper, chosen = -1, -1
        if g >= 0 and g in group_keeper:
            keeper = group_keeper[g]
        else:
            best: tuple[float, int] | None = None
            for k in range(first[d], first[d + 1]):
                other = int(partners[k])
                if not is_keeper[other]:
                    continue
                option = (-float(exact_j[edge[k]]), int(rank[other]))
                if best is None or option < best:
                    best, chosen = option, k
            if best is not None:
                keeper = int(partners[chosen])
        if keeper < 0:
            is_keeper[d] = True
            if g >= 0:
                group_keeper.setdefault(g, d)
            continue
        action_capped = False
        if capped:
            cap, kind, value = cfg.cap_for(walk_sources[w], walk_domains[w])
            if cap > 1:
                counts = cluster_counts.setdefault(keeper, {})
                slot = (kind, value)
                if slot not in counts:
                    at = slot_of[keeper]
                    keeper_value = walk_sources[at] if kind == "source" else walk_domains[at]
                    counts[slot] = int(keeper_value == value)
                if counts[slot] < cap:
                    counts[slot] += 1
                    action_capped = True
        if not action_capped:
            kept[d] = False
        member.append(d)
        keeper_of.append(keeper)
        via_edge.append(-1 if chosen < 0 else int(edge[chosen]))
        capped_rows.append(action_capped)
    return kept, _cluster_rows(sketches, member, keeper_of, via_edge, capped_rows, verified)


_MATCH_TYPES = pa.array(["exact", "near"], pa.string())
_ACTIONS = pa.array(["dropped", "kept_capped"], pa.string())


def _cluster_rows(
    sketches: pa.Table,
    member: list[int],
    keeper_of: list[int],
    via_edge: list[int],
    capped_rows: list[bool],
    verified: VerifiedPairs,
) -> pa.Table:
    """The :data:`DEDUPE_CLUSTER_SCHEMA` rows of the walk, built column-wise with ``take`` so the ids of the
    walked rows are never turned into Python strings."""
    rows = np.asarray(member, dtype=np.int64)
    keepers = pa.array(np.asarray(keeper_of, dtype=np.int64), pa.int64())
    edges = np.asarray(via_edge, dtype=np.int64)
    near = edges >= 0
    exact_j = np.ones(len(edges))
    estimated_j = np.ones(len(edges))
    exact_j[near] = verified.exact_jaccard[edges[near]]
    estimated_j[near] = verified.estimated_jaccard[edges[near]]
    doc_ids = sketches.column("doc_id")
    sources = sketches.column("source_id")
    kept_doc = doc_ids.take(keepers)
    kept_source = sources.take(keepers)
    at = pa.array(rows, pa.int64())
    columns = {
        "cluster_id": pc.binary_join_element_wise(kept_source, kept_doc, "/"),
        "doc_id": doc_ids.take(at),
        "source_id": sources.take(at),
        "kept_doc_id": kept_doc,
        "kept_source_id": kept_source,
        "match_type": _MATCH_TYPES.take(pa.array(near.astype(np.int8))),
        "estimated_jaccard": pa.array(estimated_j, pa.float64()),
        "exact_jaccard": pa.array(exact_j, pa.float64()),
        "action": _ACTIONS.take(pa.array(np.asarray(capped_rows, dtype=np.int8))),
    }
    return pa.table(columns, schema=DEDUPE_CLUSTER_SCHEMA).combine_chunks()


# -- whole runs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DedupeStats:
    """What a run had to compute, and what it could reuse from an earlier run."""

    documents: int
    sketched: int
    sketches_reused: int
    candidate_pairs: int  # pairs proposed by the band index in this run
    pairs_verified: int  # exact Jaccard computed from text in this run
    pairs_reused: int  # taken from the previous verified pairs
    incremental: bool  # True when only pairs touching new documents were queried
    note: str = ""


@dataclass(frozen=True)
class DedupeResult:
    """What a run decided, and what to persist for the next one.

    The kept rows are not copied by the run: a copy holds every kept text again (the bulk of the corpus), and
    a caller that writes them out can take them a batch at a time (:meth:`kept_batches`) so that memory holds
    one batch of copies. :attr:`kept` builds the whole table on first use.
    """

    kept_mask: np.ndarray  # by input row
    clusters: pa.Table  # DEDUPE_CLUSTER_SCHEMA
    sketches: pa.Table  # sketch_schema(config), input row order: persist for the next run
    verified_pairs: pa.Table  # VERIFIED_PAIR_SCHEMA: persist for the next run
    stats: DedupeStats
    docs: pa.Table = field(repr=False)  # the input documents, which the kept rows are taken from

    @cached_property
    def kept(self) -> pa.Table:
        """The input rows kept, in the input's schema and order."""
        return self.docs.filter(pa.array(self.kept_mask))

    @property
    def kept_count(self) -> int:
        return int(np.count_nonzero(self.kept_mask))

    def kept_batches(self, max_rows: int | None = None) -> Iterator[pa.Table]:
        """The kept rows in input order, as tables of up to ``max_rows`` input rows each (default
        ``_KEPT_BATCH_ROWS``; a batch where every row is kept is a slice of the input, not a copy); together
        they equal :attr:`kept`."""
        max_rows = _KEPT_BATCH_ROWS if max_rows is None else max_rows
        if max_rows < 1:
            raise ValueError(f"dedupe: max_rows must be >= 1, got {max_rows}")
        for start in range(0, len(self.kept_mask), max_rows):
            mask = self.kept_mask[start : start + max_rows]
            if not mask.any():
                continue
            part = self.docs.slice(start, len(mask))
            yield part if mask.all() else part.filter(pa.array(mask))


def _reband(sk: pa.Table, cfg: DedupeConfig) -> pa.Table:
    """``sk`` in :func:`sketch_schema` of ``cfg``: band hashes recomputed from the stored signatures when
    they were banded for other thresholds (no text is needed for that)."""
    bands, rows = cfg.banding
    schema = sketch_schema(cfg)
    if _banding_of(sk) == (bands, rows):
        return sk.select(schema.names).cast(schema)
    matrix = band_hashes(_signature_matrix(sk, cfg), bands, rows)
    matrix[sk.column("n_shingles").to_numpy() == 0] = 0
    columns = {f.name: sk.column(f.name) for f in schema if f.name != "bands"}
    columns["bands"] = pa.chunked_array([_fixed_list(matrix, pa.uint64())])
    return pa.table({f.name: columns[f.name] for f in schema}, schema=schema)


def _assemble(
    previous: pa.Table,
    fresh: pa.Table,
    reuse_from: np.ndarray,
    new_rows: np.ndarray,
    docs: pa.Table,
    previous_digest: str,
) -> pa.Table:
    """The sketches in input row order: row i is ``previous[reuse_from[i]]``, or the next row of ``fresh`` where
    ``reuse_from[i] < 0``. A refresh mostly keeps long runs of previous rows in order, so those runs are
    sliced (no copy) and only a scattered layout is gathered with ``take``. The keeper metadata is the
    current rows' (a license or domain may change without the text changing, and the keeper rule must see
    the current values). The sketch-set digest is ``previous_digest`` (the previous sketches' own) less the
    previous rows not reused plus the fresh ones, so only those rows' ids are hashed."""
    n = len(reuse_from)
    src = reuse_from.copy()
    src[new_rows] = previous.num_rows + np.arange(new_rows.size)
    stacked = pa.concat_tables([previous, fresh.cast(previous.schema)])
    breaks = np.flatnonzero(np.diff(src) != 1) + 1
    if breaks.size < _MAX_SLICES:
        starts = np.concatenate([[0], breaks]).tolist()
        stops = [*breaks.tolist(), n]
        out = pa.concat_tables([stacked.slice(src[a], b - a) for a, b in zip(starts, stops, strict=True)])
    else:
        out = stacked.take(pa.array(src, pa.int64()))
    for name, column in (
        ("domain", _optional_string(docs, "domain")),
        ("license", _optional_string(docs, "license")),
        ("capture_time", _capture_utc(docs)),
    ):
        out = out.set_column(out.schema.get_field_index(name), out.schema.field(name), column)
    meta = dict(fresh.schema.metadata or {})
    before = _parse_digest(previous_digest, previous.num_rows)
    added = _parse_digest(meta.get(_META_SKETCH_SET, b"").decode(), fresh.num_rows)
    if before is None or added is None:
        return _with_sketch_set(out.replace_schema_metadata(meta))
    used = np.zeros(previous.num_rows, dtype=bool)
    used[reuse_from[reuse_from >= 0]] = True
    left = previous.select(["source_id", "doc_id", "content_hash"]).take(pa.array(np.flatnonzero(~used), pa.int64()))
    gone = _digest_lanes(left)
    lanes = (before[0] - gone[0] + added[0], before[1] - gone[1] + added[1])
    meta[_META_SKETCH_SET] = _format_digest(n, lanes).encode()
    return out.replace_schema_metadata(meta)


def dedupe_incremental(
    docs: pa.Table,
    *,
    previous_sketches: pa.Table | None = None,
    previous_pairs: pa.Table | None = None,
    config: DedupeConfig | None = None,
    trust: Mapping[str, int] | None = None,
    code_sources: Sequence[str] | set[str] | frozenset[str] = frozenset(),
    unchanged_sources: Collection[str] = frozenset(),
) -> DedupeResult:
    """Dedupe the whole corpus ``docs``, reusing an earlier run's ``sketches`` and ``verified_pairs``.

    A row reuses a previous sketch when its (source_id, doc_id) is unique in ``docs`` and its text and
    code/prose shingling are unchanged (content hash); every other row is sketched now. Rows of
    ``unchanged_sources`` — sources the caller knows hold exactly the documents they held when
    ``previous_sketches`` were made (the asset layer compares partition data versions) — are matched by
    (source_id, doc_id) and shingling mode alone, without hashing their text: a refresh that adds one
    source then costs time in proportion to that source, not to the corpus. When
    ``previous_pairs`` is the verified-pairs table of the run that produced ``previous_sketches`` (checked
    by the digest in its metadata), only candidate pairs touching newly sketched rows are queried and
    verified; otherwise all candidates are queried and the old values serve only as a cache. Either way
    the result equals a full build (:func:`dedupe`) of ``docs``. Sketches made with other shingling
    settings are ignored (and reported in ``stats.note``): they cannot be compared with new ones.
    """
    cfg = config or DedupeConfig()
    _check_columns(docs)
    n = docs.num_rows
    codes = _in_set(docs.column("source_id"), code_sources)
    notes: list[str] = []
    if previous_sketches is not None:
        try:
            _check_sketches(previous_sketches, cfg, "previous sketches")
        except ValueError as e:
            notes.append(f"previous sketches not reused: {e}")
            previous_sketches, previous_pairs = None, None
    if previous_pairs is not None:
        meta = previous_pairs.schema.metadata or {}
        if meta.get(_META_FINGERPRINT, b"").decode() != cfg.fingerprint():
            notes.append("previous verified pairs not reused: made with other shingling settings")
            previous_pairs = None

    reuse_from = np.full(n, -1, dtype=np.int64)
    known_hashes: pa.UInt64Array | None = None  # content hash by row, null where it was not needed
    if previous_sketches is not None and previous_sketches.num_rows and n:
        ident = pc.binary_join_element_wise(docs.column("source_id"), docs.column("doc_id"), "\x1f")
        trusted = _in_set(docs.column("source_id"), unchanged_sources)
        if trusted.any():
            prev_ident = pc.binary_join_element_wise(
                previous_sketches.column("source_id"), previous_sketches.column("doc_id"), "\x1f"
            )
            found = pc.fill_null(pc.index_in(ident, value_set=prev_ident), -1).to_numpy(zero_copy_only=False)
            prev_code = previous_sketches.column("code").to_numpy(zero_copy_only=False)
            same_mode = (found >= 0) & (prev_code[np.maximum(found, 0)] == codes)
            reuse_from[trusted & same_mode] = found[trusted & same_mode]
        check = np.flatnonzero(~trusted)
        if check.size:
            checked = docs.select(["text", "source_id", "doc_id"])
            if check.size < n:
                checked = checked.take(pa.array(check, pa.int64()))
            hashes = _content_hashes(checked.column("text"), codes[check])
            here = _row_keys(checked.column("source_id"), checked.column("doc_id"), hashes)
            there = _row_keys(
                previous_sketches.column("source_id"),
                previous_sketches.column("doc_id"),
                previous_sketches.column("content_hash"),
            )
            found = pc.index_in(here, value_set=there)
            reuse_from[check] = pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
            if check.size == n:
                known_hashes = hashes
            else:
                values = np.zeros(n, dtype=np.uint64)
                values[check] = hashes.to_numpy()
                known_hashes = pa.array(values, pa.uint64(), mask=trusted)
        counts = pc.value_counts(ident)
        repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
        if len(repeated):
            reuse_from[pc.is_in(ident, value_set=repeated).to_numpy(zero_copy_only=False)] = -1
    new_rows = np.flatnonzero(reuse_from < 0)
    old_rows = np.flatnonzero(reuse_from >= 0)

    if old_rows.size == 0:  # a full build: no row copies, the sketches are already in input order
        sketches = sketch(docs, cfg, code_sources=code_sources, content_hashes=known_hashes).combine_chunks()
    else:
        # Only the columns a sketch reads are taken: taking whole rows would copy every column of the table.
        take_new = pa.array(new_rows, pa.int64())
        needed = [c for c in (*REQUIRED_COLUMNS, "domain", "license") if c in docs.column_names]
        fresh = sketch(
            docs.select(needed).take(take_new),
            cfg,
            code_sources=code_sources,
            content_hashes=None if known_hashes is None else known_hashes.take(take_new),
        )
        sketches = _assemble(
            _reband(previous_sketches, cfg), fresh, reuse_from, new_rows, docs, _stored_sketch_set(previous_sketches)
        )

    is_new = np.zeros(n, dtype=bool)
    is_new[new_rows] = True
    pairs_meta = (previous_pairs.schema.metadata or {}) if previous_pairs is not None else {}
    complete_cache = (
        previous_pairs is not None
        and previous_sketches is not None
        and pairs_meta.get(_META_BANDING, b"").decode() == "{},{}".format(*cfg.banding)
        and pairs_meta.get(_META_SKETCH_SET, b"").decode() == _stored_sketch_set(previous_sketches)
    )
    if previous_pairs is not None and not complete_cache:
        notes.append("previous verified pairs are not those of the previous sketches: all pairs queried")
    candidates = (
        _pairs_touching(sketches, is_new, cfg) if complete_cache else band_index(sketches, cfg).candidate_pairs()
    )
    want_cache = previous_pairs is not None and previous_pairs.num_rows > 0 and (len(candidates) > 0 or complete_cache)
    cached = _cached_pairs(previous_pairs, sketches) if want_cache else None
    verified = _verify(sketches, candidates, docs.column("text"), cfg, cached)
    if complete_cache and old_rows.size and cached is not None:
        cpos, cexact, cest = cached
        old_old = ~is_new[cpos[:, 0]] & ~is_new[cpos[:, 1]]
        verified = VerifiedPairs(
            np.concatenate([verified.positions, cpos[old_old]]),
            np.concatenate([verified.exact_jaccard, cexact[old_old]]),
            np.concatenate([verified.estimated_jaccard, cest[old_old]]),
            computed=verified.computed,
            reused=verified.reused + int(old_old.sum()),
        )
    kept_mask, clusters = resolve(sketches, verified, cfg, trust=trust)
    stats = DedupeStats(
        documents=n,
        sketched=int(new_rows.size),
        sketches_reused=int(old_rows.size),
        candidate_pairs=len(candidates),
        pairs_verified=verified.computed,
        pairs_reused=verified.reused,
        incremental=bool(complete_cache),
        note="; ".join(notes),
    )
    return DedupeResult(
        kept_mask=kept_mask,
        clusters=clusters,
        sketches=sketches,
        verified_pairs=verified.table(sketches, cfg),
        stats=stats,
        docs=docs,
    )


def dedupe(
    docs: pa.Table,
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    seed: int = 1,
    source_rank: Mapping[str, int] | None = None,
    config: DedupeConfig | None = None,
    code_sources: Sequence[str] | set[str] | frozenset[str] = frozenset(),
) -> tuple[pa.Table, pa.Table]:
    """Drop exact and near duplicates across all sources of ``docs`` (a full build).

    ``config``, when given, replaces ``threshold``/``num_perm``/``ngram``/``seed``; ``source_rank`` is the
    trust tier per source. Returns ``(kept, clusters)``: ``kept`` has the input's schema and row order;
    ``clusters`` is in ``DEDUPE_CLUSTER_SCHEMA``, one row per non-keeper member, in keeper order.
    """
    cfg = config or DedupeConfig(threshold=threshold, num_perm=num_perm, ngram=ngram, seed=seed)
    result = dedupe_incremental(docs, config=cfg, trust=source_rank, code_sources=code_sources)
    return result.kept, result.clusters
