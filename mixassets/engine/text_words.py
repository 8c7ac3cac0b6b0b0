"""The prose rules' shared word and line counts of pure-ASCII texts, by compiled loops over their bytes.

``text_stats`` defines the counts in Python (``word_stats_of``, ``line_stats_of``) and computes them for many texts
with Arrow kernels and Python loops. For ASCII texts the definitions reduce to a few byte values: ``str.split``
splits at ``text_keys.ASCII_SPACES``, ``str.splitlines`` ends lines at ``text_keys.ASCII_LINE_BREAKS`` ("\\r\\n"
ends one), ``strip`` removes those spaces or the ASCII characters of the punctuation set, and ``str.lower`` maps
A-Z to a-z. So one pass over the bytes of all the texts finds every word (or line), and an open-addressing table
keyed by the bytes themselves (compared in full on a hash match, so distinct words never share a number) numbers
the distinct lower-cased words, or counts a text's distinct lines. ``tests/test_text_words.py`` runs the loops
uncompiled and compiled against the Python definitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from mixassets.engine.compiled import compiled


def byte_table(chars: str) -> np.ndarray:
    """A 256-entry mask of the ASCII characters of ``chars`` (the others cannot occur in an ASCII text)."""
    mask = np.zeros(256, dtype=np.bool_)
    for ch in chars:
        if ch.isascii():
            mask[ord(ch)] = True
    return mask


def ascii_buffers(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The data buffer of a string or large_string array without nulls, and the offsets of its texts in it."""
    offsets_type = np.int64 if pa.types.is_large_string(column.type) else np.int32
    _, offsets_buf, data_buf = column.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=offsets_type)[column.offset : column.offset + len(column) + 1]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, dtype=np.uint8)
    return data, offsets


# The loops are compiled one by one (see ``compiled``), so they call no helper: the FNV-1a hash of a word or line
# (kept to 62 bits, which Python and numba's wrapping int64 arithmetic agree on) and the byte comparisons are
# written out where they are needed.
_FNV_OFFSET = 1469598103934665603
_FNV_PRIME = 1099511628211
_MASK62 = 0x3FFFFFFFFFFFFFFF


