"""Turning a source's files into document rows, and every record that cannot be read into a quarantine row.

A broken line must neither stop the run nor vanish: the person looking at the gated corpus has to be able
to account for every record in the input. Records are addressed by a locator relative to the project
directory, so that a document id means the same thing on every checkout of the project.
"""

from __future__ import annotations

import bz2
import codecs
import hashlib
import json
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from mixassets.engine import chat
from mixtrain.config.data import SourceSpec
from mixtrain.identity import relative_path
from mixtrain.schema import DOCUMENT_SCHEMA, READ_FAILURE_SCHEMA, with_row_ids

# Records (documents and unreadable ones together) per batch of ``iter_source``, and rows per Parquet read.
READ_BATCH_ROWS = 4_096
PARQUET_BATCH_ROWS = 1_024
RULE_UNDECODABLE = "read.undecodable"
RULE_MALFORMED = "read.malformed_record"
# A compressed stream that ends early or goes corrupt: one row stands for everything after the last line read.
RULE_TRUNCATED = "read.truncated"
# A record over the source's max_record_bytes: quarantined without ever being held whole.
RULE_OVERSIZED = "read.oversized"
# Bytes of decompressed data read at a time, and the most of an oversized or cut-off record a quarantine row keeps.
READ_CHUNK_BYTES = 1 << 16
RAW_PREFIX_BYTES = 4_096
# How much of a file's start is looked at to guess its encoding.
_SNIFF_BYTES = 1_024
# A chat document's text is its segments joined by this; the gate and review map offsets through it.
CHAT_JOINER = chat.CHAT_JOINER


class SourceReadError(OSError):
    """A source file could not be opened or read at all; the message names the file."""


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


class _SourceIOError(Exception):
    """The file underneath a decompressor failed (disk, network). Kept apart from a corrupt stream because a
    transient failure must fail the run, to be retried, rather than quarantine the rest of the file for good."""


def _file_pieces(f: Any, prefix: bytes) -> Iterator[bytes]:
    """A file's bytes in chunks, starting with the ``prefix`` already read from it, I/O errors marked."""
    if prefix:
        yield prefix
    while True:
        try:
            data = f.read(READ_CHUNK_BYTES)
        except OSError as e:
            raise _SourceIOError(str(e)) from e
        if not data:
            return
        yield data


# Compressed bytes fed to zstd at a time: one call's output is held whole and zstd can expand ~30,000-fold, so a
# small piece bounds it (gzip and bz2 bound their output directly).
_ZSTD_FEED_BYTES = 1_024


def _new_decompressor(compression: str) -> Any:
    if compression == "gzip":
        return zlib.decompressobj(wbits=31)  # one gzip member, header and CRC checked
    if compression == "bz2":
        return bz2.BZ2Decompressor()
    return zstandard.ZstdDecompressor().decompressobj()


def _decompressed(compressed: Iterator[bytes], compression: str) -> Iterator[bytes]:
    """The decompressed bytes of every member (gzip), stream (bz2) or frame (zstd) in turn, in chunks of bounded
    size, raising EOFError when the input ends inside one.

    Not GzipFile or fsspec's registered "zstd" reader: GzipFile drops what it had decompressed in the read that
    meets a cut-off member, and the zstd reader stops after the first frame and ends quietly inside a cut-off one,
    so either would lose records a partial file still holds, without a trace.
    """
    obj: Any = None
    data = b""
    pending = False  # the decompressor may hold more output without being fed
    while True:
        if not data and not pending:
            data = next(compressed, b"")
            if not data:
                if obj is not None:
                    raise EOFError(f"the {compression} stream ends part way through (the file is cut short)")
                return
        if obj is None:
            obj = _new_decompressor(compression)
        if compression == "zstd":
            piece, data = data[:_ZSTD_FEED_BYTES], data[_ZSTD_FEED_BYTES:]
            out = obj.decompress(piece)
        else:
            out = obj.decompress(data, READ_CHUNK_BYTES)
            data = obj.unconsumed_tail if compression == "gzip" else b""
            pending = not obj.needs_input if compression == "bz2" else len(out) == READ_CHUNK_BYTES
        if out:
            yield out
        if obj.eof:  # the next member, stream or frame starts in what follows, if anything does
            data, obj, pending = obj.unused_data + data, None, False


# What a decompressor raises on a cut-off or corrupt stream: EOFError for one cut short, zlib.error, OSError
# (bz2), zstandard.ZstdError. _SourceIOError, an I/O failure of the file itself, is not among them.
_STREAM_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error, zstandard.ZstdError)

_MAGIC = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd", "bz2": b"BZh"}
_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}


