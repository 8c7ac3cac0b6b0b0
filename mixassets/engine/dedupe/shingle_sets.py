"""Shingle sets held between sketching and verification, and the exact Jaccard of many pairs at once.

Why a module: a run normalises and shingles each text once. The sketch pass writes every document's sorted
unique shingle hashes to a scratch file (:class:`ShingleSpill`), keeping only an offset per document in memory,
so verification reads the sets of candidate documents back with one ``pread`` each instead of reading and
tokenising their texts again; memory stays bounded because the sets live on disk, not in the process.
Verification then computes the exact Jaccard of a whole window of pairs with a few numpy passes
(:func:`pair_jaccards`) rather than one ``intersect1d`` call per pair.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np

# Elements (both ends' shingles) of the pairs computed in one vectorised pass: ~16 bytes each in the key
# arrays, so about 128 MB of transient memory at most, whatever the number of pairs.
_PASS_ELEMENTS = 1 << 18


def pack_sets(sets: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(values, offsets)``: the sets one after another and where each starts (``len(sets) + 1`` offsets)."""
    offsets = np.zeros(len(sets) + 1, dtype=np.int64)
    np.cumsum([s.size for s in sets], out=offsets[1:])
    values = np.concatenate(sets) if sets else np.empty(0, dtype=np.uint64)
    return values.astype(np.uint64, copy=False), offsets


def _gather(dense: np.ndarray, offsets: np.ndarray, sets: np.ndarray, width: int) -> np.ndarray:
    """Keys ``pair * width + dense id`` of each pair's set (pair k owns ``sets[k]``), in pair order: within a
    pair the ids keep the set's order, which is ascending, so the keys are sorted."""
    lengths = offsets[sets + 1] - offsets[sets]
    ends = np.cumsum(lengths)
    at = np.repeat(offsets[sets] - (ends - lengths), lengths)  # input offset minus output offset, per element
    at += np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64)
    keys = dense[at]
    keys += np.repeat(np.arange(len(sets), dtype=np.int64) * width, lengths)
    return keys


def pair_jaccards(values: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact Jaccard of sets ``a[k]`` and ``b[k]`` for every k, where set i is ``values[offsets[i]:offsets[i+1]]``
    (sorted, unique ``uint64``); 0.0 when both are empty.

    How: the distinct values are numbered in ascending order (one ``np.unique``), which keeps every set sorted;
    pair k's elements become the ``int64`` keys ``k * V + id``, so the keys of all ``b`` sets, laid out pair
    after pair, are already globally sorted, and one ``searchsorted`` of all ``a`` keys counts every pair's
    intersection. The values are compared exactly (no hash truncation), so this equals
    ``len(intersect1d(A, B)) / len(union)`` per pair, as floats too (same integer operands)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    out = np.empty(len(a), dtype=np.float64)
    if len(a) == 0:
        return out
    distinct, dense = np.unique(values, return_inverse=True)
    width = max(1, len(distinct))
    sizes = np.diff(offsets)
    cost = sizes[a] + sizes[b]
    reach = np.cumsum(cost)
    start = 0
    while start < len(a):
        # a pass takes pairs while their elements fit (at least one pair), and keeps k * width within int64
        stop = int(np.searchsorted(reach, reach[start] - cost[start] + _PASS_ELEMENTS, "right"))
        stop = min(max(stop, start + 1), start + max(1, (2**62) // width))
        keys_a = _gather(dense, offsets, a[start:stop], width)
        merged = np.concatenate([keys_a, _gather(dense, offsets, b[start:stop], width)])
        merged.sort(kind="stable")  # two sorted runs: timsort merges them in linear time
        twice = merged[1:][merged[1:] == merged[:-1]]
        inter = np.bincount(twice // width, minlength=stop - start)
        union = cost[start:stop] - inter
        out[start:stop] = np.divide(inter, union, out=np.zeros(stop - start), where=union > 0)
        start = stop
    return out


class ShingleSpill:
    """The sorted unique shingle hashes of the documents one run sketched, in a scratch file, by the order they
    were added (slot 0, 1, ...). Memory holds one ``int64`` offset per document; the file is deleted when the
    spill is closed or collected. Writes are sequential and reads are ``pread`` calls of the wanted slots."""

    def __init__(self, directory: str | None = None) -> None:
        # Held open for the spill's life (closed by close() or __exit__), so no with-block can own it.
        self._file = tempfile.TemporaryFile(prefix="mixtrain-shingles-", dir=directory)  # noqa: SIM115
        self._ends: list[np.ndarray] = []
        self._written = 0
        self._offsets: np.ndarray | None = None
        self._positions: np.ndarray | None = None

    def append(self, sets: Sequence[np.ndarray]) -> None:
        """Add the next slots' sets, in order."""
        if self._offsets is not None:
            raise ValueError("dedupe: a shingle spill cannot grow once it has been read")
        values, offsets = pack_sets(sets)
        self._file.write(values.astype("<u8", copy=False).tobytes())
        self._ends.append(self._written + offsets[1:])
        self._written += int(offsets[-1])

    @property
    def slots(self) -> int:
        return sum(len(e) for e in self._ends) if self._offsets is None else len(self._offsets) - 1

    def _layout(self) -> np.ndarray:
        if self._offsets is None:
            self._file.flush()
            self._offsets = np.concatenate([np.zeros(1, dtype=np.int64), *self._ends])
            self._ends = []
        return self._offsets

    def read(self, slots: np.ndarray) -> list[np.ndarray]:
        """The sets of ``slots`` (any order), each a fresh ``uint64`` array."""
        offsets = self._layout()
        fd = self._file.fileno()
        out = []
        for slot in np.asarray(slots, dtype=np.int64).tolist():
            if not 0 <= slot < len(offsets) - 1:
                raise IndexError(f"dedupe: shingle spill has no slot {slot}")
            first, stop = int(offsets[slot]), int(offsets[slot + 1])
            raw = os.pread(fd, (stop - first) * 8, first * 8)
            out.append(np.frombuffer(raw, dtype="<u8").astype(np.uint64, copy=False))
        return out

    def bind(self, positions: np.ndarray) -> None:
        """Declare slot k to hold the document at ``positions[k]`` (ascending) of the sketches being verified."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) != self.slots or np.any(positions[1:] <= positions[:-1]):
            raise ValueError(f"dedupe: a shingle spill of {self.slots} slots bound to {len(positions)} positions")
        self._positions = positions

    def held(self, positions: np.ndarray) -> np.ndarray:
        """Mask of the (bound) ``positions`` whose sets the spill holds."""
        if self._positions is None or len(self._positions) == 0:
            return np.zeros(len(positions), dtype=bool)
        at = np.minimum(np.searchsorted(self._positions, positions), len(self._positions) - 1)
        return self._positions[at] == positions

    def read_positions(self, positions: np.ndarray) -> list[np.ndarray]:
        """The sets of ``positions``, every one of them held (:meth:`held`)."""
        if self._positions is None:
            raise ValueError("dedupe: the shingle spill is not bound to positions")
        return self.read(np.searchsorted(self._positions, positions))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ShingleSpill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
