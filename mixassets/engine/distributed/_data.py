"""Ray Data plumbing the distributed drivers share: documents in (parquet paths or a table), tables out.

Why a module: every driver needs the same three things. (1) A *position* per input row (``__pos``, int64): the
row's index in the concatenation of the input files in the order given (or of the table), computed from the
files' parquet footers on the driver, never from block order, which Ray does not promise. Positions are what
pairs, components and drops refer to, and sorting by them gives back the local engine's input order. (2)
Collecting a dataset into one pyarrow table. (3) Casting what Ray returns back to the schema asked for: its
joins and shuffles widen strings to ``large_string``, drop not-null flags and reorder columns.

Ray is imported inside functions only: importing this package costs nothing where Ray is not installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from ray.data import Dataset

POS = "__pos"  # the input position column; never written out
# A table, or parquet files in order: plain paths, or (path, sha256, rows) of a committed table's parts
# (``StoredTable.part_refs``), which the workers check before they read a byte of them.
PartRef = tuple[str, str, int]
DocsInput = pa.Table | Sequence[str] | Sequence[PartRef]


def _ray():
    try:
        import ray
        import ray.data
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("the Ray backend needs the 'ray' extra: pip install 'mixtrain[ray]'") from e
    if not ray.is_initialized():
        raise RuntimeError("Ray is not initialised: start it with mixtrain.compute.ComputeResource (backend 'ray')")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    return ray


def default_partitions() -> int:
    """Twice the cluster's CPUs: enough tasks to keep every core busy through a skewed shuffle."""
    ray = _ray()
    return max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))


def _read_file(batch: pa.Table, columns: list[str] | None) -> pa.Table:
    """The parquet file a one-row batch names, with its rows' positions (the batch carries the file's offset);
    a part with a recorded sha256 is read whole through fsspec and checked before it is decoded."""
    path, offset = batch.column("path")[0].as_py(), batch.column("offset")[0].as_py()
    expected = batch.column("sha256")[0].as_py()
    if expected:
        import hashlib

        import fsspec

        with fsspec.open(path, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != expected:
            raise RuntimeError(f"{path}: sha256 does not match the table manifest ({expected[:12]}): corrupt part")
        table = pq.read_table(pa.BufferReader(data), columns=columns)
    else:
        table = pq.read_table(path, columns=columns)
    return table.append_column(POS, pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64)))


def input_schema(docs: DocsInput, columns: Sequence[str] | None = None) -> pa.Schema:
    first = next(iter(docs), None) if not isinstance(docs, pa.Table) else None
    path = first[0] if isinstance(first, tuple) else first
    schema = docs.schema if isinstance(docs, pa.Table) else pq.read_schema(path) if path else pa.schema([])
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns if c in schema.names])
    return schema.remove_metadata()


def docs_dataset(docs: DocsInput, num_blocks: int, columns: Sequence[str] | None = None) -> tuple[Dataset, int]:
    """``(dataset of the documents with a __pos column, number of rows)``.

    A table is split into ``num_blocks`` slices; parquet files are read one task per file (the positions of a
    file start at the rows of the files before it, from the footers read here).
    """
    ray = _ray()
    cols = list(columns) if columns is not None else None
    if isinstance(docs, pa.Table):
        table = docs.select(cols) if cols is not None else docs
        n = table.num_rows
        table = table.append_column(POS, pa.array(np.arange(n, dtype=np.int64)))
        step = max(1, -(-n // max(1, num_blocks)))
        slices = [table.slice(s, step) for s in range(0, n, step)] or [table]
        return ray.data.from_arrow(slices), n
    refs = [d if isinstance(d, tuple) else (d, "", -1) for d in docs]
    paths = [r[0] for r in refs]
    if not paths:
        raise ValueError("distributed: no input files given")
    counts = [rows if rows >= 0 else pq.ParquetFile(p).metadata.num_rows for p, _, rows in refs]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    files = pa.table({"path": paths, "offset": offsets, "sha256": [r[1] for r in refs]})
    ds = ray.data.from_arrow([files.slice(i, 1) for i in range(len(paths))])
    ds = ds.map_batches(_read_file, batch_size=1, batch_format="pyarrow", fn_kwargs={"columns": cols})
    return ds, int(sum(counts))


def collect(ds: Dataset, schema: pa.Schema | None = None, *, sort_by: str | None = None) -> pa.Table:
    """The rows of ``ds`` as one table (empty blocks are fine), cast to ``schema`` when given and sorted by the
    integer column ``sort_by`` when given."""
    ray = _ray()
    tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_columns]
    if not tables:
        if schema is None:
            raise ValueError("distributed: an empty dataset needs a schema to be collected")
        return schema.empty_table()
    out = pa.concat_tables(tables, promote_options="permissive")
    if sort_by is not None:
        out = out.take(np.argsort(out.column(sort_by).to_numpy(), kind="stable"))
    if schema is not None:
        out = conform(out, schema)
    return out.combine_chunks()


def settled(ds: Dataset, schema: pa.Schema) -> Dataset:
    """``ds`` computed; when it has no rows, one empty block of ``schema`` instead. Why: ``map_groups`` over a
    shuffle whose partitions are all empty hands on empty blocks *without columns*, and a following shuffle
    then fails to sort them by its key (Ray 2.60). Between two shuffles, every driver passes through here."""
    ds = ds.materialize()
    if ds.count() == 0:
        return _ray().data.from_arrow(schema.empty_table())
    return ds


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table``'s columns of ``schema``, in its order and types (Ray's joins return ``large_string`` etc.)."""
    return pa.Table.from_arrays([table.column(f.name).cast(f.type) for f in schema], schema=schema)


_CACHE: dict[str, Any] = {}


def broadcast_get(ref: Any) -> Any:
    """``ray.get`` of a broadcast object, once per worker process (tasks of a map reuse their processes)."""
    key = ref.hex()
    if key not in _CACHE:
        import ray

        _CACHE.clear()  # only the current run's object is kept
        _CACHE[key] = ray.get(ref)
    return _CACHE[key]
