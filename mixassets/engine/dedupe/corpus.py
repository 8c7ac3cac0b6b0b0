"""The documents a dedupe run reads: an ordered list of tables, read back batch by batch when texts are needed.

Why: texts are the bulk of a corpus, yet a run needs each one only at a few moments: to sketch it, to verify a
candidate pair it is in, and to copy it to the output. Holding every text for the whole run makes memory grow
with text size. A :class:`Corpus` instead hands out the text-free columns (ids, keeper metadata) once and
streams texts back in batches of a bounded number of rows, reading only the tables and parts that hold the
rows a pass wants. A table is a committed :class:`~mixtrain.tables.StoredTable` (the asset's gated partitions)
or an in-memory Arrow table (tests, benchmarks), which is read by zero-copy slices.

With a content view (:meth:`Corpus.with_view`) the texts handed out are what dedupe compares of each row (a chat
record's content without its source's template, :mod:`~mixassets.engine.dedupe.content`); rows are unchanged.

Rows are addressed by *position*: the row's index in the tables taken one after another. Every pass reads the
tables in the same order, and a stored table's parts are checked against its manifest on every read, so a
position means the same row in every pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from mixassets.engine.dedupe.content import VIEW_COLUMNS, ContentView
from mixtrain.schema import with_row_ids


@runtime_checkable
class StoredTable(Protocol):
    """What the corpus reads of a committed table (:class:`mixtrain.tables.StoredTable`), named here so the
    engine depends on the shape and not on the storage module."""

    @property
    def rows(self) -> int: ...

    @property
    def parts(self) -> Sequence[Any]: ...  # each with ``rows``

    @property
    def schema(self) -> pa.Schema: ...

    def read(self, columns: Sequence[str] | None = None) -> pa.Table: ...

    def batches(
        self,
        columns: Sequence[str] | None = None,
        batch_size: int = ...,
        *,
        parts: Iterable[int] | None = None,
        buffer_size: int = 0,
    ) -> Iterator[pa.RecordBatch]: ...


CorpusTable = pa.Table | StoredTable
# The columns a run keeps in memory for every document: what sketches, keepers and resolution read. Never text.
METADATA_COLUMNS = ("doc_id", "row_id", "source_id", "domain", "license", "capture_time", "kind")
# Rows per batch read back from a stored table: ~2 MB of text at ~2 KB a document, and the per-batch work
# (a Python call, an Arrow take) is negligible next to shingling that many texts.
READ_ROWS = 1024
# Read buffer per column chunk of a stored table (see StoredTable.batches): memory holds a batch, not a row group.
READ_BUFFER_BYTES = 1 << 20
# Positions taken from an in-memory text column at a time when a pass asks for scattered rows.
_TAKE_ROWS = 2048


@dataclass(frozen=True)
class _Span:
    """One table of the corpus and the positions it holds: ``start`` .. ``start + rows``."""

    table: CorpusTable
    start: int
    rows: int


class Corpus:
    """An ordered list of document tables read in batches; see the module docstring."""

    def __init__(
        self, tables: Sequence[CorpusTable], *, read_rows: int = READ_ROWS, view: ContentView | None = None
    ) -> None:
        if not tables:
            raise ValueError("dedupe: a corpus needs at least one table")
        if read_rows < 1:
            raise ValueError(f"dedupe: read_rows must be >= 1, got {read_rows}")
        spans, start = [], 0
        for table in tables:
            if not isinstance(table, (pa.Table, StoredTable)):
                raise TypeError(f"dedupe: a corpus table is a pyarrow Table or a StoredTable, got {type(table)}")
            rows = table.num_rows if isinstance(table, pa.Table) else table.rows
            spans.append(_Span(table, start, rows))
            start += rows
        self._spans = tuple(spans)
        self.rows = start
        self.read_rows = read_rows
        self.view = view

    def with_view(self, view: ContentView | None) -> Corpus:
        """The same tables, whose texts (:meth:`text_batches`, :meth:`texts_at`) are what ``view`` compares of
        each row; the rows themselves (:meth:`kept_batches`, :meth:`table`) are unchanged."""
        return Corpus(self.tables, read_rows=self.read_rows, view=view)

    def _text_columns(self) -> list[str]:
        """The columns a text batch is read with: ``text``, plus what the view needs when it has it."""
        if self.view is None:
            return ["text"]
        return [c for c in VIEW_COLUMNS if c in self.column_names]

    def _texts(self, part: pa.Table | pa.RecordBatch) -> pa.Array:
        if self.view is None:
            column = part.column("text")
            return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        return self.view.texts(part)

    @classmethod
    def of(cls, docs: CorpusInput) -> Corpus:
        """``docs`` as a corpus: a corpus as is, one table, or a sequence of tables in order."""
        if isinstance(docs, Corpus):
            return docs
        if isinstance(docs, (pa.Table, StoredTable)):
            return cls([docs])
        return cls(list(docs))

    @property
    def tables(self) -> tuple[CorpusTable, ...]:
        return tuple(s.table for s in self._spans)

    @property
    def schema(self) -> pa.Schema:
        """The first table's schema: the schema of the kept rows (the tables of a corpus share one)."""
        return self._spans[0].table.schema

    @property
    def column_names(self) -> list[str]:
        return list(self.schema.names)

    def metadata(self) -> pa.Table:
        """The text-free columns of every row (those of :data:`METADATA_COLUMNS` the tables have), in position
        order, with ``row_id`` filled from ``doc_id`` where it is missing or null."""
        names = [c for c in METADATA_COLUMNS if c in self.column_names]
        parts = []
        for span in self._spans:
            table = span.table
            parts.append(table.select(names) if isinstance(table, pa.Table) else table.read(columns=names))
        schema = parts[0].schema
        meta = pa.concat_tables([p if p.schema.equals(schema) else p.cast(schema) for p in parts])
        # One chunk per column: the sketches then share these buffers rather than holding combined copies of the
        # ids (~70 bytes a document), and takes from them need no concatenation.
        return with_row_ids(meta.combine_chunks())

    # -- texts ---------------------------------------------------------------------------------------------
    def text_batches(self, wanted: np.ndarray | None = None) -> Iterator[tuple[int, pa.Array]]:
        """``(first position, texts)`` of consecutive rows, in position order, ``read_rows`` at most per batch
        from a stored table. With ``wanted`` (a boolean mask by position), only tables and parts holding a
        wanted row are read; their batches still come whole."""
        for span in self._spans:
            if wanted is not None and not wanted[span.start : span.start + span.rows].any():
                continue
            table = span.table
            if isinstance(table, pa.Table):
                columns = table.select(self._text_columns())
                for at in range(0, span.rows, self.read_rows):
                    yield span.start + at, self._texts(columns.slice(at, self.read_rows))
                continue
            yield from self._stored_texts(span, wanted)

    def column_batches(self, columns: Sequence[str], wanted: np.ndarray) -> Iterator[pa.Table | pa.RecordBatch]:
        """Batches of ``columns`` (those the tables have) of the tables and parts holding a ``wanted`` row, each
        filtered to its wanted rows: a pass over a few rows' columns, e.g. the chat rows' messages."""
        names = [c for c in columns if c in self.column_names]
        for span in self._spans:
            if not wanted[span.start : span.start + span.rows].any():
                continue
            table = span.table
            if isinstance(table, pa.Table):
                for at in range(0, span.rows, self.read_rows):
                    keep = wanted[span.start + at : span.start + at + self.read_rows]
                    if keep.any():
                        yield table.select(names).slice(at, len(keep)).filter(pa.array(keep))
                continue
            for part, first in self._parts_with(span, wanted):
                at = first
                for batch in table.batches(names, self.read_rows, parts=[part], buffer_size=READ_BUFFER_BYTES):
                    keep = wanted[at : at + batch.num_rows]
                    at += batch.num_rows
                    if keep.any():
                        yield batch.filter(pa.array(keep))

    def texts_at(self, positions: np.ndarray) -> Iterator[tuple[np.ndarray, list[str | None]]]:
        """The texts of ``positions`` (ascending, distinct) as ``(positions, texts)`` chunks in position order:
        a stored table is streamed, reading only the parts that hold one of them."""
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size == 0:
            return
        if np.any(positions[1:] <= positions[:-1]) or positions[0] < 0 or positions[-1] >= self.rows:
            raise ValueError("dedupe: texts_at needs ascending distinct positions within the corpus")
        for span in self._spans:
            lo, hi = np.searchsorted(positions, [span.start, span.start + span.rows])
            if lo == hi:
                continue
            local = positions[lo:hi] - span.start
            table = span.table
            if isinstance(table, pa.Table):
                columns = table.select(self._text_columns())
                for at in range(0, local.size, _TAKE_ROWS):
                    chunk = local[at : at + _TAKE_ROWS]
                    yield chunk + span.start, self._texts(columns.take(pa.array(chunk, pa.int64()))).to_pylist()
                continue
            wanted = np.zeros(self.rows, dtype=bool)
            wanted[local + span.start] = True
            for start, texts in self._stored_texts(span, wanted):
                a, b = np.searchsorted(local, [start - span.start, start - span.start + len(texts)])
                if a < b:
                    rows = local[a:b] + span.start
                    yield rows, texts.take(pa.array(rows - start, pa.int64())).to_pylist()

    def _stored_texts(self, span: _Span, wanted: np.ndarray | None) -> Iterator[tuple[int, pa.Array]]:
        """:meth:`text_batches` of the parts of one stored table that hold a ``wanted`` row."""
        assert isinstance(span.table, StoredTable)
        for part, first in self._parts_with(span, wanted):
            at = first
            columns = self._text_columns()
            for batch in span.table.batches(columns, self.read_rows, parts=[part], buffer_size=READ_BUFFER_BYTES):
                yield at, self._texts(batch)
                at += batch.num_rows

    def _parts_with(self, span: _Span, wanted: np.ndarray | None) -> Iterator[tuple[int, int]]:
        """``(part index, first position)`` of the parts of a stored table that hold a ``wanted`` row."""
        assert isinstance(span.table, StoredTable)
        first = span.start
        for index, part in enumerate(span.table.parts):
            if wanted is None or wanted[first : first + part.rows].any():
                yield index, first
            first += part.rows

    # -- rows ----------------------------------------------------------------------------------------------
    def kept_batches(self, mask: np.ndarray, max_rows: int) -> Iterator[pa.Table]:
        """The rows where ``mask`` is True, in position order, as tables of up to ``max_rows`` input rows each
        (fewer from a stored table: ``read_rows`` at most). A batch where every row is kept is not copied: a
        slice of an in-memory table, or the batch as read."""
        if max_rows < 1:
            raise ValueError(f"dedupe: max_rows must be >= 1, got {max_rows}")
        if len(mask) != self.rows:
            raise ValueError(f"dedupe: a mask of {len(mask)} rows for a corpus of {self.rows}")
        for span in self._spans:
            table = span.table
            if isinstance(table, pa.Table):
                for at in range(0, span.rows, max_rows):
                    keep = mask[span.start + at : span.start + at + max_rows]
                    if keep.any():
                        part = table.slice(at, len(keep))
                        yield part if keep.all() else part.filter(pa.array(keep))
                continue
            rows = min(max_rows, self.read_rows)
            for part, first in self._parts_with(span, mask):
                at = first
                for batch in table.batches(batch_size=rows, parts=[part], buffer_size=READ_BUFFER_BYTES):
                    keep = mask[at : at + batch.num_rows]
                    at += batch.num_rows
                    if keep.any():
                        out = pa.Table.from_batches([batch])
                        yield out if keep.all() else out.filter(pa.array(keep))

    def table(self) -> pa.Table:
        """Every row as one in-memory table (an in-memory corpus of one table is returned as is): for tests and
        small corpora only, since it holds every text."""
        if len(self._spans) == 1 and isinstance(self._spans[0].table, pa.Table):
            return self._spans[0].table
        parts = [s.table if isinstance(s.table, pa.Table) else s.table.read() for s in self._spans]
        schema = parts[0].schema
        return pa.concat_tables([p if p.schema.equals(schema) else p.cast(schema) for p in parts])


