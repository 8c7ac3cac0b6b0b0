"""The gate's per-document and per-line keys of many texts at once, built by compiled loops where Python's rules
reduce to a few byte values.

Two rules key every text they see: the boilerplate rule counts each document once (``text_key`` of
``normalize_for_dedupe``) and hashes each of its lines (``stable_hash64`` of ``line_key``); the exact-duplicate
rule keys each document again after the strips. In Python each key is a chain of string copies per text or line
(NFKC, case folding, split, join, encode). For a text that is pure ASCII (``str.isascii``, which CPython answers
without reading the text) NFKC changes nothing, case folding maps A-Z to a-z, and Python's whitespace and line
breaks are a few byte values, so one compiled pass over the bytes of all those texts writes every normalised
document key into one buffer. A line key only cuts at line breaks and collapses whitespace, which in UTF-8 are a
few byte sequences more, so the line keys of every text (but one holding a lone surrogate, which has no UTF-8
form) are built the same way. hashlib hashes each key from a view of the buffer. Every other text goes through
the Python functions, which define the keys (``tests/test_text_keys.py`` checks both paths against them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import pairwise

import numpy as np

from mixassets.engine.compiled import compiled

# ASCII bytes that ``str.split()`` splits at, and of them those that ``str.splitlines()`` ends a line at
# ("\r\n" ends one line); the loops spell them out, and ``tests/test_text_keys.py`` checks both sets.
ASCII_SPACES = b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
ASCII_LINE_BREAKS = b"\n\x0b\x0c\r\x1c\x1d\x1e"
# The same beyond ASCII (every one a line break or a space to ``str.split()`` too): recognised by ``_lines``
# from their UTF-8 bytes (C2 85; C2 A0; E1 9A 80; E2 80 80-8A, A8, A9, AF; E2 81 9F; E3 80 80).
UNICODE_SPACES = (
    "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
UNICODE_LINE_BREAKS = "\x85\u2028\u2029"


def _fold(data: np.ndarray, offsets: np.ndarray, out: np.ndarray, out_offsets: np.ndarray) -> None:
    """Text ``d`` (``data[offsets[d]:offsets[d + 1]]``) lower-cased, its whitespace runs made one space and
    trimmed (``" ".join(text.casefold().split())`` of ASCII), written to ``out`` from ``out_offsets[d]``."""
    w = 0
    for d in range(len(offsets) - 1):
        out_offsets[d] = w
        start = w
        pending = False
        for p in range(offsets[d], offsets[d + 1]):
            c = data[p]
            if c == 32 or 9 <= c <= 13 or 28 <= c <= 31:  # ASCII_SPACES
                pending = w > start
                continue
            if pending:
                out[w] = 32
                w += 1
                pending = False
            out[w] = c + 32 if 65 <= c <= 90 else c
            w += 1
    out_offsets[len(offsets) - 1] = w


def _lines(data: np.ndarray, offsets: np.ndarray, min_chars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Every line of every text (UTF-8, as ``str.splitlines`` cuts it) whose key (whitespace runs made one space,
    trimmed) has at least ``min_chars`` characters: the keys one after another in ``out``, line ``i``'s ending
    at ``ends[i]``, with its text and its number among the text's lines. Returns ``(out, ends, line_doc_no, n)``,
    ``line_doc_no`` holding text and line number in its two columns; only the first ``n`` lines are written.

    Beyond ASCII, the line breaks and spaces of ``UNICODE_LINE_BREAKS`` and ``UNICODE_SPACES`` are recognised by
    their UTF-8 bytes; every other character is copied whole and counts as one."""
    most = len(offsets) - 1  # a text has at most one line more than it has line breaks
    for p in range(len(data)):
        c = data[p]
        most += 10 <= c <= 13 or 28 <= c <= 30 or c == 0x85 or c == 0xA8 or c == 0xA9  # a break's last byte
    out = np.empty(len(data), dtype=np.uint8)
    ends = np.empty(most, dtype=np.int64)
    line_doc_no = np.empty((most, 2), dtype=np.int64)
    n = 0
    w = 0
    for d in range(len(offsets) - 1):
        p = offsets[d]
        end = offsets[d + 1]
        line = 0
        while p < end:
            start = w
            chars = 0
            pending = False
            size = 1  # bytes of the line break that ends the line
            while p < end:
                c = data[p]
                size = 1 if c < 0xE0 else 3 if c < 0xF0 else 4
                if 0xC0 <= c < 0xE0:
                    size = 2
                kind = 0  # 0: a character of the key, 1: a space, 2: a line break
                if c < 0x80:
                    if 10 <= c <= 13 or 28 <= c <= 30:  # ASCII_LINE_BREAKS
                        kind = 2
                    elif c == 32 or c == 9 or c == 31:  # the other ASCII_SPACES
                        kind = 1
                elif c == 0xC2 and p + 1 < end:
                    b = data[p + 1]
                    kind = 2 if b == 0x85 else 1 if b == 0xA0 else 0
                elif 0xE1 <= c <= 0xE3 and p + 2 < end:
                    b, e = data[p + 1], data[p + 2]
                    if c == 0xE1:
                        kind = 1 if b == 0x9A and e == 0x80 else 0
                    elif c == 0xE3:
                        kind = 1 if b == 0x80 and e == 0x80 else 0
                    elif b == 0x80:
                        kind = 1 if e <= 0x8A or e == 0xAF else 2 if e == 0xA8 or e == 0xA9 else 0
                    elif b == 0x81 and e == 0x9F:
                        kind = 1
                if kind == 2:
                    break
                if kind == 1:
                    pending = chars > 0
                else:
                    if pending:
                        out[w] = 32
                        w += 1
                        chars += 1
                        pending = False
                    for q in range(size):
                        out[w + q] = data[p + q]
                    w += size
                    chars += 1
                p += size
            if chars >= min_chars:
                ends[n] = w
                line_doc_no[n, 0] = d
                line_doc_no[n, 1] = line
                n += 1
            else:
                w = start
            if p < end:
                p += 2 if data[p] == 13 and p + 1 < end and data[p + 1] == 10 else size
            line += 1
    return out, ends, line_doc_no, n


