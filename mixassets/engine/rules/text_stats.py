"""Per-document word and line counts that several prose rules share, so each text is split once.

The mean-word-length, symbol-to-word and top n-gram rules all split a text into whitespace tokens and words
(:func:`base.words`). They run one after another on the documents still standing, so the first of them computes
a few numbers per document (and the top n-gram rule's verdict, which needs the words themselves) and the others
look them up. Only those are kept, never the word lists, and only for the rows of the table the rules were last
shown. A row is recognised by its ``row_id`` *and* its text (compared in full), so a stripped or replaced text
can never reuse stale numbers. The layout rules (bullet, ellipsis, duplicate and terminal lines) share the
non-blank lines the same way.
"""

from __future__ import annotations

import operator
import threading
from collections import Counter
from collections.abc import Callable, Hashable
from itertools import repeat
from typing import Any, NamedTuple

import pyarrow as pa

from mixassets.engine.rules.base import _PUNCT, TEXT_HOOKS, GateContext, texts


class WordStats(NamedTuple):
    tokens: int  # len(text.split())
    words: int  # len(words(text))
    chars: int  # characters of the words
    top_ngram: str | None  # the top n-gram rule's reason (for the limits the numbers were computed for), or None


def top_ngram_reason(ws: list[str], limits: dict[int, float], word_counts: Counter[str] | None = None) -> str | None:
    """Why the most frequent n-gram of the lower-cased words ``ws`` covers too many of their characters for
    ``limits`` (n -> maximum share), or None; ``word_counts`` is ``Counter(ws)`` when the caller has it."""
    total = sum(map(len, ws))
    heaviest: int | None = None  # the most characters one word covers with all its occurrences
    heaviest_pair: int | None = None  # the same for two adjacent words, as one string
    for n in sorted(limits):
        if len(ws) < n * 2 or not total:
            continue
        if n >= 1:
            # Counting the n-grams is most of this rule's time; skip it when a bound on the top n-gram's
            # covered characters (count x characters) is within the limit. An n-gram occurs at most as often
            # as each word and each pair of adjacent words inside it, so that product is at most n * (the
            # heaviest word's count x characters), and for n >= 2 at most (n // 2) * the heaviest pair's +
            # (n % 2) * the heaviest word's. Pairs are counted as concatenated strings, which can only merge
            # pairs and so raise the bound. The bounds are integers and the division by ``total`` is the
            # rule's own, so a bound within the limit puts the rule's value within it too.
            if heaviest is None:
                words_count = Counter(ws) if word_counts is None else word_counts
                heaviest = max(map(operator.mul, words_count.values(), map(len, words_count)))
            if n * heaviest / total <= limits[n]:
                continue
            if n >= 2:
                if heaviest_pair is None:
                    pairs = Counter(map(operator.add, ws, ws[1:]))
                    heaviest_pair = max(map(operator.mul, pairs.values(), map(len, pairs)))
                if ((n // 2) * heaviest_pair + (n % 2) * heaviest) / total <= limits[n]:
                    continue
        counts = Counter(zip(*(ws[i:] for i in range(n)), strict=False))
        gram, count = max(counts.items(), key=operator.itemgetter(1))  # the first of the most frequent
        if count < 2:
            continue
        value = count * sum(map(len, gram)) / total
        if value > limits[n]:
            return f"top {n}-gram {' '.join(gram)!r} x{count} covers {value:.2f} of characters > {limits[n]}"
    return None


def word_stats_of(text: str, ngram_limits: dict[int, float]) -> WordStats:
    tokens = text.split()
    ws = list(filter(None, map(str.strip, tokens, repeat(_PUNCT, len(tokens)))))  # base.words, inlined
    if not ws:
        return WordStats(len(tokens), 0, 0, None)
    lower = list(map(str.lower, ws))
    top = top_ngram_reason(lower, ngram_limits, Counter(lower))
    return WordStats(len(tokens), len(ws), sum(map(len, ws)), top)


class LineStats(NamedTuple):
    lines: int  # non-blank lines (base.nonblank_lines)
    bullets: int  # of them, starting with a bullet
    ellipses: int  # ending with an ellipsis
    terminal: int  # ending with terminal punctuation
    repeats: int  # repeating an earlier one


def line_stats_of(
    text: str, bullets: tuple[str, ...], ellipses: tuple[str, ...], terminal: tuple[str, ...]
) -> LineStats:
    lines = list(filter(None, map(str.strip, text.splitlines())))  # base.nonblank_lines, inlined
    n = len(lines)
    return LineStats(
        n,
        sum(map(str.startswith, lines, repeat(bullets, n))),
        sum(map(str.endswith, lines, repeat(ellipses, n))),
        sum(map(str.endswith, lines, repeat(terminal, n))),
        n - len(set(lines)),
    )


class _RowCache(threading.local):
    """Per row of the table last asked about: its text and what was computed from it, by what and with which
    parameters. One cache for all the shared measures, so only one table's texts are held for them."""

    entries: dict[int, tuple[str, dict[Hashable, Any]]] = {}

    def get(self, docs: pa.Table, key: Hashable, compute: Callable[[str], Any]) -> list[Any]:
        old = self.entries
        self.entries = {}
        new: dict[int, tuple[str, dict[Hashable, Any]]] = {}
        out: list[Any] = []
        for row_id, text in zip(docs.column("row_id").to_pylist(), texts(docs), strict=True):
            hit = old.get(row_id)
            values = hit[1] if hit is not None and hit[0] == text else {}
            value = values.get(key)
            if value is None:
                value = values[key] = compute(text)
            new[row_id] = (text, values)
            out.append(value)
        self.entries = new
        return out

    def rebase(self, docs: pa.Table, values: list[str]) -> None:
        """A :data:`base.TEXT_HOOKS` hook: keep the entries of the rows of the table ``texts`` just converted
        whose text is unchanged, and give ``texts`` the ``str`` this cache holds for them instead of its new
        copy, so the cache holds no text that ``texts`` does not, and no table's texts twice."""
        old = self.entries
        self.entries = {}
        if not old or "row_id" not in docs.column_names:
            return
        new: dict[int, tuple[str, dict[Hashable, Any]]] = {}
        for i, (row_id, text) in enumerate(zip(docs.column("row_id").to_pylist(), values, strict=True)):
            hit = old.get(row_id)
            if hit is not None and hit[0] == text:
                values[i] = hit[0]
                new[row_id] = hit
        self.entries = new


_cache = _RowCache()
TEXT_HOOKS.append(_cache.rebase)


def word_stats(docs: pa.Table, ctx: GateContext) -> list[WordStats]:
    """:func:`word_stats_of` of each text of ``docs`` (None as ""), reusing the numbers of the last call's rows."""
    limits = dict(ctx.gating.quality.max_top_ngram_char_fraction)
    return _cache.get(docs, ("words", *sorted(limits.items())), lambda text: word_stats_of(text, limits))


def line_stats(
    docs: pa.Table, bullets: tuple[str, ...], ellipses: tuple[str, ...], terminal: tuple[str, ...]
) -> list[LineStats]:
    """:func:`line_stats_of` of each text of ``docs`` (None as ""), reusing the numbers of the last call's rows."""
    return _cache.get(
        docs, ("lines", bullets, ellipses, terminal), lambda t: line_stats_of(t, bullets, ellipses, terminal)
    )