def _magic_compression(head: bytes) -> str | None:
    if head.startswith(_MAGIC["gzip"]):
        return "gzip"
    # a zstd frame, or a skippable frame (magic 0x184D2A50-5F, little-endian) that precedes one
    if head.startswith(_MAGIC["zstd"]) or (len(head) >= 4 and head[0] >> 4 == 5 and head[1:4] == b"\x2a\x4d\x18"):
        return "zstd"
    if head.startswith(_MAGIC["bz2"]) and len(head) >= 4 and head[3:4] in b"123456789":
        return "bz2"
    return None


def _compression(declared: str, path: str, head: bytes) -> tuple[str | None, str | None]:
    """(compression to read ``path`` with, hint for failure reasons). The magic bytes decide before the name,
    so a misnamed file still reads: a gzip stream always starts 1f 8b, whatever it is called."""
    magic = _magic_compression(head)
    looks = f"looks like {magic}-compressed data; declare compression: {magic}" if magic else None
    if declared == "none":
        return None, looks
    if declared != "infer":
        if magic is None:
            return declared, f"does not start with a {declared} header"
        return declared, (looks if magic != declared else None)
    if magic is None:
        suffix = next((s for s in _SUFFIXES if path.lower().endswith(s)), None)
        if suffix is not None:
            named = _SUFFIXES[suffix]
            if head and _MAGIC[named].startswith(head):  # cut off inside its own header: a broken compressed file
                return named, None
            return None, f"named *{suffix} but has no {named} header, so it was read uncompressed"
    return magic, None


_UNICODE_CODECS = {"utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE, whose mark it starts with
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


# A guess at BOM-less UTF-16 needs this many code units to go on, and this share of them readable as text.
_SNIFF_MIN_UNITS = 8
_SNIFF_PRINTABLE = 0.95


def _utf16_order(head: bytes) -> str | None:
    """The byte order of ``head`` if it reads as UTF-16 without a byte-order mark.

    Mostly-ASCII text (JSON punctuation and keys at least) has a NUL in every other byte, on the odd bytes for
    little-endian; UTF-8 text has none and UTF-32 has them on both sides. Binary junk can have NULs too, so the
    guess also needs the bytes to decode, in that order, to printable text.
    """
    units = len(head) // 2
    if units < _SNIFF_MIN_UNITS:
        return None
    even, odd = head[0 : 2 * units : 2].count(0), head[1 : 2 * units : 2].count(0)
    if odd >= 0.3 * units and even * 8 <= odd:
        order = "utf-16-le"
    elif even >= 0.3 * units and odd * 8 <= even:
        order = "utf-16-be"
    else:
        return None
    text = head[: 2 * units].decode(order, errors="replace").rstrip("\ufffd")  # the sample may end mid-pair
    readable = sum(c.isprintable() or c in "\t\n\r" for c in text) - text.count("\ufffd")
    return order if readable >= _SNIFF_PRINTABLE * len(text) else None


@dataclass(frozen=True)
class _Layout:
    """How a file's decompressed bytes become lines of text."""

    codec: str  # a stateless codec, decoded line by line (a BOM is skipped once, never decoded)
    bom: int  # bytes of byte-order mark at the start
    hint: str | None  # what the bytes look like when that is not how they are read: added to failure reasons
    newline: bytes = field(init=False)
    carriage_return: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "newline", "\n".encode(self.codec))
        object.__setattr__(self, "carriage_return", "\r".encode(self.codec))

    @property
    def label(self) -> str:
        return "UTF-8" if self.codec == "utf-8" else self.codec

    @property
    def unit(self) -> int:
        """Code-unit width (2 for UTF-16, 4 for UTF-32, else 1): a newline counts only where a code unit starts,
        since the bytes of "\n" in UTF-16 also occur inside other characters (U+0A00, U+010A, ...)."""
        return len(self.newline)


def _layout(spec: SourceSpec, head: bytes) -> tuple[str, int, str | None]:
    """(codec, BOM length, hint) for a file that starts with ``head`` (decompressed)."""
    declared = codecs.lookup(spec.encoding).name
    if declared in _UNICODE_CODECS:
        for bom, codec in _BOMS:
            if head.startswith(bom) and not (declared.startswith("utf-16") and codec.startswith("utf-32")):
                return codec, len(bom), None
    order = _utf16_order(head)
    if declared == "utf-16":
        return order or "utf-16-le", 0, None
    if declared == "utf-32":
        return ("utf-32-be" if head[:2] == b"\0\0" else "utf-32-le"), 0, None
    if declared in ("utf-8", "utf-8-sig"):
        if order and not spec.encoding_declared:
            return order, 0, None
        declared = "utf-8"
    if order and not declared.startswith("utf-16"):
        return declared, 0, f"looks like UTF-16 ({order[-2:].upper()}, no byte-order mark); declare encoding: utf-16"
    return declared, 0, None


