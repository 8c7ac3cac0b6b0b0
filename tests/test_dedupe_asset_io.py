"""How the dedupe asset persists and reads back its outputs: sketches encoded for a fast refresh, kept rows
written part by part, and a previous run's tables read as a cache that may be missing or broken."""

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from mixassets.assets import curation
from mixassets.engine.dedupe import SKETCH_PARQUET_OPTIONS, DedupeConfig, dedupe_incremental
from mixtrain.schema import DOCUMENT_SCHEMA
from mixtrain.tables import PendingTable, TableWriter, open_table

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _corpus() -> pa.Table:
    rows = []
    for i in range(40):
        words = " ".join(f"w{(i * 7 + k) % 97}x{i}" for k in range(60))
        for copy in range(1 + i % 3):  # exact copies, so some rows are dropped
            rows.append(
                {
                    "doc_id": f"d{i:02d}-{copy}",
                    "source_id": "s",
                    "locator": f"s.jsonl:{i}",
                    "kind": "text",
                    "text": words,
                    "messages": None,
                    "license": "CC-BY-4.0",
                    "rights_tags": [],
                    "domain": "general",
                    "language": "en",
                    "capture_time": T0 + dt.timedelta(days=copy),
                }
            )
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def test_kept_rows_are_written_part_by_part_and_equal_the_kept_table(tmp_path, monkeypatch) -> None:
    result = dedupe_incremental(_corpus(), config=DedupeConfig())
    assert 0 < result.kept_count < result.docs.num_rows
    monkeypatch.setattr("mixassets.engine.dedupe.incremental._KEPT_BATCH_ROWS", 7)  # several batches
    target = UPath(tmp_path / "deduplicated_corpus")
    pending = TableWriter(target, DOCUMENT_SCHEMA, rows_per_part=10).write_all(result.kept_batches())
    assert pending.rows == result.kept_count and len(pending.parts) > 1
    assert pending.commit(target).read().equals(result.kept)


def test_sketches_are_written_for_a_fast_refresh_and_read_back_memory_mapped(tmp_path) -> None:
    sketches = dedupe_incremental(_corpus(), config=DedupeConfig()).sketches
    path = UPath(tmp_path / "dedupe_index")
    stored = PendingTable.of(sketches, options=SKETCH_PARQUET_OPTIONS).commit(path)  # as the dedupe asset does
    meta = pq.ParquetFile(stored.part_uris[0]).metadata.row_group(0)
    chunks = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    for column in ("signature.list.element", "bands.list.element", "content_hash"):
        assert chunks[column].compression == "UNCOMPRESSED" and not chunks[column].has_dictionary_page
    back = curation._previous(path)
    assert back.equals(sketches) and back.schema.metadata == sketches.schema.metadata
    assert open_table(path).read().equals(sketches)


def test_a_missing_or_broken_previous_file_means_a_full_build(tmp_path) -> None:
    assert curation._previous(UPath(tmp_path / "absent")) is None
    broken = UPath(tmp_path / "broken")
    PendingTable.of(pa.table({"a": [1]})).commit(broken)
    next(broken.glob("part-*")).write_bytes(b"not parquet at all")
    assert curation._previous(broken) is None