def _ascii_buffer(texts: Sequence[str], rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The bytes of ``texts[i]`` for ``i`` in ``rows`` (all ASCII) one after another, and where each starts."""
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(np.fromiter((len(texts[i]) for i in rows), dtype=np.int64, count=len(rows)), out=offsets[1:])
    return np.frombuffer("".join([texts[i] for i in rows]).encode("ascii"), dtype=np.uint8), offsets


@dataclass
class NormalizedHandoff:
    """``normalize`` of the texts beyond ASCII that one :func:`document_keys` call keyed, for the next call on the
    same text objects, by their identity (each entry holds its object, so the id cannot be reused meanwhile).

    One lives in a gate call's context (``GateContext.cache``), so it is shared by the rules of that call alone
    and goes when the call ends.
    """

    normalize: Callable[[str], str]
    by_id: dict[int, tuple[str, str]] = field(default_factory=dict)


def document_keys(
    texts: Sequence[str],
    normalize: Callable[[str], str],
    prefixes: Sequence[str] | None = None,
    *,
    handoff: NormalizedHandoff | None = None,
    remember: bool = False,
) -> list[bytes]:
    """``text_key(prefix + normalize(text))`` of each text (``prefixes``, one per text, default none), where
    ``normalize`` is ``normalize_for_dedupe`` (passed in: it belongs to the exact-duplicate rule).

    The boilerplate rule keys the texts it is shown and the exact-duplicate rule keys them again, most of them the
    same ``str`` objects (those no line was stripped from). Beyond ASCII, ``normalize`` is a chain of Python string
    copies per text, so a call with ``remember`` leaves those texts' normalized forms in ``handoff`` for the next
    call given it, which takes them over (and lets them go): a text given again, as the same object, is not
    normalized twice."""
    last: dict[int, tuple[str, str]] = {}
    if handoff is not None and handoff.normalize is normalize:
        last, handoff.by_id = handoff.by_id, {}
    kept: dict[int, tuple[str, str]] = {}
    keys: list[bytes | None] = [None] * len(texts)
    rows = [i for i, t in enumerate(texts) if t.isascii()]
    if rows:
        data, offsets = _ascii_buffer(texts, rows)
        out = np.empty(len(data), dtype=np.uint8)
        out_offsets = np.empty(len(offsets), dtype=np.int64)
        compiled(_fold)(data, offsets, out, out_offsets)
        view = memoryview(out)
        for i, (a, b) in zip(rows, pairwise(out_offsets.tolist()), strict=True):
            if prefixes is None:
                keys[i] = blake2b(view[a:b], digest_size=16).digest()
            else:
                h = blake2b(prefixes[i].encode("utf-8"), digest_size=16)
                h.update(view[a:b])
                keys[i] = h.digest()
    for i, text in enumerate(texts):
        if keys[i] is None:
            entry = last.get(id(text))
            normalized = entry[1] if entry is not None and entry[0] is text else normalize(text)
            if remember:
                kept[id(text)] = (text, normalized)
            value = normalized if prefixes is None else f"{prefixes[i]}{normalized}"
            keys[i] = blake2b(value.encode("utf-8"), digest_size=16).digest()
    if remember and handoff is not None and handoff.normalize is normalize:
        handoff.by_id = kept
    return keys  # type: ignore[return-value]


def line_hashes(prose: Sequence[str], min_chars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every line of ``prose`` whose ``line_key`` has at least ``min_chars`` characters, as three parallel arrays
    in text and line order: the key's ``stable_hash64``, the text's index and the line's index in
    ``text.splitlines()``."""
    parts: list[tuple[bytes, np.ndarray, np.ndarray]] = []
    encoded: list[bytes] = []
    rows: list[int] = []
    other: list[int] = []
    for i, text in enumerate(prose):
        try:
            encoded.append(text.encode("utf-8"))
            rows.append(i)
        except UnicodeEncodeError:  # a lone surrogate: the Python path says what becomes of it
            other.append(i)
    if rows:
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        del encoded
        out, ends, line_doc_no, n = compiled(_lines)(data, offsets, min_chars)
        view = memoryview(out)
        bounds = [0, *ends[:n].tolist()]
        digests = b"".join([blake2b(view[a:b], digest_size=8).digest() for a, b in pairwise(bounds)])
        parts.append((digests, np.asarray(rows, dtype=np.int64)[line_doc_no[:n, 0]], line_doc_no[:n, 1]))
    if other:
        digests, docs, numbers = _python_line_hashes([prose[i] for i in other], min_chars)
        parts.append((digests, np.asarray(other, dtype=np.int64)[docs], numbers))
    hashes = np.frombuffer(b"".join(p[0] for p in parts), dtype="<u8").astype(np.uint64)
    docs = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, dtype=np.int64)
    numbers = np.concatenate([p[2] for p in parts]) if parts else np.empty(0, dtype=np.int64)
    if len(parts) > 1:
        order = np.lexsort((numbers, docs))
        hashes, docs, numbers = hashes[order], docs[order], numbers[order]
    return hashes, docs, numbers


def _python_line_hashes(prose: Sequence[str], min_chars: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """:func:`line_hashes` one line at a time in Python, for the texts that have no UTF-8 form."""
    digests = bytearray()
    line_doc: list[int] = []
    line_no: list[int] = []
    for d, text in enumerate(prose):
        for n, line in enumerate(text.splitlines()):
            key = " ".join(line.split())  # line_key, inlined: this loop runs once per line
            if len(key) >= min_chars:
                digests += blake2b(key.encode("utf-8"), digest_size=8).digest()
                line_doc.append(d)
                line_no.append(n)
    return bytes(digests), np.asarray(line_doc, dtype=np.int64), np.asarray(line_no, dtype=np.int64)