CorpusInput = Corpus | CorpusTable | Sequence[CorpusTable]


def check_row_ids(meta: pa.Table) -> None:
    """Fail when two *different* doc_ids share a row id (a 64-bit collision of their hashes; see
    :func:`~mixtrain.schema.row_ids_for`), naming both. A repeated doc_id is not a collision: the engine keys
    documents by (source_id, doc_id), and rows that repeat an id are deduped like any others."""
    n = meta.num_rows
    if n < 2:
        return
    ids = meta.column("row_id").to_numpy()
    order = np.argsort(ids, kind="stable")
    same = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if same.size == 0:
        return
    a, b = pa.array(order[same], pa.int64()), pa.array(order[same + 1], pa.int64())
    doc_a, doc_b = meta.column("doc_id").take(a), meta.column("doc_id").take(b)
    clash = np.flatnonzero(np.asarray(doc_a.to_pylist(), dtype=object) != np.asarray(doc_b.to_pylist(), dtype=object))
    if clash.size == 0:
        return
    k = int(clash[0])
    src = meta.column("source_id")
    first, second = int(a[k].as_py()), int(b[k].as_py())
    raise ValueError(
        f"dedupe: doc_ids {doc_a[k].as_py()!r} (source {src[first].as_py()!r}) and {doc_b[k].as_py()!r} (source "
        f"{src[second].as_py()!r}) have the same row_id {int(ids[first])} ({clash.size} such collision(s)): row ids "
        f"must be unique across the corpus; give one of the documents another doc_id"
    )
