"""Shingle sets held between sketching and verification.

Why a module: a run normalises and shingles each text once. The sketch pass writes every document's sorted
unique shingle hashes to a scratch file (:class:`ShingleSpill`), keeping only an offset per document in memory,
so verification reads the sets of candidate documents back with one ``pread`` each instead of reading and
tokenising their texts again; memory stays bounded because the sets live on disk, not in the process.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np


def pack_sets(sets: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(values, offsets)``: the sets one after another and where each starts (``len(sets) + 1`` offsets)."""
    offsets = np.zeros(len(sets) + 1, dtype=np.int64)
    np.cumsum([s.size for s in sets], out=offsets[1:])
    values = np.concatenate(sets) if sets else np.empty(0, dtype=np.uint64)
    return values.astype(np.uint64, copy=False), offsets


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