class _ByteStream:
    """One file's decompressed bytes in chunks. A cut-off or corrupt compressed stream ends the chunks and
    leaves its error in ``failure``; an I/O error of the file itself raises SourceReadError."""

    def __init__(self, pieces: Iterator[bytes], path: str) -> None:
        self._pieces = pieces
        self._path = path
        self._head = b""
        self._done = False
        self.failure: str | None = None
        self.read_bytes = 0

    def _next(self) -> bytes:
        if self._done:
            return b""
        try:
            data = next(self._pieces, b"")
        except _SourceIOError as e:
            raise SourceReadError(f"{self._path}: cannot read source file: {e}") from e
        except _STREAM_ERRORS as e:
            kind = type(e).__name__ if type(e).__module__ == "builtins" else f"{type(e).__module__}.{type(e).__name__}"
            self.failure, self._done = f"{kind}: {e}", True
            return b""
        self._done = not data
        self.read_bytes += len(data)
        return data

    def head(self, size: int) -> bytes:
        """The first ``size`` bytes (fewer at the end), which ``chunks`` then hands out again."""
        while len(self._head) < size and (data := self._next()):
            self._head += data
        return self._head[:size]

    def skip(self, size: int) -> None:
        self.head(size)
        self._head = self._head[size:]

    def chunks(self) -> Iterator[bytes]:
        if self._head:
            head, self._head = self._head, b""
            yield head
        while data := self._next():
            yield data

    def read_upto(self, size: int) -> bytes:
        """At most ``size`` bytes, reading no more than a chunk past them."""
        parts, got = [], 0
        for chunk in self.chunks():
            parts.append(chunk)
            got += len(chunk)
            if got >= size:
                break
        return b"".join(parts)[:size]


@dataclass
class _Source:
    stream: _ByteStream
    layout: _Layout


@contextmanager
def _open_source(path: str, spec: SourceSpec) -> Iterator[_Source]:
    """A jsonl or text file opened for streaming: decompressed as declared or as its magic bytes say, its
    encoding settled from the declaration and its first bytes."""
    try:
        f = fsspec.open(path, "rb").open()
    except (OSError, ValueError) as e:
        raise SourceReadError(f"{path}: cannot read source file: {e}") from e
    with f:
        try:
            magic = f.read(4)
        except OSError as e:
            raise SourceReadError(f"{path}: cannot read source file: {e}") from e
        compression, compression_hint = _compression(spec.compression, path, magic)
        pieces = _file_pieces(f, magic)
        if compression is not None:
            pieces = _decompressed(pieces, compression)
        stream = _ByteStream(pieces, path)
        codec, bom, encoding_hint = _layout(spec, stream.head(_SNIFF_BYTES))
        stream.skip(bom)
        hint = "; ".join(h for h in (compression_hint, encoding_hint) if h) or None
        yield _Source(stream, _Layout(codec, bom, hint))


@dataclass(frozen=True)
class _Line:
    raw: bytes  # the line without its newline; only its first bytes when it is over the cap
    size: int  # bytes of the whole line
    terminated: bool  # False for the bytes after the last newline


class _Partial:
    """The line being read across chunks: its bytes while within the cap, after that its first bytes and length."""

    def __init__(self, cap: int, keep: int) -> None:
        self._cap, self._keep = cap, keep
        self._buf = bytearray()
        self._prefix: bytes | None = None
        self.size = 0

    def add(self, piece: bytes) -> None:
        self.size += len(piece)
        if self._prefix is None:
            self._buf += piece
            if len(self._buf) > self._cap:
                self._prefix, self._buf = bytes(self._buf[: self._keep]), bytearray()

    def take(self, terminated: bool) -> _Line:
        line = _Line(bytes(self._buf) if self._prefix is None else self._prefix, self.size, terminated)
        self._buf, self._prefix, self.size = bytearray(), None, 0
        return line


def _split_aligned(block: bytes, newline: bytes) -> list[bytes]:
    """``block.split(newline)``, counting only the newlines that start on a code unit (``block`` starts on one)."""
    unit = len(newline)
    parts, start, pos = [], 0, 0
    while (at := block.find(newline, pos)) >= 0:
        if at % unit:
            pos = at + 1
            continue
        parts.append(block[start:at])
        start = pos = at + unit
    parts.append(block[start:])
    return parts


