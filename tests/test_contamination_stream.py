"""The streamed screen equals the whole-table screen, however the corpus is cut into batches."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import pyarrow as pa
import pytest
from upath import UPath

from mixassets.engine.contamination import (
    ScreenConfig,
    build_index,
    contamination_report,
    item_leaks,
    screen,
    screen_batch,
)
from mixassets.engine.contamination_stream import screen_corpus, screen_stream
from mixtrain.schema import DOCUMENT_SCHEMA, FINDING_SCHEMA, with_row_ids
from mixtrain.tables import PendingTable, TableWriter
from tests.test_contamination import FILLER, PROMPT, SOLUTION, items_table, merged, reindented

CONFIG = ScreenConfig()


def _corpus(n: int = 600, seed: int = 3, *, nulls: bool = True) -> pa.Table:
    """Mostly filler; every few documents carry the item whole, edited, or in part, or are a near-copy of it
    (Jaccard); some texts are null (empty when ``nulls`` is off, as parquet's schema demands)."""
    rng = random.Random(seed)
    plants = [PROMPT + SOLUTION, reindented(SOLUTION), merged(PROMPT), SOLUTION[:120], None if nulls else ""]
    rows = []
    for i in range(n):
        text: str | None = FILLER * rng.randint(1, 6)
        if rng.random() < 0.15:
            plant = rng.choice(plants)
            text = None if plant is None else text + plant + FILLER
        elif rng.random() < 0.03:
            text = reindented(SOLUTION)
        rows.append(
            {
                "doc_id": f"{i:016x}",
                "source_id": rng.choice(["web", "code"]),
                "locator": f"f:{i}",
                "kind": "text",
                "text": text,
            }
        )
    return with_row_ids(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA))


ITEMS = items_table({"prompt": PROMPT, "canonical_solution": SOLUTION})


def _expected(docs: pa.Table) -> tuple[pa.Table, pa.Table, pa.Table, pa.Table, pa.Table]:
    index = build_index(ITEMS, config=CONFIG)
    clean, dirty, findings = screen(docs, ITEMS, config=CONFIG, index=index)
    report = contamination_report(findings, ITEMS, config=CONFIG, unscreenable=index.unscreenable)
    return clean, dirty, findings, report, item_leaks(findings)


@pytest.mark.parametrize("batch_rows", [1, 37, 256, 100_000])
def test_stream_equals_the_whole_table_screen(batch_rows: int) -> None:
    docs = _corpus()
    clean, dirty, findings, report, leaks = _expected(docs)
    assert findings.num_rows and {"ngram13", "containment", "jaccard"} <= set(findings["match_type"].to_pylist())
    got_clean: list[pa.Table] = []
    got_dirty: list[pa.Table] = []
    summary = screen_stream(
        docs.to_batches(max_chunksize=batch_rows),
        ITEMS,
        CONFIG,
        clean=got_clean.append,
        contaminated=got_dirty.append,
    )
    assert pa.concat_tables(got_clean).equals(clean)
    assert pa.concat_tables(got_dirty).equals(dirty)
    assert summary.findings.equals(findings)
    assert summary.report.equals(report)
    assert summary.leaks.equals(leaks)
    assert summary.clean_metadata() == {
        "documents_in": docs.num_rows,
        "documents_clean": clean.num_rows,
        "contaminated": dirty.num_rows,
    }


def test_stream_from_a_stored_table_writes_the_versions_a_whole_table_would(tmp_path: Path) -> None:
    """Clean and contaminated rows streamed into ``TableWriter``s make the same parts, hence the same data
    versions, as the in-memory tables the asset used to hand to the IO manager."""
    docs = _corpus(900, nulls=False)
    stored = PendingTable.of(docs, rows_per_part=256).commit(UPath(tmp_path / "corpus"))
    clean_w = TableWriter(str(tmp_path / "clean"), stored.schema, rows_per_part=300)
    dirty_w = TableWriter(str(tmp_path / "dirty"), stored.schema, rows_per_part=300)
    summary = screen_stream(
        stored.batches(batch_size=100), ITEMS, CONFIG, clean=clean_w.write, contaminated=dirty_w.write
    )
    clean, dirty, findings, *_ = _expected(stored.read())
    assert clean_w.finish().version == PendingTable.of(clean, rows_per_part=300).version
    assert dirty_w.finish().version == PendingTable.of(dirty, rows_per_part=300).version
    assert summary.findings.equals(findings)


def test_screen_corpus_is_the_stream_of_the_table() -> None:
    docs = _corpus(300)
    clean, dirty, findings, report, leaks = _expected(docs)
    result = screen_corpus(docs, ITEMS, CONFIG)
    for got, want in zip(
        (result.clean, result.contaminated, result.findings, result.report, result.leaks),
        (clean, dirty, findings, report, leaks),
        strict=True,
    ):
        assert got.equals(want)


def test_screen_corpus_of_an_empty_table() -> None:
    result = screen_corpus(DOCUMENT_SCHEMA.empty_table(), ITEMS, CONFIG)
    assert result.clean.num_rows == result.contaminated.num_rows == result.findings.num_rows == 0
    assert result.findings.schema.equals(FINDING_SCHEMA)
    assert result.summary.clean_metadata() == {"documents_in": 0, "documents_clean": 0, "contaminated": 0}


def test_screen_batch_runs_on_workers_given_a_pickled_index() -> None:
    """What a Ray driver does: broadcast the pickled index, screen batches apart, concatenate in order."""
    docs = _corpus(400)
    _clean, dirty, findings, *_ = _expected(docs)
    shipped = pickle.dumps(build_index(ITEMS, config=CONFIG))
    parts = [screen_batch(batch, pickle.loads(shipped)) for batch in docs.to_batches(max_chunksize=64)]
    assert pa.concat_tables([p.findings for p in parts]).equals(findings)
    hits = [p.split(b)[1] for p, b in zip(parts, docs.to_batches(max_chunksize=64), strict=True)]
    assert pa.concat_tables(hits).equals(dirty)
