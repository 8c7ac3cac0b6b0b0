"""Storage: atomic writes, the parquet checksum is the file's checksum, and fsspec URLs work as a root."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest
from dagster import asset, materialize
from upath import UPath

from mixtrain.resources import StorageIOManager
from mixtrain.storage import (
    asset_path,
    file_sha256,
    read_table,
    stage_batches,
    table_bytes,
    table_checksum,
    write_atomic,
)


def test_checksum_is_the_checksum_of_the_written_file(tmp_path):
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    path = UPath(tmp_path) / "t.parquet"
    write_atomic(path, table_bytes(table))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == table_checksum(table)
    assert read_table(path).equals(table)
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]  # no temp file left behind


def test_io_manager_writes_partitions_under_the_asset_key_on_an_fsspec_root():
    root = "memory://mixtrain-test-root"

    @asset
    def numbers() -> pa.Table:
        return pa.table({"n": [1, 2]})

    @asset
    def doubled(numbers: pa.Table) -> pa.Table:
        return pa.table({"n": [2 * v for v in numbers.column("n").to_pylist()]})

    result = materialize([numbers, doubled], resources={"io_manager": StorageIOManager(storage_root=root)})
    assert result.success
    assert read_table(asset_path(root, "doubled")).column("n").to_pylist() == [2, 4]
    assert str(asset_path(root, "gated_documents", "src")).endswith("gated_documents/src.parquet")


def test_staged_batches_make_one_file_and_a_failure_leaves_none(tmp_path):
    """Parts go one by one into the staged file (its checksum is the data version); a reader that fails
    part-way leaves no partial file for a later publish to pick up."""
    schema = pa.schema([("a", pa.int64())])
    target = UPath(tmp_path) / "asset.parquet"
    staged = stage_batches(target, "run-ok", schema, (pa.table({"a": [i, i + 1]}, schema=schema) for i in (0, 2, 4)))
    assert staged.rows == 6 and read_table(UPath(staged.path)).column("a").to_pylist() == [0, 1, 2, 3, 4, 5]
    assert staged.checksum == file_sha256(str(staged.path))

    def failing():
        yield pa.table({"a": [1]}, schema=schema)
        raise ValueError("source file 2: bad bytes")

    with pytest.raises(ValueError, match="source file 2"):
        stage_batches(target, "run-bad", schema, failing())
    assert [p.name for p in staged.path.parent.iterdir()] == [staged.path.name]
