"""Storage contract v2: parts + a manifest committed last, verified on read, on a local and an fsspec root."""

from __future__ import annotations

import hashlib
import json
import random

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from dagster import asset, materialize
from upath import UPath

from mixtrain.legacy_storage import find_legacy_tables
from mixtrain.resources import StorageIOManager
from mixtrain.runner import check_storage
from mixtrain.storage import asset_path, write_atomic
from mixtrain.tables import (
    MANIFEST_NAME,
    LegacyTableError,
    MissingTableError,
    PendingTable,
    StoredTable,
    TableError,
    TableWriter,
    open_table,
)

SCHEMA = pa.schema([("a", pa.int64()), ("s", pa.string())])


def _batch(start: int, n: int) -> pa.Table:
    return pa.table({"a": list(range(start, start + n)), "s": [f"row {i}" for i in range(start, start + n)]}, SCHEMA)


def _files(location: UPath) -> list[str]:
    return sorted(p.name for p in location.iterdir())


def test_parts_fall_every_n_rows_whatever_the_batches_and_the_manifest_commits_them(tmp_path):
    location = UPath(tmp_path) / "t"
    pending = TableWriter(location, SCHEMA, rows_per_part=4).write_all([_batch(0, 3), _batch(3, 7)])
    assert [p.rows for p in pending.parts] == [4, 4, 2]
    assert not (location / MANIFEST_NAME).exists()  # parts written, nothing committed yet
    with pytest.raises(MissingTableError):
        open_table(location)
    stored = pending.commit(location)
    assert stored.version == hashlib.sha256((location / MANIFEST_NAME).read_bytes()).hexdigest()[:16]
    assert stored.read().equals(_batch(0, 10))
    assert [b.num_rows for b in stored.batches(batch_size=3)] == [3, 1, 3, 1, 2]
    manifest = json.loads((location / MANIFEST_NAME).read_bytes())
    assert manifest["rows"] == 10 and [f["name"] for f in manifest["schema"]] == ["a", "s"]
    # Same rows in other batches: the same parts, so the same version; other engines read the listed parts.
    again = TableWriter(UPath(tmp_path) / "u", SCHEMA, rows_per_part=4).write_all([_batch(0, 10)])
    assert again.version == pending.version
    assert ds.dataset(stored.part_uris, format="parquet").to_table().equals(_batch(0, 10))
    assert stored.dataset().count_rows() == 10


def test_part_bytes_do_not_depend_on_how_the_rows_were_chunked(tmp_path):
    """Long distinct strings make the writer fall back from dictionary to plain encoding part-way through a
    row group; where it does must follow the rows, not the chunks a stage happened to hand over."""
    rng = random.Random(0)
    texts = ["".join(rng.choices("abcdefghij ", k=900)) for _ in range(3_000)]
    table = pa.table({"a": list(range(3_000)), "s": texts}, SCHEMA)
    small = TableWriter(UPath(tmp_path) / "small", SCHEMA).write_all(table.to_batches(max_chunksize=7))
    whole = TableWriter(UPath(tmp_path) / "whole", SCHEMA).write_all([table])
    assert (
        small.version == whole.version == PendingTable.of(pa.concat_tables([table.slice(0, 5), table.slice(5)])).version
    )


def test_in_memory_table_and_empty_table_round_trip(tmp_path):
    empty = PendingTable.of(SCHEMA.empty_table())
    assert len(empty.parts) == 1 and empty.rows == 0  # one empty part carries the schema
    stored = empty.commit(UPath(tmp_path) / "e")
    assert stored.read().schema.equals(SCHEMA) and stored.rows == 0
    assert (
        PendingTable.of(_batch(0, 5)).version
        == TableWriter(UPath(tmp_path) / "w", SCHEMA).write_all([_batch(0, 5)]).version
    )


def test_a_failed_write_leaves_the_committed_version_readable_and_no_new_parts(tmp_path):
    location = UPath(tmp_path) / "t"
    first = PendingTable.of(_batch(0, 6)).commit(location)
    before = _files(location)

    def failing():
        yield _batch(100, 5)
        raise ValueError("source file 2: bad bytes")

    with pytest.raises(ValueError, match="source file 2"):
        TableWriter(location, SCHEMA, rows_per_part=2).write_all(failing())
    assert _files(location) == before
    assert open_table(location, expected_version=first.version).read().equals(_batch(0, 6))


