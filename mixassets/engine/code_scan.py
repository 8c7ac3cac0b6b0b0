"""The documents' code tokenizer (``contamination_code._DOC_TOKEN``) as one compiled pass over a batch's code points.

Why: the code methods read every document, and the regex ``findall`` plus a dictionary look-up per raw token was
half of the whole screen's time (about 0.6 µs a token in C and in Python). This loop reads each code point once,
finds the same tokens as the regex, and resolves the canonical id of each name and operator itself, by a table of
the names and operators that stay as written (hash match, then the code points compared in full, so two tokens
never share an id by accident). Only what the table cannot answer (an operator or name made of rare non-ASCII
characters) goes back to Python.

Exactness: :func:`_scan` is the regex alternative by alternative, in its order, with its possessive and lazy
choices (the comments name them). Character classes are ``re``'s own: :func:`char_classes` asks ``re`` which code
points are ``\\w``, ``\\d`` and ``\\s``, so the loop and the regex agree on every Unicode character.
``tests/test_code_scan.py`` compares the two on the standard library, on hostile text and on generated text, with
the loop compiled and run as plain Python.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from mixassets.engine.compiled import compiled
from mixassets.engine.text_words import _FNV_OFFSET, _FNV_PRIME, _MASK62  # the compiled loops' one token hash

# Character classes, one byte per code point (see :func:`char_classes`).
WORD, DIGIT, SPACE, NAME_START, STR_DIGIT, PREFIX = 1, 2, 4, 8, 16, 32
# The ids the scan writes besides a table's: what ``contamination_code`` reserves for them (same values).
LINE_BREAK, NUMBER, LONG_STRING, STRING, UNRESOLVED = 1, 2, 3, 4, -1
# Operators the regex tries before any single character, longest first.
OPERATORS = ("**=", "//=", ">>=", "<<=", "...", "->", ":=", "==", "!=", "<=", ">=", "**", "//", "<<", ">>", "+=")
OPERATORS += ("-=", "*=", "/=", "%=", "&=", "|=", "^=", "@=")
_PREFIX_CHARS = "rRbBuUfF"


@functools.lru_cache(maxsize=1)
def char_classes() -> np.ndarray:
    """Per code point: ``WORD`` (``re``'s ``\\w``), ``DIGIT`` (``\\d``), ``SPACE`` (``\\s``), and for word characters
    ``NAME_START`` (``isalpha()`` or ``_``: a name the canonical stream turns into ``ID``) and ``STR_DIGIT``
    (``isdigit()``: a token the canonical stream calls a number); ``PREFIX`` for a string prefix's letters. Built
    once per process (~0.1 s)."""
    every = np.arange(0x110000, dtype=np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    classes = np.zeros(0x110000, dtype=np.uint8)
    for bit, pattern in ((WORD, r"\w"), (DIGIT, r"\d"), (SPACE, r"\s")):
        classes[np.fromiter((m.start() for m in re.finditer(pattern, every)), dtype=np.int64)] |= bit
    word = np.flatnonzero(classes & WORD)
    chars = "".join(map(chr, word.tolist()))
    classes[word[np.fromiter(map(str.isalpha, chars), dtype=bool, count=len(word))]] |= NAME_START
    classes[ord("_")] |= NAME_START
    classes[word[np.fromiter(map(str.isdigit, chars), dtype=bool, count=len(word))]] |= STR_DIGIT
    classes[[ord(ch) for ch in _PREFIX_CHARS]] |= PREFIX
    return classes


def token_hash(token: str) -> int:
    """The scan's hash of a token (FNV-1a over its code points, 62 bits)."""
    h = _FNV_OFFSET
    for ch in token:
        h = ((h ^ ord(ch)) * _FNV_PRIME) & _MASK62
    return h


@dataclass(frozen=True)
class TokenTable:
    """Tokens with a fixed id (names kept as written, operators), as arrays the compiled loop reads."""

    hashes: np.ndarray  # int64, sorted
    ids: np.ndarray  # int64, in the order of ``hashes``
    chars: np.ndarray  # int64 [token, position], the code points of each token, zero-padded
    lengths: np.ndarray  # int64
    operators: np.ndarray  # int64 [operator, position]: OPERATORS' code points, zero-padded
    operator_lengths: np.ndarray
    placeholder: int  # the id of a name not in the table

    @classmethod
    def of(cls, entries: Iterable[tuple[str, int]], placeholder: int) -> TokenTable:
        pairs = sorted((token_hash(token), token, ident) for token, ident in entries)
        width = max([len(token) for _, token, _ in pairs] + [1])
        chars = np.zeros((len(pairs), width), dtype=np.int64)
        for row, (_, token, _) in enumerate(pairs):
            chars[row, : len(token)] = [ord(ch) for ch in token]
        operators = np.zeros((len(OPERATORS), 3), dtype=np.int64)
        for row, op in enumerate(OPERATORS):
            operators[row, : len(op)] = [ord(ch) for ch in op]
        return cls(
            hashes=np.array([h for h, _, _ in pairs], dtype=np.int64),
            ids=np.array([ident for _, _, ident in pairs], dtype=np.int64),
            chars=chars,
            lengths=np.array([len(token) for _, token, _ in pairs], dtype=np.int64),
            operators=operators,
            operator_lengths=np.array([len(op) for op in OPERATORS], dtype=np.int64),
            placeholder=placeholder,
        )


@dataclass(frozen=True)
class Scan:
    """The tokens of a batch that the canonical stream keeps, and its line breaks, in text order."""

    text: str  # the batch's texts, joined
    ends: np.ndarray  # int64: where each document ends in ``text``
    starts: np.ndarray  # int64: each token's span in ``text``
    stops: np.ndarray
    ids: np.ndarray  # int64: LINE_BREAK, NUMBER, LONG_STRING, STRING, a table id, or UNRESOLVED


def scan(texts: Sequence[str], table: TokenTable, *, compile_loop: bool = True) -> Scan:
    """The tokens of every text (no token spans two texts), by the compiled loop (``compile_loop=False``: the same
    loop as Python, for the tests)."""
    text = "".join(texts)
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    starts = np.empty(len(points), dtype=np.int64)
    stops = np.empty(len(points), dtype=np.int64)
    ids = np.empty(len(points), dtype=np.int64)
    loop = compiled(_scan) if compile_loop else _scan
    n = loop(points, ends, char_classes(), table.hashes, table.ids, table.chars, table.lengths, table.operators,
             table.operator_lengths, table.placeholder, starts, stops, ids)  # fmt: skip
    return Scan(text, ends, starts[:n], stops[:n], ids[:n])


def _scan(
    cp: np.ndarray,
    ends: np.ndarray,
    cls: np.ndarray,
    t_hash: np.ndarray,
    t_id: np.ndarray,
    t_chars: np.ndarray,
    t_len: np.ndarray,
    ops: np.ndarray,
    op_len: np.ndarray,
    placeholder: int,
    out_start: np.ndarray,
    out_stop: np.ndarray,
    out_id: np.ndarray,
) -> int:
    """Write (start, stop, id) of every kept token and line break of every document; return how many.

    Compiled on its own (see ``compiled``), so it calls no helper. A name not in the table gets ``placeholder``.
    """
    n = 0
    lo = 0
    for d in range(len(ends)):
        hi = ends[d]
        i = lo
        while i < hi:
            c = cp[i]
            k = cls[c]
            j = -1
            kind = 0  # 1 name, 2 string, 3 dropped, 4 number, 5 operator, 6 break
            name_end = -1
            # (1) a name not followed by a quote; possessive, so a name before a quote never backs off.
            if (k & WORD) != 0 and (k & DIGIT) == 0:
                t = i + 1
                while t < hi and (cls[cp[t]] & WORD) != 0:
                    t += 1
                if t < hi and (cp[t] == 39 or cp[t] == 34):
                    name_end = t
                else:
                    j = t
                    kind = 1
            # (2) a string after a prefix of two, one or no prefix characters (greedy, then backing off).
            if j < 0:
                for p in range(2, -1, -1):
                    if i + p >= hi:
                        continue
                    ok = True
                    for q in range(p):
                        if (cls[cp[i + q]] & PREFIX) == 0:
                            ok = False
                    if not ok:
                        continue
                    s = i + p
                    quote = cp[s]
                    if quote != 39 and quote != 34:
                        continue
                    e = -1
                    if s + 2 < hi and cp[s + 1] == quote and cp[s + 2] == quote:  # triple-quoted: lazy, to the first
                        t = s + 3
                        while t + 2 < hi:
                            if cp[t] == quote and cp[t + 1] == quote and cp[t + 2] == quote:
                                e = t + 3
                                break
                            t += 1
                    if e < 0:  # one quote: closes on its line; a backslash takes any character after it
                        t = s + 1
                        while t < hi:
                            x = cp[t]
                            if x == quote:
                                e = t + 1
                                break
                            if x == 92:
                                if t + 1 < hi:
                                    t += 2
                                    continue
                                break
                            if x == 13 or x == 10:
                                break
                            t += 1
                    if e >= 0:
                        j = e
                        kind = 2
                        break
            # (3) a comment, or a backslash that continues the line: dropped.
            if j < 0:
                if c == 35:
                    t = i + 1
                    while t < hi and cp[t] != 13 and cp[t] != 10:
                        t += 1
                    j = t
                    kind = 3
                elif c == 92 and i + 1 < hi and cp[i + 1] == 10:
                    j = i + 2
                    kind = 3
                elif c == 92 and i + 2 < hi and cp[i + 1] == 13 and cp[i + 2] == 10:
                    j = i + 3
                    kind = 3
            # (4) a number: 0x/0o/0b with at least one digit, else digits, point, digits, exponent, j.
            if j < 0 and c == 48 and i + 1 < hi:
                x = cp[i + 1]
                if x == 120 or x == 88 or x == 111 or x == 79 or x == 98 or x == 66:
                    t = i + 2
                    while t < hi:
                        x = cp[t]
                        if (cls[x] & DIGIT) != 0 or (97 <= x <= 102) or (65 <= x <= 70) or x == 95:
                            t += 1
                        else:
                            break
                    if t > i + 2:
                        j = t
                        kind = 4
            if j < 0:
                t = -1
                if (k & DIGIT) != 0:
                    t = i + 1
                    while t < hi and ((cls[cp[t]] & DIGIT) != 0 or cp[t] == 95):
                        t += 1
                    if t < hi and cp[t] == 46:
                        t += 1
                        while t < hi and ((cls[cp[t]] & DIGIT) != 0 or cp[t] == 95):
                            t += 1
                elif c == 46 and i + 1 < hi and (cls[cp[i + 1]] & DIGIT) != 0:
                    t = i + 2
                    while t < hi and ((cls[cp[t]] & DIGIT) != 0 or cp[t] == 95):
                        t += 1
                if t >= 0:
                    if t < hi and (cp[t] == 101 or cp[t] == 69):
                        u = t + 1
                        if u < hi and (cp[u] == 43 or cp[u] == 45):
                            u += 1
                        if u < hi and (cls[cp[u]] & DIGIT) != 0:
                            u += 1
                            while u < hi and ((cls[cp[u]] & DIGIT) != 0 or cp[u] == 95):
                                u += 1
                            t = u
                    if t < hi and (cp[t] == 106 or cp[t] == 74):
                        t += 1
                    j = t
                    kind = 4
            # (5) an operator, longest first, else any character that is neither word nor space.
            if j < 0 and (k & WORD) == 0 and (k & SPACE) == 0:
                for r in range(len(op_len)):
                    m = op_len[r]
                    if i + m <= hi:
                        same = True
                        for q in range(m):
                            if cp[i + q] != ops[r, q]:
                                same = False
                                break
                        if same:
                            j = i + m
                            break
                if j < 0:
                    j = i + 1
                kind = 5
            # (6) the name the first alternative refused (it stood before a quote that opens no string).
            if j < 0 and name_end >= 0:
                j = name_end
                kind = 1
            # (7) a line break, with the blank lines and indent after it.
            if j < 0 and c == 10:
                t = i + 1
                while t < hi and (cls[cp[t]] & SPACE) != 0:
                    t += 1
                j = t
                kind = 6
            if j < 0:  # whitespace: no token starts here
                i += 1
                continue
            if kind != 3:
                ident = -1
                if kind == 2:
                    ident = 4
                    for t in range(i, j):
                        if cp[t] == 10:
                            ident = 3
                            break
                elif kind == 4:
                    ident = 2
                elif kind == 6:
                    ident = 1
                elif kind == 1 and (k & NAME_START) == 0:
                    ident = 2 if (k & STR_DIGIT) != 0 else -1
                else:  # a name or an operator: its table entry, else ID (a name) or unresolved (an operator)
                    h = _FNV_OFFSET
                    for t in range(i, j):
                        h = ((h ^ int(cp[t])) * _FNV_PRIME) & _MASK62
                    ident = placeholder if kind == 1 else -1
                    at = np.searchsorted(t_hash, h)
                    while at < len(t_hash) and t_hash[at] == h:
                        if t_len[at] == j - i:
                            same = True
                            for q in range(j - i):
                                if t_chars[at, q] != cp[i + q]:
                                    same = False
                                    break
                            if same:
                                ident = t_id[at]
                                break
                        at += 1
                out_start[n] = i
                out_stop[n] = j
                out_id[n] = ident
                n += 1
            i = j
        lo = hi
    return n
