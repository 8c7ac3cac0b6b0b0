"""A source file as lines of bytes: decompressed as it streams (gzip, zstd, bz2: by magic bytes before name),
decoded by its byte-order mark, declared encoding or a cautious UTF-16 guess, and cut at record boundaries
without ever holding more than one capped record. :mod:`mixassets.engine.readers` turns the lines into rows.

Python's ``GzipFile`` (and fsspec's compression layer over it) drops data it already decompressed when a file is
cut off, and fsspec's zstd reader stops after one frame: the decompressors are fed directly, in bounded chunks,
so a truncated file keeps every line before the damage.
"""

from __future__ import annotations

import bz2
import codecs
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import fsspec
import zstandard

from mixtrain.config.data import SourceSpec

# Bytes of decompressed data read at a time, and the most of an oversized or cut-off record a quarantine row keeps.
READ_CHUNK_BYTES = 1 << 16
RAW_PREFIX_BYTES = 4_096
# How much of a file's start is looked at to guess its encoding.
_SNIFF_BYTES = 1_024


class SourceReadError(OSError):
    """A source file could not be opened or read at all; the message names the file."""


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
    # gzip: 1f 8b, then the method byte, 08 (deflate) in every gzip stream (RFC 1952); text that happens to start
    # with 1f 8b is read as the text it is
    if head.startswith(_MAGIC["gzip"]) and (len(head) < 3 or head[2] == 8):
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
class Layout:
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
    layout: Layout


def open_binary(path: str) -> Any:
    """A source file (any fsspec URL) opened for binary reads; failing to open it names the file."""
    try:
        return fsspec.open(path, "rb").open()
    except (OSError, ValueError) as e:
        raise SourceReadError(f"{path}: cannot read source file: {e}") from e


@contextmanager
def open_source(path: str, spec: SourceSpec) -> Iterator[_Source]:
    """A jsonl or text file opened for streaming: decompressed as declared or as its magic bytes say, its
    encoding settled from the declaration and its first bytes."""
    with open_binary(path) as f:
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
        yield _Source(stream, Layout(codec, bom, hint))


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


def record_lines(chunks: Iterator[bytes], layout: Layout, cap: int) -> Iterator[_Line]:
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


def strip_carriage_returns(raw: bytes, cr: bytes) -> bytes:
    if len(cr) == 1:
        return raw.rstrip(cr)
    while raw.endswith(cr) and len(raw) % len(cr) == 0:
        raw = raw[: -len(cr)]
    return raw


ASCII_WHITESPACE = " \t\n\r\x0b\x0c"


def with_hint(reason: str, hint: str | None) -> str:
    return f"{reason}; {hint}" if hint else reason