def _lines(chunks: Iterator[bytes], layout: _Layout, cap: int) -> Iterator[_Line]:
    """The lines of a stream of chunks. A line over ``cap`` bytes is let go of as it is read, keeping its first
    bytes (RAW_PREFIX_BYTES, at most ``cap``) and its length, so memory holds about ``cap`` plus a chunk, whatever
    the file holds."""
    newline, unit, keep = layout.newline, layout.unit, min(cap, RAW_PREFIX_BYTES)
    partial = _Partial(cap, keep)
    carry = b""  # UTF-16/32: the bytes of a code unit split between chunks
    for chunk in chunks:
        if unit > 1:
            chunk = carry + chunk
            cut = len(chunk) - len(chunk) % unit
            chunk, carry = chunk[:cut], chunk[cut:]
        *complete, last = chunk.split(newline) if unit == 1 else _split_aligned(chunk, newline)
        for piece in complete:
            if partial.size:
                partial.add(piece)
                yield partial.take(True)
            else:
                yield _Line(piece if len(piece) <= cap else piece[:keep], len(piece), True)
        partial.add(last)
    partial.add(carry)
    if partial.size:
        yield partial.take(False)


def _strip_carriage_returns(raw: bytes, cr: bytes) -> bytes:
    if len(cr) == 1:
        return raw.rstrip(cr)
    while raw.endswith(cr) and len(raw) % len(cr) == 0:
        raw = raw[: -len(cr)]
    return raw


_ASCII_WHITESPACE = " \t\n\r\x0b\x0c"


def _with_hint(reason: str, hint: str | None) -> str:
    return f"{reason}; {hint}" if hint else reason


def _read_jsonl(path: str, rel: str, out: _Collector) -> Iterator[None]:
    """Line by line: yields after each line, so the caller can hand the collected rows on between any two."""
    spec = out.spec
    cap = spec.max_record_bytes
    with _open_source(path, spec) as src:
        layout, hint = src.layout, src.layout.hint
        lineno, partial = 0, None
        for line in _lines(src.stream.chunks(), layout, cap):
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
                out.add_bad(locator, RULE_OVERSIZED, _with_hint(reason, hint), None, line.raw)
                continue
            _jsonl_line(_strip_carriage_returns(line.raw, layout.carriage_return), rel, lineno, layout, out)
        if src.stream.failure:
            yield
            lineno += 1
            reason = (
                f"{rel}:{lineno}: decompression stopped after {src.stream.read_bytes:,} bytes of output "
                f"({src.stream.failure}); the rest of the file, from line {lineno} on, could not be read"
            )
            out.add_bad(f"{rel}:{lineno}", RULE_TRUNCATED, _with_hint(reason, hint), None, partial)


def _jsonl_line(raw: bytes, rel: str, lineno: int, layout: _Layout, out: _Collector) -> None:
    locator, hint = f"{rel}:{lineno}", layout.hint
    try:
        line = raw.decode(layout.codec)
    except UnicodeDecodeError as e:
        reason = f"{rel}:{lineno}: not valid {layout.label} (byte {e.start}: {e.reason})"
        out.add_bad(locator, RULE_UNDECODABLE, _with_hint(reason, hint), None, raw)
        return
    if not line.strip(_ASCII_WHITESPACE):
        return
    if hint and "\0" in line:  # no JSON holds a raw NUL: these bytes are text in another encoding
        reason = f"{rel}:{lineno}: holds NUL bytes, so it is not {layout.label} text"
        out.add_bad(locator, RULE_UNDECODABLE, _with_hint(reason, hint), None, raw)
        return
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        reason = f"{rel}:{lineno}: not valid JSON ({e.msg} at column {e.colno})"
        out.add_bad(locator, RULE_MALFORMED, _with_hint(reason, hint), line, raw)
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
    try:
        f = fsspec.open(path, "rb").open()
    except (OSError, ValueError) as e:
        raise SourceReadError(f"{path}: cannot read source file: {e}") from e
    with f:
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
    with _open_source(path, out.spec) as src:
        data = src.stream.read_upto(cap + 1)
        failure, layout = src.stream.failure, src.layout
    keep = min(cap, RAW_PREFIX_BYTES)
    if failure:
        reason = f"{rel}: decompression stopped after {len(data):,} bytes of output ({failure}); file quarantined"
        out.add_bad(rel, RULE_TRUNCATED, _with_hint(reason, layout.hint), None, data[:keep])
        return
    if len(data) > cap:
        reason = (
            f"{rel}: over the source's max_record_bytes ({cap:,}), read no further; "
            f"raw holds its first {keep:,} bytes only"
        )
        out.add_bad(rel, RULE_OVERSIZED, _with_hint(reason, layout.hint), None, data[:keep])
        return
    try:
        text = data.decode(layout.codec)
    except UnicodeDecodeError as e:
        line = data[: e.start].decode(layout.codec, "replace").count("\n") + 1
        offset = e.start + layout.bom
        reason = f"{rel}:{line}: not valid {layout.label} (byte offset {offset}: {e.reason}); whole file quarantined"
        out.add_bad(rel, RULE_UNDECODABLE, _with_hint(reason, layout.hint), None, data)
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
