"""A dedupe run over stored tables read back in small batches ends exactly where the in-memory run ends, and the
corpus hands out texts by position whatever the tables, parts and batches they sit in."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from upath import UPath

from mixassets.engine.dedupe import dedupe_incremental, verification
from mixassets.engine.dedupe.corpus import Corpus, check_row_ids
from mixtrain.schema import DOCUMENT_SCHEMA, with_row_ids
from mixtrain.tables import StoredTable, TableWriter
from tests.test_dedupe_incremental import CFG, NEW, OLD, same_result, table


def _stored(tmp_path, docs: pa.Table, cuts: list[int], rows_per_part: int = 4) -> list[StoredTable]:
    """``docs`` as consecutive stored tables cut at ``cuts``, each of several parts."""
    out = []
    for k, (a, b) in enumerate(zip([0, *cuts], [*cuts, docs.num_rows], strict=True)):
        location = UPath(tmp_path / f"t{k}")
        pending = TableWriter(location, docs.schema, rows_per_part=rows_per_part).write_all([docs.slice(a, b - a)])
        out.append(pending.commit(location))
    return out


@pytest.fixture
def tiny_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every lower end of a candidate pair in a verification window of its own: one pass per window."""
    monkeypatch.setattr(verification, "_HELD_SETS_BYTES", 1)


def test_stored_tables_in_small_batches_equal_the_in_memory_run(tmp_path, tiny_windows: None) -> None:
    docs = table(OLD + NEW)
    corpus = Corpus(_stored(tmp_path, docs, [7, 30]), read_rows=3)
    streamed = dedupe_incremental(corpus, config=CFG)
    whole = dedupe_incremental(docs, config=CFG)
    same_result(streamed, whole)
    assert streamed.stats == whole.stats
    assert streamed.metadata() == whole.metadata()
    for max_rows in (1, 2, 5, 100):
        parts = list(streamed.kept_batches(max_rows))
        assert all(0 < p.num_rows <= max_rows for p in parts)
        assert pa.concat_tables(parts).equals(whole.kept)


def test_a_refresh_from_stored_tables_equals_the_in_memory_refresh(tmp_path, tiny_windows: None) -> None:
    before = dedupe_incremental(table(OLD), config=CFG)
    docs = table(OLD + NEW)
    kwargs = {"previous_sketches": before.sketches, "previous_pairs": before.verified_pairs, "config": CFG}
    for unchanged in (set(), {"alpha", "beta"}):
        corpus = Corpus(_stored(tmp_path / str(len(unchanged)), docs, [len(OLD)]), read_rows=4)
        streamed = dedupe_incremental(corpus, unchanged_sources=unchanged, **kwargs)
        whole = dedupe_incremental(docs, unchanged_sources=unchanged, **kwargs)
        assert streamed.stats.incremental and streamed.stats.sketches_reused == len(OLD)
        same_result(streamed, whole)
        assert streamed.stats == whole.stats
        same_result(streamed, dedupe_incremental(docs, config=CFG))


def test_texts_come_back_by_position_across_tables_and_parts(tmp_path) -> None:
    docs = table(OLD + NEW)
    texts = docs.column("text").to_pylist()
    corpus = Corpus([*_stored(tmp_path, docs.slice(0, 20), [9]), docs.slice(20)], read_rows=2)
    assert corpus.rows == docs.num_rows and corpus.schema.equals(docs.schema)
    wanted = np.array([0, 1, 8, 9, 10, 19, 20, 21, docs.num_rows - 1])
    got = [(int(p), t) for rows, chunk in corpus.texts_at(wanted) for p, t in zip(rows, chunk, strict=True)]
    assert got == [(int(p), texts[p]) for p in wanted]
    mask = np.zeros(docs.num_rows, dtype=bool)
    mask[[3, 25]] = True
    batches = list(corpus.text_batches(mask))
    assert {start for start, _ in batches} >= {2, 24}
    for start, chunk in batches:
        assert chunk.to_pylist() == texts[start : start + len(chunk)]
    assert corpus.metadata().column("doc_id").equals(docs.column("doc_id"))
    assert corpus.table().equals(docs)
    with pytest.raises(ValueError, match="ascending"):
        list(corpus.texts_at(np.array([3, 1])))


def test_only_the_parts_holding_wanted_rows_are_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = table(OLD + NEW)
    (stored,) = _stored(tmp_path, docs, [], rows_per_part=10)
    read: list[int] = []
    batches = StoredTable.batches

    def counting(self, columns=None, batch_size=16_384, *, parts=None, buffer_size=0):  # type: ignore[no-untyped-def]
        read.extend(parts or [])
        return batches(self, columns, batch_size, parts=parts, buffer_size=buffer_size)

    monkeypatch.setattr(StoredTable, "batches", counting)
    list(Corpus([stored]).texts_at(np.array([3, 25, 27])))
    assert read == [0, 2]


def test_row_ids_must_be_unique_across_the_corpus() -> None:
    docs = with_row_ids(table(OLD[:4]))
    ids = docs.column("row_id").to_pylist()
    ids[3] = ids[1]  # two different doc_ids hashed to one row id
    clash = docs.set_column(docs.schema.get_field_index("row_id"), "row_id", pa.array(ids, pa.int64()))
    with pytest.raises(ValueError, match=r"doc_ids 'a01' \(source 'alpha'\) and 'a03' \(source 'alpha'\).*row_id"):
        dedupe_incremental(clash, config=CFG)
    # a doc_id repeated (here in another source) shares its row id legitimately: the engine keys (source, doc_id)
    repeat = pa.Table.from_pylist([OLD[0], {**OLD[0], "source_id": "beta"}], schema=DOCUMENT_SCHEMA)
    check_row_ids(with_row_ids(repeat))
    assert dedupe_incremental(repeat, config=CFG).kept_count == 1
