"""Shingle sets (and MinHash signatures) held between sketching and verification.

Why a module: a run normalises and shingles each text once. The sketch pass writes every document's sorted
unique shingle hashes to a scratch file (:class:`ShingleSpill`), keeping only an offset per document in memory,
so verification reads the sets of candidate documents back with one ``pread`` each instead of reading and
tokenising their texts again; memory stays bounded because the sets live on disk, not in the process.

The signatures go to a second scratch file for the same reason: at ``num_perm`` 128 they are 512 bytes a
document, two thirds of a sketch, yet between sketching and the end of the run only the candidate pairs' rows
are read (for the MinHash estimate). Until the run hands its sketches out, their signature column is a read-only
map of that file (:meth:`ShingleSpill.signature_column`), which costs no process memory while nothing reads it.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Sequence

import numpy as np
import pyarrow as pa


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
        self._signatures = tempfile.TemporaryFile(prefix="mixtrain-signatures-", dir=directory)  # noqa: SIM115
        self._width = 0  # signature values per slot; 0 until signatures are appended
        self._ends: list[np.ndarray] = []
        self._written = 0
        self._offsets: np.ndarray | None = None
        self._positions: np.ndarray | None = None

    def append(self, sets: Sequence[np.ndarray], signatures: np.ndarray | None = None) -> None:
        """Add the next slots' sets, in order, and with ``signatures`` their ``(len(sets), num_perm)`` MinHash
        signatures (given for every slot of a spill or for none)."""
        if self._offsets is not None:
            raise ValueError("dedupe: a shingle spill cannot grow once it has been read")
        if signatures is not None:
            if signatures.shape[0] != len(sets) or (self._width and signatures.shape[1] != self._width):
                raise ValueError(f"dedupe: signatures of shape {signatures.shape} for {len(sets)} shingle sets")
            if self.slots and not self._width:
                raise ValueError("dedupe: signatures appended to a spill that holds sets without them")
            self._width = signatures.shape[1]
            self._signatures.write(np.ascontiguousarray(signatures, dtype="<u4").data)
        elif self._width:
            raise ValueError("dedupe: shingle sets appended without signatures to a spill that holds them")
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

    def signature_column(self, width: int, *, mapped: bool) -> pa.FixedSizeListArray:
        """The signatures of every slot, in slot order, as a ``fixed_size_list<uint32>[width]`` column: ``mapped``,
        a read-only map of the scratch file (pages are read in only where the column is read, and the map outlives
        :meth:`close`), else read into memory, where the column no longer depends on the file."""
        self._layout()
        n = self.slots
        if n and self._width != width:
            raise ValueError(f"dedupe: the shingle spill holds signatures of width {self._width}, not {width}")
        self._signatures.flush()
        values = np.empty(0, dtype=np.uint32)
        if n and mapped:
            view = mmap.mmap(self._signatures.fileno(), n * width * 4, access=mmap.ACCESS_READ)
            values = np.frombuffer(view, dtype="<u4")
        elif n:
            values = np.empty(n * width, dtype=np.uint32)
            self._signatures.seek(0)
            if self._signatures.readinto(values.data.cast("B")) != values.nbytes:
                raise ValueError("dedupe: the signature scratch file is shorter than its slots")
        return pa.FixedSizeListArray.from_arrays(pa.array(values, pa.uint32()), width)

    def signatures_at(self, positions: np.ndarray) -> np.ndarray:
        """The ``(len(positions), num_perm)`` signatures of (bound, held) ``positions``, ascending: one ``pread``
        per run of consecutive slots, so reading them maps nothing into the process."""
        if self._positions is None:
            raise ValueError("dedupe: the shingle spill is not bound to positions")
        slots = np.searchsorted(self._positions, positions)
        out = np.empty((len(slots), self._width), dtype=np.uint32)
        if len(slots) == 0:
            return out
        self._signatures.flush()
        row_bytes = self._width * 4
        starts = np.flatnonzero(np.r_[True, np.diff(slots) != 1])
        stops = np.append(starts[1:], len(slots))
        fd = self._signatures.fileno()
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            raw = os.pread(fd, (b - a) * row_bytes, int(slots[a]) * row_bytes)
            if len(raw) != (b - a) * row_bytes:
                raise ValueError("dedupe: the signature scratch file is shorter than its slots")
            out[a:b] = np.frombuffer(raw, dtype="<u4").reshape(b - a, self._width)
        return out

    def close(self) -> None:
        self._file.close()
        self._signatures.close()

    def __enter__(self) -> ShingleSpill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
