"""Turning a source's files into document rows, and every record that cannot be read into a quarantine row.

A broken line must neither stop the run nor vanish: the person looking at the gated corpus has to be able
to account for every record in the input. Records are addressed by a locator relative to the project
directory, so that a document id means the same thing on every checkout of the project.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mixassets.engine import chat
from mixassets.engine.source_streams import (
    ASCII_WHITESPACE,
    RAW_PREFIX_BYTES,
    Layout,
    SourceReadError,
    open_binary,
    open_source,
    record_lines,
    strip_carriage_returns,
    with_hint,
)
from mixtrain.config.data import SourceSpec
from mixtrain.identity import relative_path
from mixtrain.schema import DOCUMENT_SCHEMA, READ_FAILURE_SCHEMA, with_row_ids

__all__ = ["CHAT_JOINER", "SourceReadError", "doc_id_for", "iter_source", "read_source", "relative_path"]

# Records (documents and unreadable ones together) per batch of ``iter_source``, and rows per Parquet read.
READ_BATCH_ROWS = 4_096
PARQUET_BATCH_ROWS = 1_024
RULE_UNDECODABLE = "read.undecodable"
RULE_MALFORMED = "read.malformed_record"
# A compressed stream that ends early or goes corrupt: one row stands for everything after the last line read.
RULE_TRUNCATED = "read.truncated"
# A record over the source's max_record_bytes: quarantined without ever being held whole.
RULE_OVERSIZED = "read.oversized"
# A chat document's text is its segments joined by this; the gate and review map offsets through it.
CHAT_JOINER = chat.CHAT_JOINER


def doc_id_for(source_id: str, locator: str) -> str:
    """Stable id of a record: the same source and locator give the same id on every machine."""
    return hashlib.sha256(f"{source_id}\x00{locator}".encode()).hexdigest()[:20]


@dataclass
class _Collector:
    """Python lists per column for one source; turned into Arrow tables once at the end."""

    spec: SourceSpec
    capture_time: datetime
    docs: dict[str, list[Any]] = field(default_factory=lambda: {n: [] for n in DOCUMENT_SCHEMA.names})
    bad: dict[str, list[Any]] = field(default_factory=lambda: {n: [] for n in READ_FAILURE_SCHEMA.names})

    def add_doc(self, locator: str, text: str, messages: str | None) -> None:
        d = self.docs
        d["doc_id"].append(doc_id_for(self.spec.id, locator))
        d["source_id"].append(self.spec.id)
        d["locator"].append(locator)
        d["kind"].append(self.spec.kind)
        d["text"].append(text)
        d["messages"].append(messages)
        d["license"].append(self.spec.license)
        d["rights_tags"].append(list(self.spec.rights_tags))
        d["attribution"].append(self.spec.attribution)
        d["domain"].append(self.spec.domain)
        d["language"].append(self.spec.language)
        d["capture_time"].append(self.capture_time)

    def add_bad(self, locator: str, rule_id: str, reason: str, text: str | None, raw: bytes | None) -> None:
        q = self.bad
        q["doc_id"].append(doc_id_for(self.spec.id, locator))
        q["source_id"].append(self.spec.id)
        q["locator"].append(locator)
        q["disposition"].append("quarantined")
        q["rule_id"].append(rule_id)
        q["reason"].append(reason)
        q["text"].append(text)
        q["raw"].append(raw)

    def tables(self) -> tuple[pa.Table, pa.Table]:
        return (
            _documents(self.docs),
            pa.table(self.bad, schema=READ_FAILURE_SCHEMA),
        )

    def rows(self) -> int:
        return len(self.docs["doc_id"]) + len(self.bad["doc_id"])

    def take(self) -> tuple[pa.Table, pa.Table]:
        """What was collected so far as tables, leaving the collector empty."""
        out = self.tables()
        self.docs = {n: [] for n in DOCUMENT_SCHEMA.names}
        self.bad = {n: [] for n in READ_FAILURE_SCHEMA.names}
        return out


def _documents(columns: dict[str, list[Any]]) -> pa.Table:
    """The collected columns as DOCUMENT_SCHEMA rows, each given its row id (derived from its doc id)."""
    fields = [f for f in DOCUMENT_SCHEMA if f.name != "row_id"]
    docs = pa.table({f.name: columns[f.name] for f in fields}, schema=pa.schema(fields))
    return with_row_ids(docs).select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA)


class _Malformed(ValueError):
    """A record parsed but does not have the shape the source spec promises; message names the field."""


def _is_encodable(s: str) -> bool:
    # JSON escapes can smuggle lone surrogates ("\ud800") into a str; Arrow cannot store those.
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text_value(value: Any, field_name: str) -> str:
    if value is None:
        raise _Malformed(f"field '{field_name}' is missing or null")
    if not isinstance(value, str):
        raise _Malformed(f"field '{field_name}' must be a string, got {type(value).__name__}")
    return value


def _messages_value(value: Any, field_name: str, tools: Any = None) -> tuple[str, str]:
    """Validate chat messages (tool calls included) and return (messages JSON, text); see :mod:`chat`."""
    try:
        conversation = chat.normalise(value, field_name, tools)
    except chat.ChatShapeError as e:
        raise _Malformed(str(e)) from None
    return conversation.to_json(), conversation.text()


def _record_to_doc(record: Any, spec: SourceSpec) -> tuple[str, str | None]:
    if not isinstance(record, dict):
        raise _Malformed(f"record must be a JSON object, got {type(record).__name__}")
    if spec.kind == "chat":
        tools = record.get(spec.tools_field)
        messages, text = _messages_value(record.get(spec.messages_field), spec.messages_field, tools)
        return text, messages
    return _text_value(record.get(spec.text_field), spec.text_field), None


def _read_jsonl(path: str, rel: str, out: _Collector) -> Iterator[None]:
    """Line by line: yields after each line, so the caller can hand the collected rows on between any two."""
    spec = out.spec
    cap = spec.max_record_bytes
    with open_source(path, spec) as src:
        layout, hint = src.layout, src.layout.hint
        lineno, partial = 0, None
        for line in record_lines(src.stream.chunks(), layout, cap):
            if not line.terminated and src.stream.failure:
                partial = line.raw  # the line the stream broke off in: part of the truncated rest
                break
            lineno += 1
            yield
            locator = f"{rel}:{lineno}"
            if line.size > cap:
                reason = (
                    f"{rel}:{lineno}: record is {line.size:,} bytes, over the source's max_record_bytes "
                    f"({cap:,}); raw holds its first {len(line.raw):,} bytes only"
                )
                out.add_bad(locator, RULE_OVERSIZED, with_hint(reason, hint), None, line.raw)
                continue
            _jsonl_line(strip_carriage_returns(line.raw, layout.carriage_return), rel, lineno, layout, out)
        if src.stream.failure:
            yield
            lineno += 1
            reason = (
                f"{rel}:{lineno}: decompression stopped after {src.stream.read_bytes:,} bytes of output "
                f"({src.stream.failure}); the rest of the file, from line {lineno} on, could not be read"
            )
            out.add_bad(f"{rel}:{lineno}", RULE_TRUNCATED, with_hint(reason, hint), None, partial)


def _jsonl_line(raw: bytes, rel: str, lineno: int, layout: Layout, out: _Collector) -> None:
    locator, hint = f"{rel}:{lineno}", layout.hint
    try:
        line = raw.decode(layout.codec)
    except UnicodeDecodeError as e:
        reason = f"{rel}:{lineno}: not valid {layout.label} (byte {e.start}: {e.reason})"
        out.add_bad(locator, RULE_UNDECODABLE, with_hint(reason, hint), None, raw)
        return
    if not line.strip(ASCII_WHITESPACE):
        return
    if hint and "\0" in line:  # no JSON holds a raw NUL: these bytes are text in another encoding
        reason = f"{rel}:{lineno}: holds NUL bytes, so it is not {layout.label} text"
        out.add_bad(locator, RULE_UNDECODABLE, with_hint(reason, hint), None, raw)
        return
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        reason = f"{rel}:{lineno}: not valid JSON ({e.msg} at column {e.colno})"
        out.add_bad(locator, RULE_MALFORMED, with_hint(reason, hint), line, raw)
        return
    except RecursionError:  # json.loads gives up past ~1000 nesting levels: a record, not the run, is bad
        out.add_bad(locator, RULE_MALFORMED, f"{rel}:{lineno}: JSON nested too deeply to parse", None, raw)
        return
    try:
        text, messages = _record_to_doc(record, out.spec)
    except _Malformed as e:
        out.add_bad(locator, RULE_MALFORMED, f"{rel}:{lineno}: {e}", line, raw)
        return
    if not (_is_encodable(text) and (messages is None or _is_encodable(messages))):
        reason = f"{rel}:{lineno}: text holds unpaired UTF-16 surrogates (escaped in the JSON)"
        out.add_bad(locator, RULE_UNDECODABLE, reason, None, raw)
        return
    out.add_doc(locator, text, messages)


@dataclass(frozen=True)
class _Undecodable:
    error: str


def _column_values(column: pa.ChunkedArray) -> list[Any]:
    """Python values of a column; a row whose bytes are not UTF-8 becomes an _Undecodable marker."""
    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        values: list[Any] = []
        for scalar in column:
            try:
                values.append(scalar.as_py())
            except UnicodeDecodeError as e:
                values.append(_Undecodable(f"byte {e.start}: {e.reason}"))
        return values


def _parquet_value(value: Any, row: int, rel: str, column: str, out: _Collector) -> None:
    spec = out.spec
    locator = f"{rel}#row={row}"
    if isinstance(value, _Undecodable):
        reason = f"{rel}#row={row}: field '{column}' is not valid UTF-8 ({value.error})"
        out.add_bad(locator, RULE_UNDECODABLE, reason, None, None)
        return
    try:
        if spec.kind == "chat":
            messages, text = _messages_value(value, column)
        else:
            text, messages = _text_value(value, column), None
    except _Malformed as e:
        raw = json.dumps(value, default=str, ensure_ascii=False).encode("utf-8", "backslashreplace")
        out.add_bad(locator, RULE_MALFORMED, f"{rel}#row={row}: {e}", None, raw)
        return
    record, cap = (text if messages is None else messages).encode("utf-8", "surrogatepass"), spec.max_record_bytes
    if len(record) > cap:
        keep = min(cap, RAW_PREFIX_BYTES)
        reason = (
            f"{rel}#row={row}: field '{column}' is {len(record):,} bytes, over the source's max_record_bytes "
            f"({cap:,}); raw holds its first {keep:,} bytes only"
        )
        out.add_bad(locator, RULE_OVERSIZED, reason, None, record[:keep])
        return
    out.add_doc(locator, text, messages)


def _read_parquet(path: str, rel: str, out: _Collector) -> Iterator[None]:
    """Batch by batch (``PARQUET_BATCH_ROWS`` rows, one row group at most, without pre-buffering, only the one
    column read), yielding after each row. A file that cannot be opened as Parquet is quarantined whole; one that
    fails part way through keeps the rows read so far and has each row it could not read quarantined."""
    spec = out.spec
    column = spec.messages_field if spec.kind == "chat" else spec.text_field
    with open_binary(path) as f:
        try:
            parquet = pq.ParquetFile(f, pre_buffer=False)
            names, total = parquet.schema_arrow.names, parquet.metadata.num_rows
        except (pa.ArrowException, OSError) as e:
            # The bytes are there but no row can be recovered; the whole file is the unit under review.
            out.add_bad(rel, RULE_MALFORMED, f"{rel}: not a readable Parquet file ({e})", None, None)
            return
        if column not in names:
            for row in range(total):
                yield
                reason = f"{rel}#row={row}: field '{column}' is not a column of the file (columns: {names})"
                out.add_bad(f"{rel}#row={row}", RULE_MALFORMED, reason, None, None)
            return
        row = 0
        batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[column], use_threads=False)
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as e:
                for lost in range(row, total):
                    yield
                    reason = f"{rel}#row={lost}: not readable (Parquet read failed from row {row} on: {e})"
                    out.add_bad(f"{rel}#row={lost}", RULE_MALFORMED, reason, None, None)
                return
            if batch is None:
                return
            for value in _column_values(batch.column(0)):
                yield
                _parquet_value(value, row, rel, column, out)
                row += 1


def _read_text(path: str, rel: str, out: _Collector) -> Iterator[None]:
    """A text file is one document, held whole by every later stage, so it is read up to the source's
    max_record_bytes and no further: a larger file is quarantined on what was read of it."""
    yield
    cap = out.spec.max_record_bytes
    with open_source(path, out.spec) as src:
        data = src.stream.read_upto(cap + 1)
        failure, layout = src.stream.failure, src.layout
    keep = min(cap, RAW_PREFIX_BYTES)
    if failure:
        reason = f"{rel}: decompression stopped after {len(data):,} bytes of output ({failure}); file quarantined"
        out.add_bad(rel, RULE_TRUNCATED, with_hint(reason, layout.hint), None, data[:keep])
        return
    if len(data) > cap:
        reason = (
            f"{rel}: over the source's max_record_bytes ({cap:,}), read no further; "
            f"raw holds its first {keep:,} bytes only"
        )
        out.add_bad(rel, RULE_OVERSIZED, with_hint(reason, layout.hint), None, data[:keep])
        return
    try:
        text = data.decode(layout.codec)
    except UnicodeDecodeError as e:
        line = data[: e.start].decode(layout.codec, "replace").count("\n") + 1
        offset = e.start + layout.bom
        reason = f"{rel}:{line}: not valid {layout.label} (byte offset {offset}: {e.reason}); whole file quarantined"
        out.add_bad(rel, RULE_UNDECODABLE, with_hint(reason, layout.hint), None, data)
        return
    out.add_doc(rel, text, None)


_READERS: dict[str, Callable[[str, str, _Collector], Iterator[None]]] = {
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
    "text": _read_text,
}


def iter_source(
    spec: SourceSpec, paths: list[str], *, base: str, capture_time: datetime, batch_rows: int = READ_BATCH_ROWS
) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Read ``paths`` of one source as (documents, quarantine) table pairs of at most ``batch_rows`` records
    together, in file and record order: memory holds one batch, not a file or the source.

    ``base`` is the project directory (or URL prefix) that locators are made relative to. Raises
    SourceReadError naming the file when a file cannot be opened; per-record problems become quarantine
    rows instead.
    """
    if capture_time.tzinfo is None:
        raise ValueError("capture_time must be timezone-aware (a naive time would be stored as if it were UTC)")
    if spec.kind == "chat" and spec.format == "text":
        raise ValueError(f"source '{spec.id}': format 'text' cannot hold chat records (use jsonl or parquet)")
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    out = _Collector(spec, capture_time.astimezone(timezone.utc))
    reader = _READERS[spec.format]
    for path in paths:
        for _ in reader(path, relative_path(path, base), out):
            # Called before each record is added: hand on a full batch first.
            if out.rows() >= batch_rows:
                yield out.take()
    if out.rows():
        yield out.take()


def read_source(spec: SourceSpec, paths: list[str], *, base: str, capture_time: datetime) -> tuple[pa.Table, pa.Table]:
    """Read ``paths`` of one source into (documents, quarantine) tables (``iter_source``, concatenated)."""
    parts = list(iter_source(spec, paths, base=base, capture_time=capture_time))
    docs = pa.concat_tables([DOCUMENT_SCHEMA.empty_table(), *(d for d, _ in parts)]).combine_chunks()
    bad = pa.concat_tables([READ_FAILURE_SCHEMA.empty_table(), *(b for _, b in parts)]).combine_chunks()
    return docs, bad
