"""Keys of document versions and the order-independent digest of a set of sketches.

Why a module: the digest recorded in the sketches' and verified pairs' metadata is what lets a refresh tell
whether stored pairs are complete for the sketches it reuses; sketching, verification and the incremental
refresh all compute or update it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.dedupe.config import _META_SKETCH_SET


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


# Rows hashed per pass of _string_hashes: its temporaries are five uint64/int64 arrays per id byte, so a whole
# corpus at once (1M ids of ~24 bytes) would hold ~0.8 GB for a moment; 16k rows hold ~15 MB, and the passes are
# still vectorised (62 of them at 1M rows cost no measurable time).
_HASH_ROWS = 1 << 14


def _string_hashes(strings: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A ``uint64`` per string, computed over the Arrow data buffer with numpy (a polynomial over the bytes,
    then splitmix64): one vectorised pass per slice of rows instead of a hash call per row. Only for digests
    of ids."""
    # Each slice is made one array and widened on its own: the whole column combined and cast would be a
    # transient copy of every id.
    out = np.empty(len(strings), dtype=np.uint64)
    for at in range(0, len(strings), _HASH_ROWS):
        piece = strings.slice(at, _HASH_ROWS)
        piece = piece.combine_chunks() if isinstance(piece, pa.ChunkedArray) else piece
        out[at : at + len(piece)] = _slice_hashes(piece.cast(pa.large_binary()))
    return out


def _slice_hashes(arr: pa.LargeBinaryArray) -> np.ndarray:
    m = len(arr)
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