def test_replacing_a_table_removes_the_parts_of_the_version_it_replaces(tmp_path):
    location = UPath(tmp_path) / "t"
    PendingTable.of(_batch(0, 6), rows_per_part=2).commit(location)
    second = PendingTable.of(_batch(50, 3), rows_per_part=2).commit(location)
    assert _files(location) == sorted([MANIFEST_NAME, *(p.name for p in second.parts)])


def test_reads_fail_loudly_on_a_corrupt_part_another_version_or_a_legacy_file(tmp_path):
    location = UPath(tmp_path) / "t"
    stored = PendingTable.of(_batch(0, 6)).commit(location)
    with pytest.raises(TableError, match="Dagster recorded 0000000000000000"):
        open_table(location, expected_version="0" * 16)
    part = stored.part_paths[0]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(TableError, match=f"{part.name}.*does not match the manifest"):
        open_table(location).read()
    (UPath(tmp_path) / "old.parquet").write_bytes(b"PAR1")
    with pytest.raises(LegacyTableError, match="storage contract v1"):
        open_table(UPath(tmp_path) / "old")


def test_a_storage_root_of_the_v1_contract_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "raw_documents").mkdir()
    (tmp_path / "raw_documents" / "src.parquet").write_bytes(b"PAR1")
    (tmp_path / "raw_documents" / "src.json").write_bytes(b"{}")
    assert find_legacy_tables(str(tmp_path), ["raw_documents", "mixture"]) == [
        str(tmp_path / "raw_documents" / "src.parquet")
    ]

    class _Project:
        storage_root = str(tmp_path)

    @asset(name="raw_documents")
    def raw() -> pa.Table:
        return _batch(0, 1)

    from dagster import Definitions

    with pytest.raises(ValueError, match=r"storage contract v1.*raw_documents/src\.parquet"):
        check_storage(_Project(), Definitions(assets=[raw]))  # type: ignore[arg-type]


def test_io_manager_commits_and_verifies_tables_on_an_fsspec_root():
    root = "memory://mixtrain-test-root"

    @asset
    def numbers() -> pa.Table:
        return pa.table({"n": [1, 2]})

    @asset
    def doubled(numbers: pa.Table) -> pa.Table:
        return pa.table({"n": [2 * v for v in numbers.column("n").to_pylist()]})

    @asset
    def streamed(doubled: StoredTable) -> pa.Table:
        return pa.concat_tables([pa.Table.from_batches([b]) for b in doubled.batches()])

    result = materialize([numbers, doubled, streamed], resources={"io_manager": StorageIOManager(storage_root=root)})
    assert result.success
    assert open_table(asset_path(root, "streamed")).read().column("n").to_pylist() == [2, 4]
    assert str(asset_path(root, "gated_documents", "src")).endswith("gated_documents/src")
    # A remote writer stages each part locally and uploads it under its content name.
    remote = TableWriter(asset_path(root, "big"), SCHEMA, rows_per_part=3).write_all([_batch(0, 7)])
    assert remote.commit(asset_path(root, "big")).read().equals(_batch(0, 7))


def test_an_input_replaced_behind_dagsters_back_is_refused(tmp_path):
    from dagster import DagsterInstance

    root = str(tmp_path)

    @asset
    def numbers() -> pa.Table:
        return pa.table({"n": [1, 2]})

    @asset
    def total(numbers: pa.Table) -> pa.Table:
        return pa.table({"n": [sum(numbers.column("n").to_pylist())]})

    resources = {"io_manager": StorageIOManager(storage_root=root)}
    instance = DagsterInstance.ephemeral()
    assert materialize([numbers, total], resources=resources, instance=instance).success
    PendingTable.of(pa.table({"n": [7, 7]})).commit(asset_path(root, "numbers"))  # not through Dagster
    result = materialize(
        [numbers, total], selection=["total"], resources=resources, instance=instance, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "Dagster recorded" in str(failure.step_failure_data.error)


def test_write_atomic_leaves_no_temp_file(tmp_path):
    path = UPath(tmp_path) / "x.json"
    write_atomic(path, b"{}")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.ray  # polars comes with the ray extra: `make test-ray` runs this
def test_other_engines_read_the_listed_parts(tmp_path):
    import polars as pl

    location = UPath(tmp_path) / "t"
    stored = PendingTable.of(_batch(0, 10), rows_per_part=4).commit(location)
    (tmp_path / "t" / "part-99999-orphan.parquet").write_bytes(b"not listed, never read")
    frame = pl.scan_parquet(stored.part_uris).collect()
    assert frame.height == 10 and frame["a"].to_list() == list(range(10))
