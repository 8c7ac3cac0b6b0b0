"""Per-document word counts that several prose rules share, so each text is split into words once.

The mean-word-length, symbol-to-word and top n-gram rules all split a text into whitespace tokens and words
(:func:`base.words`). They run one after another on the documents still standing, so the first of them computes
a few numbers per document and the others look them up: only the numbers are kept (five integers a document),
never the word lists, and only for the rows of the table the rules were last shown. A row is recognised by its
``row_id`` *and* its text (compared in full), so a stripped or replaced text can never reuse stale numbers.
"""

from __future__ import annotations

import operator
import threading
from collections import Counter
from itertools import repeat
from typing import NamedTuple

import pyarrow as pa

from mixassets.engine.rules.base import _PUNCT, texts


class WordStats(NamedTuple):
    tokens: int  # len(text.split())
    words: int  # len(words(text))
    chars: int  # characters of the words
    lower_chars: int  # characters of the lower-cased words
    heaviest: int  # max over distinct lower-cased words of (occurrences x characters); 0 without words


def word_stats_of(text: str) -> WordStats:
    tokens = text.split()
    ws = list(filter(None, map(str.strip, tokens, repeat(_PUNCT, len(tokens)))))  # base.words, inlined
    if not ws:
        return WordStats(len(tokens), 0, 0, 0, 0)
    lower = list(map(str.lower, ws))
    counts = Counter(lower)
    heaviest = max(map(operator.mul, counts.values(), map(len, counts)))
    return WordStats(len(tokens), len(ws), sum(map(len, ws)), sum(map(len, lower)), heaviest)


class _Last(threading.local):
    entries: dict[int, tuple[str, WordStats]] = {}


_last = _Last()


def word_stats(docs: pa.Table) -> list[WordStats]:
    """:func:`word_stats_of` of each text of ``docs`` (None as ""), reusing the numbers of the last call's rows."""
    old = _last.entries
    _last.entries = {}
    new: dict[int, tuple[str, WordStats]] = {}
    out: list[WordStats] = []
    for row_id, text in zip(docs.column("row_id").to_pylist(), texts(docs), strict=True):
        hit = old.get(row_id)
        stats = hit[1] if hit is not None and hit[0] == text else word_stats_of(text)
        new[row_id] = (text, stats)
        out.append(stats)
    _last.entries = new
    return out