def _words(
    data: np.ndarray, offsets: np.ndarray, punct: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Every text's tokens (``str.split``) counted, and its words (tokens stripped of the ``punct`` bytes, the
    empty ones dropped) numbered by their lower-cased bytes. Returns ``(n_tokens, word_doc, word_id, id_start,
    id_length, n_words, n_ids)``: per text its token count; per word, in text order, its text and number; per
    number the offset and length of its first occurrence; and how many words and numbers were written."""
    n_docs = len(offsets) - 1
    most = (offsets[n_docs] - offsets[0] + 1) // 2 + 1  # a word is a byte at least, two are a byte apart
    n_tokens = np.zeros(n_docs, dtype=np.int64)
    word_doc = np.empty(most, dtype=np.int64)
    word_id = np.empty(most, dtype=np.int64)
    id_start = np.empty(most, dtype=np.int64)
    id_length = np.empty(most, dtype=np.int64)
    id_hash = np.empty(most, dtype=np.int64)
    capacity = 1024  # doubled whenever the table is half full: a batch has far fewer distinct words than bytes
    slots = np.full(capacity, -1, dtype=np.int64)
    w = 0
    n_ids = 0
    for d in range(n_docs):
        p = offsets[d]
        end = offsets[d + 1]
        tokens = 0
        while p < end:
            c = data[p]
            if c == 32 or 9 <= c <= 13 or 28 <= c <= 31:  # ASCII_SPACES
                p += 1
                continue
            a = p
            while p < end:
                c = data[p]
                if c == 32 or 9 <= c <= 13 or 28 <= c <= 31:
                    break
                p += 1
            tokens += 1
            b = p
            while a < b and punct[data[a]]:
                a += 1
            while b > a and punct[data[b - 1]]:
                b -= 1
            if b == a:
                continue
            length = b - a
            h = _FNV_OFFSET
            for q in range(a, b):
                c = int(data[q])
                h = ((h ^ (c + 32 if 65 <= c <= 90 else c)) * _FNV_PRIME) & _MASK62
            j = h & (capacity - 1)
            while True:
                k = slots[j]
                if k < 0:
                    k = n_ids
                    slots[j] = k
                    id_start[k] = a
                    id_length[k] = length
                    id_hash[k] = h
                    n_ids += 1
                    if 2 * n_ids > capacity:
                        capacity *= 2
                        slots = np.full(capacity, -1, dtype=np.int64)
                        for i in range(n_ids):
                            j = id_hash[i] & (capacity - 1)
                            while slots[j] >= 0:
                                j = (j + 1) & (capacity - 1)
                            slots[j] = i
                    break
                if id_hash[k] == h and id_length[k] == length:
                    same = True
                    s = id_start[k]
                    for q in range(length):
                        x = int(data[s + q])
                        y = int(data[a + q])
                        if (x + 32 if 65 <= x <= 90 else x) != (y + 32 if 65 <= y <= 90 else y):
                            same = False
                            break
                    if same:
                        break
                j = (j + 1) & (capacity - 1)
            word_doc[w] = d
            word_id[w] = k
            w += 1
        n_tokens[d] = tokens
    return n_tokens, word_doc, word_id, id_start, id_length, w, n_ids


def _lines(
    data: np.ndarray, offsets: np.ndarray, patterns: np.ndarray, pattern_ends: np.ndarray, out: np.ndarray
) -> None:
    """Per text ``d``, in ``out[d]``: its non-blank stripped lines (``str.splitlines``, ``str.strip``), how many
    of them start with a pattern of kind 0, end with one of kind 1, end with one of kind 2, and repeat an earlier
    line. Pattern ``i`` is ``patterns[pattern_ends[i, 0]:pattern_ends[i, 1]]``, of kind ``pattern_ends[i, 2]``."""
    n_patterns = len(pattern_ends)
    found = np.zeros(3, dtype=np.bool_)
    counts = np.zeros(3, dtype=np.int64)
    line_start = np.empty(0, dtype=np.int64)  # per distinct line of the current text (grown for a long text)
    line_length = np.empty(0, dtype=np.int64)
    line_hash = np.empty(0, dtype=np.int64)
    for d in range(len(offsets) - 1):
        p = offsets[d]
        end = offsets[d + 1]
        most = (end - p + 1) // 2 + 1  # a line is a byte at least, and two lines are a break apart
        if most > len(line_start):
            line_start = np.empty(2 * most, dtype=np.int64)
            line_length = np.empty(len(line_start), dtype=np.int64)
            line_hash = np.empty(len(line_start), dtype=np.int64)
        capacity = 64  # doubled whenever the table is half full
        slots = np.full(capacity, -1, dtype=np.int64)
        lines = 0
        distinct = 0
        counts[:] = 0
        while p < end:
            a = p
            while p < end:
                c = data[p]
                if 10 <= c <= 13 or 28 <= c <= 30:  # ASCII_LINE_BREAKS
                    break
                p += 1
            b = p
            if p < end:
                p += 2 if data[p] == 13 and p + 1 < end and data[p + 1] == 10 else 1
            while a < b and (data[a] == 32 or 9 <= data[a] <= 13 or 28 <= data[a] <= 31):  # ASCII_SPACES
                a += 1
            while b > a and (data[b - 1] == 32 or 9 <= data[b - 1] <= 13 or 28 <= data[b - 1] <= 31):
                b -= 1
            if b == a:
                continue
            lines += 1
            length = b - a
            found[:] = False
            for i in range(n_patterns):
                kind = pattern_ends[i, 2]
                n = pattern_ends[i, 1] - pattern_ends[i, 0]
                if found[kind] or n > length:
                    continue
                at = a if kind == 0 else b - n
                same = True
                for q in range(n):
                    if data[at + q] != patterns[pattern_ends[i, 0] + q]:
                        same = False
                        break
                found[kind] = same
            for kind in range(3):
                counts[kind] += found[kind]
            h = _FNV_OFFSET
            for q in range(a, b):
                h = ((h ^ int(data[q])) * _FNV_PRIME) & _MASK62
            j = h & (capacity - 1)
            while True:
                k = slots[j]
                if k < 0:
                    slots[j] = distinct
                    line_start[distinct] = a
                    line_length[distinct] = length
                    line_hash[distinct] = h
                    distinct += 1
                    if 2 * distinct > capacity:
                        capacity *= 2
                        slots = np.full(capacity, -1, dtype=np.int64)
                        for i in range(distinct):
                            j = line_hash[i] & (capacity - 1)
                            while slots[j] >= 0:
                                j = (j + 1) & (capacity - 1)
                            slots[j] = i
                    break
                if line_hash[k] == h and line_length[k] == length:
                    same = True
                    s = line_start[k]
                    for q in range(length):
                        if data[s + q] != data[a + q]:
                            same = False
                            break
                    if same:
                        break
                j = (j + 1) & (capacity - 1)
        out[d, 0] = lines
        out[d, 1] = counts[0]
        out[d, 2] = counts[1]
        out[d, 3] = counts[2]
        out[d, 4] = lines - distinct


def ascii_line_counts(
    column: pa.Array, starts: Sequence[str], ellipses: Sequence[str], terminal: Sequence[str]
) -> np.ndarray:
    """:func:`_lines` of an ASCII string array without nulls (compiled): one row of five counts per text, in
    ``text_stats.LineStats`` order. Patterns that are not ASCII are left out: no ASCII line holds them."""
    data, offsets = ascii_buffers(column)
    flat = bytearray()
    ends = []
    for kind, group in enumerate((starts, ellipses, terminal)):
        for pattern in group:
            if pattern.isascii():
                ends.append((len(flat), len(flat) + len(pattern), kind))
                flat += pattern.encode("ascii")
    out = np.zeros((len(offsets) - 1, 5), dtype=np.int64)
    patterns = np.frombuffer(bytes(flat) or b"\0", dtype=np.uint8)
    compiled(_lines)(data, offsets, patterns, np.asarray(ends, dtype=np.int64).reshape(-1, 3), out)
    return out


def ascii_word_counts(column: pa.Array, punct: np.ndarray) -> dict[str, Any]:
    """:func:`_words` of an ASCII string array without nulls (compiled)."""
    data, offsets = ascii_buffers(column)
    n_tokens, word_doc, word_id, id_start, id_length, w, n_ids = compiled(_words)(data, offsets, punct)
    return {
        "data": data,
        "n_tokens": n_tokens,
        "word_doc": word_doc[:w],
        "word_id": word_id[:w],
        "id_start": id_start[:n_ids],
        "id_length": id_length[:n_ids],
    }


def _braces_and_chars(data: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    """Per text ``d``, in ``out[d]``: its curly braces and its characters. UTF-8 encodes a brace as one byte
    that no other character's encoding contains, and each character as one byte that is not a continuation
    byte (``10xxxxxx``) followed by continuation bytes, so both are byte counts."""
    for d in range(len(offsets) - 1):
        braces = 0
        chars = 0
        for p in range(offsets[d], offsets[d + 1]):
            c = data[p]
            braces += (c == 123) | (c == 125)
            chars += (c & 0xC0) != 0x80
        out[d, 0] = braces
        out[d, 1] = chars


def braces_and_chars(column: pa.Array) -> list[list[int]]:
    """``[text.count("{") + text.count("}"), len(text)]`` of each text of a string array without nulls, by one
    compiled pass over its UTF-8 bytes (Arrow's validated UTF-8, so no surrogates) instead of three Arrow kernels
    and two conversions."""
    if not len(column):
        return []
    data, offsets = ascii_buffers(column)
    out = np.zeros((len(offsets) - 1, 2), dtype=np.int64)
    compiled(_braces_and_chars)(data, offsets, out)
    return out.tolist()


class LoweredWords(Sequence[str]):
    """The lower-cased word of each number, decoded only when asked for (a verdict quotes a few of them)."""

    def __init__(self, data: np.ndarray, start: np.ndarray, length: np.ndarray) -> None:
        self.data, self.start, self.length = data, start, length

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, i: Any) -> Any:
        s, n = int(self.start[i]), int(self.length[i])
        return self.data[s : s + n].tobytes().decode("ascii").lower()
