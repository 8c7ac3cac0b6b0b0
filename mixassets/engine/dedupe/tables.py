"""Arrow layouts of the dedupe engine: the sketch and verified-pair schemas, their parquet options, and the
checks of what comes in (document columns, stored sketches).

Why a module: the layouts are what is persisted between runs, so every stage reads them from one place.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from types import MappingProxyType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.dedupe.config import _META_BANDING, _META_FINGERPRINT, REQUIRED_COLUMNS, DedupeConfig


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


def _fixed_list(values: np.ndarray, value_type: pa.DataType) -> pa.FixedSizeListArray:
    width = values.shape[1]
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=value_type), width)


def _one_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """``column`` as one array: its only chunk as is, since ``ChunkedArray.combine_chunks`` copies even one
    chunk, and a copy of a whole sketch column (the band hashes: 144 bytes a document) is what a run's peak
    memory is made of."""
    if isinstance(column, pa.Array):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _take_sorted(column: pa.ChunkedArray | pa.Array, rows: np.ndarray) -> pa.Array:
    """``column.take(rows)`` for ascending ``rows``, taken chunk by chunk: Arrow's take of a chunked fixed-size
    list column first concatenates every chunk (a refresh's signature column is one chunk per reused run), a
    transient copy of the whole column per call."""
    if isinstance(column, pa.Array) or column.num_chunks == 1:
        return _one_array(column).take(pa.array(rows, pa.int64()))
    bounds = np.cumsum([0, *(len(c) for c in column.chunks)])
    cuts = np.searchsorted(rows, bounds)
    parts = [
        chunk.take(pa.array(rows[a:b] - first, pa.int64()))
        for chunk, first, a, b in zip(column.chunks, bounds[:-1].tolist(), cuts[:-1], cuts[1:], strict=True)
        if b > a
    ]
    return pa.concat_arrays(parts) if parts else pa.array([], type=column.type)


def _fixed_list_numpy(column: pa.ChunkedArray | pa.Array, width: int, dtype: type) -> np.ndarray:
    arr = _one_array(column)
    if len(arr) == 0:
        return np.empty((0, width), dtype=dtype)
    return arr.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(-1, width)


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
