"""Rows of a stream picked by position, returned in any order the caller asks for, in bounded memory.

Why a module: the mixture is sampled on a text-free index, so its rows come out in sampling order (phase,
source, draw), not corpus order, and may repeat. Taking them from the corpus needs a random-access gather,
which a stream of batches does not offer. This does it as a two-pass bucket sort through local spill files:
one pass over the corpus writes each wanted row (with its output slot) to the bucket of the output chunk it
belongs to; then each bucket, one output chunk of rows, is read back and put in slot order. Memory holds one
input batch plus one output chunk, whatever the corpus or the selection size; disk holds the selected rows
once (Arrow IPC, uncompressed: written and read once, locally).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

_SLOT = "__slot"


def _as_table(batch: pa.Table | pa.RecordBatch) -> pa.Table:
    return pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch


def gather_rows(
    batches: Iterable[pa.Table | pa.RecordBatch],
    positions: np.ndarray,
    columns: Sequence[str],
    *,
    spill: Path,
    chunk_rows: int,
) -> Iterator[pa.Table]:
    """``columns`` of the stream's rows at ``positions`` (0-based over the whole stream; repeats allowed), in
    the order of ``positions``, as consecutive tables of ``chunk_rows`` rows (the last may be shorter).

    ``spill`` is an existing local directory for the buckets (removed file by file as they are read). A
    position past the end of the stream raises after the pass.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if len(positions) and positions.min() < 0:
        raise ValueError("gather_rows: negative position")
    order = np.argsort(positions, kind="stable")
    wanted = positions[order]
    writers: dict[int, ipc.RecordBatchFileWriter] = {}
    offset = 0
    try:
        for batch in batches:
            table = _as_table(batch).select(list(columns))
            lo, hi = np.searchsorted(wanted, [offset, offset + table.num_rows])
            if hi > lo:
                slots = order[lo:hi]
                rows = table.take(pa.array(wanted[lo:hi] - offset)).append_column(_SLOT, pa.array(slots, pa.int64()))
                bucket = slots // chunk_rows
                by_bucket = np.argsort(bucket, kind="stable")
                bounds = np.flatnonzero(np.diff(bucket[by_bucket])) + 1
                for part in np.split(by_bucket, bounds):
                    b = int(bucket[part[0]])
                    if b not in writers:
                        writers[b] = ipc.new_file(str(spill / f"bucket-{b:08d}.arrow"), rows.schema)
                    writers[b].write_table(rows.take(pa.array(part)))
            offset += table.num_rows
    finally:
        for writer in writers.values():
            writer.close()
    if len(wanted) and wanted[-1] >= offset:
        raise ValueError(f"gather_rows: position {int(wanted[-1])} is past the stream's {offset} rows")
    for b in range((len(positions) + chunk_rows - 1) // chunk_rows):
        path = spill / f"bucket-{b:08d}.arrow"
        with ipc.open_file(str(path)) as reader:
            rows = reader.read_all()
        path.unlink()
        rows = rows.take(pc.sort_indices(rows.column(_SLOT)))
        yield rows.drop_columns([_SLOT]).combine_chunks()
