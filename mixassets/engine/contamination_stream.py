"""The contamination screen over a stream of document batches, in memory bounded by one batch.

Why a module: a corpus does not fit in memory, but the screen needs only one batch of it at a time. The
item index is built once; each batch goes through :func:`~mixassets.engine.contamination.screen_batch`, its
clean and contaminated rows go straight to the caller's sinks (e.g. ``TableWriter.write``), and only the
findings, a few rows per contaminated document, are kept for the report and the item leaks. A finding names
its document by ``doc_id``, never by a position, so how the corpus was cut into batches changes nothing:
the outputs equal :func:`screen_corpus` of the whole table, row for row and in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.contamination import screen_batch
from mixassets.engine.contamination_index import ScreenConfig, ScreenIndex, build_index
from mixassets.engine.contamination_report import contamination_report, item_leaks
from mixassets.engine.freed_memory import releasing
from mixtrain.schema import FINDING_SCHEMA

# Rows per batch read from a stored corpus: a quarter of a row group. The batch is held several times over
# (decoded, split into clean and contaminated copies, the chunk's tokens), so smaller batches keep the peak
# near the writers' own buffers; measured in tests/test_screen_mix_memory.py (8,192 rows rose 24 MB where
# 2,048 rose 15 MB for 34 MB more text), at no measurable cost in speed (the screen works in chunks of 512).
SCREEN_BATCH_ROWS = 2_048

Sink = Callable[[pa.Table], None]


@dataclass(frozen=True)
class ScreenSummary:
    """What a screen keeps besides the documents: findings, the per-set report, the per-item leaks, counts."""

    findings: pa.Table  # FINDING_SCHEMA, in corpus order, then item field, then method
    report: pa.Table  # REPORT_SCHEMA: per eval set
    leaks: pa.Table  # ITEM_LEAK_SCHEMA: per leaked item
    documents_in: int
    documents_contaminated: int

    def clean_metadata(self) -> dict[str, int]:
        return {
            "documents_in": self.documents_in,
            "documents_clean": self.documents_in - self.documents_contaminated,
            "contaminated": self.documents_contaminated,
        }

    def findings_metadata(self) -> dict[str, int]:
        methods = pc.value_counts(self.findings.column("match_type")).to_pylist() if self.findings.num_rows else []
        return {
            "findings": self.findings.num_rows,
            "unscreenable_fields": int(pc.sum(self.report.column("fields_unscreenable")).as_py() or 0),
            **{f"findings/{m['values']}": int(m["counts"]) for m in methods},
        }

    def report_metadata(self) -> dict[str, int | float]:
        per_set: dict[str, int | float] = {}
        for row in self.report.to_pylist():
            for key in ("items_leaked", "holdout_leaked", "target_leaked", "documents_hit", "leaked_share"):
                per_set[f"{row['eval_set']}/{key}"] = row[key]
        return per_set


def screen_stream(
    batches: Iterable[pa.Table | pa.RecordBatch],
    items: pa.Table,
    config: ScreenConfig,
    *,
    clean: Sink,
    contaminated: Sink,
    index: ScreenIndex | None = None,
) -> ScreenSummary:
    """Screen every batch against ``items``, handing each batch's clean and contaminated rows (batch order) to
    the sinks as it goes; returns the findings and their summaries. ``index`` is ``build_index(items,
    config=config)`` when the caller already built it."""
    if index is None:
        index = build_index(items, config=config)
    elif index.config != config:
        raise ValueError(f"contamination: config differs from the one the index was built with ({index.config})")
    found: list[pa.Table] = [FINDING_SCHEMA.empty_table()]
    documents = dirty = 0
    for batch in releasing(batches):
        result = screen_batch(batch, index)
        ok, hit = result.split(batch)
        clean(ok)
        contaminated(hit)
        found.append(result.findings)
        documents += batch.num_rows
        dirty += hit.num_rows
    findings = pa.concat_tables(found)
    report = contamination_report(findings, items, config=index.config, unscreenable=index.unscreenable)
    return ScreenSummary(findings, report, item_leaks(findings), documents, dirty)


@dataclass(frozen=True)
class ScreenResult:
    """One screen of an in-memory corpus: the documents split, and the summary of the findings."""

    clean: pa.Table
    contaminated: pa.Table
    summary: ScreenSummary

    @property
    def findings(self) -> pa.Table:
        return self.summary.findings

    @property
    def report(self) -> pa.Table:
        return self.summary.report

    @property
    def leaks(self) -> pa.Table:
        return self.summary.leaks


def screen_corpus(docs: pa.Table, items: pa.Table, config: ScreenConfig) -> ScreenResult:
    """:func:`screen_stream` of a table held in memory (tests, benchmarks): the same code path as a stream."""
    clean: list[pa.Table] = [docs.schema.empty_table()]
    dirty: list[pa.Table] = [docs.schema.empty_table()]
    summary = screen_stream(
        docs.to_batches(max_chunksize=SCREEN_BATCH_ROWS), items, config, clean=clean.append, contaminated=dirty.append
    )
    return ScreenResult(pa.concat_tables(clean), pa.concat_tables(dirty), summary)
