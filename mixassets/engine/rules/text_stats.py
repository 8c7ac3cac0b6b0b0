"""Per-document word and line counts that several prose rules share, so each text is split once.

The mean-word-length, symbol-to-word and top n-gram rules all split a text into whitespace tokens and words
(:func:`base.words`). They run one after another on the documents still standing, so the first of them computes
a few numbers per document (and the top n-gram rule's verdict, which needs the words themselves) and the others
look them up. Only those are kept, never the word lists, and only for the texts of the table the rules were last
shown. They are kept per text object, which the runner shows every rule unchanged until a rule strips it, and a
table converted afresh is matched to the last by ``row_id`` and its texts compared in full, so a stripped or
replaced text can never reuse stale numbers. The layout rules (bullet, ellipsis, duplicate and terminal lines) share the
non-blank lines the same way.
"""

from __future__ import annotations

import operator
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.compiled import compiled
from mixassets.engine.rules.base import _PUNCT, TEXT_HOOKS, GateContext, texts
from mixassets.engine.text_words import LoweredWords, ascii_line_counts, ascii_word_counts, byte_table

_PUNCT_BYTES = byte_table(_PUNCT)


class TopNgram(NamedTuple):
    """The top n-gram rule's verdict on one document: why, and the share of characters it compared with the limit
    (logged as the decision's score, so a limit can be re-tuned from the decision log)."""

    reason: str
    score: float


class WordStats(NamedTuple):
    tokens: int  # len(text.split())
    words: int  # len(words(text))
    chars: int  # characters of the words
    top_ngram: TopNgram | None  # the top n-gram rule's verdict (for the limits the numbers were computed for)


def _top_ngram(n: int, gram: Sequence[str], count: int, total: int, limit: float) -> TopNgram:
    """The verdict on an n-gram that fired, built the same way by the per-document and the batched paths so
    their reasons and scores are equal to the last bit."""
    value = count * sum(map(len, gram)) / total
    return TopNgram(f"top {n}-gram {' '.join(gram)!r} x{count} covers {value:.2f} of characters > {limit}", value)


def top_ngram_verdict(
    ws: list[str], limits: dict[int, float], word_counts: Counter[str] | None = None
) -> TopNgram | None:
    """Whether the most frequent n-gram of the lower-cased words ``ws`` covers too many of their characters for
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
        if count * sum(map(len, gram)) / total > limits[n]:
            return _top_ngram(n, gram, count, total, limits[n])
    return None


def word_stats_of(text: str, ngram_limits: dict[int, float]) -> WordStats:
    tokens = text.split()
    ws = list(filter(None, map(str.strip, tokens, repeat(_PUNCT, len(tokens)))))  # base.words, inlined
    if not ws:
        return WordStats(len(tokens), 0, 0, None)
    lower = list(map(str.lower, ws))
    top = top_ngram_verdict(lower, ngram_limits, Counter(lower))
    return WordStats(len(tokens), len(ws), sum(map(len, ws)), top)


def word_stats_batch(values: pa.Array | pa.ChunkedArray, ngram_limits: dict[int, float]) -> list[WordStats]:
    """:func:`word_stats_of` of every text of ``values`` (null as ""), computed over the whole column at once.

    Arrow splits, trims and measures the words; Python only lower-cases each distinct word once. Arrow's
    whitespace is Python's (``tests/test_rules_fastpaths.py`` checks every code point), but Arrow keeps the empty
    tokens between adjacent whitespace, which are dropped here as ``str.split`` never makes them. The n-grams are
    counted exactly, per document, by hashing (document, n-gram) keys: Arrow's dictionary encoding numbers the
    keys in order of first occurrence, which is the order of a ``Counter``'s keys, so "the first of the most
    frequent" is the lowest-numbered key with the document's highest count."""
    column = pc.fill_null(values.cast(pa.large_string()), "")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    stats: list[WordStats] = []
    for start in range(0, len(column), _WORD_BATCH_ROWS):  # bounds the token arrays whatever the table's size
        stats += _word_stats_rows(column.slice(start, _WORD_BATCH_ROWS), ngram_limits)
    return stats


# Texts whose words are split and counted together by :func:`word_stats_batch`; its arrays take about 60 bytes
# per word, so 1,024 prose documents of a few KB hold it to a few tens of MB, and more rows per call gain little.
_WORD_BATCH_ROWS = 1024


def _word_stats_rows(column: pa.Array, ngram_limits: dict[int, float]) -> list[WordStats]:
    """:func:`word_stats_batch` of one slice of a large_string column without nulls: its ASCII texts by compiled
    loops (:mod:`~mixassets.engine.text_words`), the others by Arrow."""
    return _by_ascii(
        column,
        lambda part: _ascii_word_stats_rows(part, ngram_limits),
        lambda part: _arrow_word_stats_rows(part, ngram_limits),
    )


def _by_ascii(
    column: pa.Array, ascii: Callable[[pa.Array], list[Any]], other: Callable[[pa.Array], list[Any]]
) -> list[Any]:
    """``ascii`` of the ASCII texts of ``column`` and ``other`` of the rest, in the column's order."""
    is_ascii = np.asarray(pc.string_is_ascii(column), dtype=bool)
    if is_ascii.all():
        return ascii(column)
    if not is_ascii.any():
        return other(column)
    out: list[Any] = [None] * len(column)
    for mask, compute in ((is_ascii, ascii), (~is_ascii, other)):
        rows = np.flatnonzero(mask)
        for i, value in zip(rows.tolist(), compute(column.filter(pa.array(mask))), strict=True):
            out[i] = value
    return out


def _ascii_word_stats_rows(column: pa.Array, ngram_limits: dict[int, float]) -> list[WordStats]:
    """:func:`_arrow_word_stats_rows` of ASCII texts: a word's characters are its bytes, and lower-casing keeps
    its length, so the characters of the words and of their lower-cased forms are the same count."""
    n_docs = len(column)
    found = ascii_word_counts(column, _PUNCT_BYTES)
    word_doc, word, id_length = found["word_doc"], found["word_id"], found["id_length"]
    n_words = np.bincount(word_doc, minlength=n_docs)
    chars = np.bincount(word_doc, weights=id_length[word], minlength=n_docs).astype(np.int64)
    lowered = LoweredWords(found["data"], found["id_start"], id_length)
    verdicts = _top_ngram_verdicts(word_doc, word, id_length, lowered, chars, n_words, ngram_limits)
    rows = zip(found["n_tokens"].tolist(), n_words.tolist(), chars.tolist(), strict=True)
    return [WordStats(t, w, c, verdicts.get(i)) for i, (t, w, c) in enumerate(rows)]


def _arrow_word_stats_rows(column: pa.Array, ngram_limits: dict[int, float]) -> list[WordStats]:
    """:func:`word_stats_batch` of one slice of a large_string column without nulls, by Arrow."""
    n_docs = len(column)
    tokens = pc.utf8_split_whitespace(column)
    flat = pc.list_flatten(tokens)
    doc = np.asarray(pc.list_parent_indices(tokens), dtype=np.int64)
    real = np.asarray(pc.greater(pc.binary_length(flat), 0), dtype=bool)
    n_tokens = np.bincount(doc[real], minlength=n_docs)
    trimmed = pc.utf8_trim(flat, characters=_PUNCT)
    length = np.asarray(pc.utf8_length(trimmed), dtype=np.int64)
    is_word = length > 0
    word_doc = doc[is_word]
    n_words = np.bincount(word_doc, minlength=n_docs)
    chars = np.bincount(word_doc, weights=length[is_word], minlength=n_docs).astype(np.int64)
    encoded = pc.dictionary_encode(trimmed.filter(pa.array(is_word)))
    # Distinct words, lower-cased by Python (whose case mapping the rule uses), then numbered by lower-case form.
    lowered: dict[str, int] = {}
    lower_of = np.fromiter(
        (lowered.setdefault(w.lower(), len(lowered)) for w in encoded.dictionary.to_pylist()),
        dtype=np.int64,
        count=len(encoded.dictionary),
    )
    lower_len = np.fromiter(map(len, lowered), dtype=np.int64, count=len(lowered))
    word = lower_of[np.asarray(encoded.indices, dtype=np.int64)]
    total = np.bincount(word_doc, weights=lower_len[word], minlength=n_docs).astype(np.int64)
    verdicts = _top_ngram_verdicts(word_doc, word, lower_len, list(lowered), total, n_words, ngram_limits)
    return [
        WordStats(t, w, c, verdicts.get(i))
        for i, (t, w, c) in enumerate(zip(n_tokens.tolist(), n_words.tolist(), chars.tolist(), strict=True))
    ]


def _top_ngram_verdicts(
    word_doc: np.ndarray,
    word: np.ndarray,
    lower_len: np.ndarray,
    lowered: Sequence[str],
    total: np.ndarray,
    n_words: np.ndarray,
    limits: dict[int, float],
) -> dict[int, TopNgram]:
    """:func:`top_ngram_verdict` per document (only those it fires on), from every document's lower-cased
    word numbers ``word`` (in text order, documents one after another; ``word_doc`` says whose)."""
    if not limits or not len(word):
        return {}
    ns = sorted(limits)
    if ns[0] < 1:
        raise ValueError(f"top n-gram limits need n >= 1, got {ns[0]} (word_stats judges those per document)")
    bounds = np.searchsorted(word_doc, np.arange(len(total) + 1))
    fired_n, fired_count, fired_pos = _ngram_kernel()(
        word,
        bounds,
        lower_len,
        total,
        np.asarray(ns, dtype=np.int64),
        np.asarray([limits[n] for n in ns], dtype=np.float64),
    )
    verdicts: dict[int, TopNgram] = {}
    for d in np.flatnonzero(fired_n).tolist():
        n, count, p = int(fired_n[d]), int(fired_count[d]), int(fired_pos[d])
        gram = [lowered[w] for w in word[p : p + n].tolist()]
        verdicts[d] = _top_ngram(n, gram, count, int(total[d]), limits[n])
    return verdicts


def _top_ngrams(
    word: np.ndarray, bounds: np.ndarray, lower_len: np.ndarray, total: np.ndarray, ns: np.ndarray, limits: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The loop of :func:`top_ngram_verdict` over every document (``word[bounds[d]:bounds[d + 1]]``), compiled
    by numba: per document the n that fired (0 for none), its top n-gram's count and where that n-gram first
    occurs in ``word``. Each level numbers a document's n-grams in order of first occurrence, as a ``Counter``
    orders its keys, with an open-addressing hash of (its (n-1)-gram's number, the next word's number); the
    first of the most frequent is then the lowest number with the highest count."""
    n_docs = len(bounds) - 1
    fired_n = np.zeros(n_docs, dtype=np.int64)
    fired_count = np.zeros(n_docs, dtype=np.int64)
    fired_pos = np.zeros(n_docs, dtype=np.int64)
    local = np.full(len(lower_len), -1, dtype=np.int64)
    for d in range(n_docs):
        a = bounds[d]
        m = bounds[d + 1] - a
        if total[d] == 0 or m < 2 * ns[0]:
            continue
        first_word = np.empty(m, dtype=np.int64)  # each word's number in the document
        distinct = 0
        for i in range(m):
            w = word[a + i]
            if local[w] < 0:
                local[w] = distinct
                distinct += 1
            first_word[i] = local[w]
        for i in range(m):
            local[word[a + i]] = -1
        gram = first_word.copy()
        n_grams = distinct
        level = 1
        for k in range(len(ns)):
            n = ns[k]
            if m < 2 * n:
                break
            while level < n:
                size = m - level
                capacity = 1
                while capacity < 2 * size:
                    capacity *= 2
                slots = np.full(capacity, -1, dtype=np.int64)
                ids = np.empty(capacity, dtype=np.int64)
                following = np.empty(size, dtype=np.int64)
                n_grams = 0
                for i in range(size):
                    key = gram[i] * distinct + first_word[i + level]
                    j = (key ^ (key >> 16) ^ (key >> 32)) & (capacity - 1)
                    while slots[j] >= 0 and slots[j] != key:
                        j = (j + 1) & (capacity - 1)
                    if slots[j] < 0:
                        slots[j] = key
                        ids[j] = n_grams
                        n_grams += 1
                    following[i] = ids[j]
                gram = following
                level += 1
            counts = np.zeros(n_grams, dtype=np.int64)
            first = np.full(n_grams, -1, dtype=np.int64)
            for i in range(m - n + 1):
                g = gram[i]
                counts[g] += 1
                if first[g] < 0:
                    first[g] = i
            best = 0
            for g in range(1, n_grams):
                if counts[g] > counts[best]:
                    best = g
            if counts[best] < 2:
                continue
            p = a + first[best]
            chars = 0
            for i in range(n):
                chars += lower_len[word[p + i]]
            if counts[best] * chars / total[d] > limits[k]:
                fired_n[d] = n
                fired_count[d] = counts[best]
                fired_pos[d] = p
                break
    return fired_n, fired_count, fired_pos


def _ngram_kernel() -> Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`_top_ngrams` compiled (see :mod:`~mixassets.engine.compiled`)."""
    return compiled(_top_ngrams)


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
    """Per text of the table last asked about: what was computed from it, by what and with which parameters. One
    cache for all the shared measures, so only one table's texts are held for them.

    Entries are found by the identity of the text object (``id``; the entry holds the object, so its id cannot be
    reused while the entry stands): the runner shows each rule the same ``str`` for a row whose text has not
    changed, so a lookup is one dictionary probe per row, with no text compared. A table whose texts were
    converted afresh (new objects) is matched to the last one by ``row_id`` and compared text by text in
    :meth:`rebase`, which moves an equal text's entry to the new object; a text that changed gets a new entry."""

    entries: dict[int, tuple[str, dict[Hashable, Any]]] = {}
    # The row ids and texts of the table last shown to ``rebase``, for matching a fresh conversion's rows.
    row_ids: pa.ChunkedArray | None = None
    texts: list[str] = []

    def get(self, docs: pa.Table, key: Hashable, compute: Callable[[str], Any]) -> list[Any]:
        return self.get_many(docs, key, lambda _, shown: [compute(text) for text in shown])

    def get_many(
        self, docs: pa.Table, key: Hashable, compute: Callable[[pa.Array | pa.ChunkedArray, list[str]], list[Any]]
    ) -> list[Any]:
        """The value under ``key`` of each text of ``docs``; ``compute`` takes the texts not cached as one array
        and as the list of the same ``str``, and gives their values in order."""
        old = self.entries
        self.entries = {}
        all_texts = texts(docs)
        ids = list(map(id, all_texts))  # C loops (map, zip, dict) wherever a row needs no decision
        entries = list(map(old.get, ids))
        if None in entries:  # texts not seen before (a text twice in the table may then get two entries)
            entries = [(text, {}) if e is None else e for text, e in zip(all_texts, entries, strict=True)]
        new = dict(zip(ids, entries, strict=True))
        found = [entry[1] for entry in entries]
        missing = [i for i, values in enumerate(found) if key not in values]
        if missing:
            shown = all_texts if len(missing) == len(all_texts) else [all_texts[i] for i in missing]
            column = docs.column("text") if len(missing) == len(all_texts) else pa.array(shown)
            for i, value in zip(missing, compute(column, shown), strict=True):
                found[i][key] = value
        self.entries = new
        return [values[key] for values in found]

    def rebase(self, docs: pa.Table, values: list[str]) -> None:
        """A :data:`base.TEXT_HOOKS` hook, for the table ``texts`` just converted or was given. When the cache
        holds every one of its texts (the runner shows the rules fewer rows of the same texts after each hold),
        nothing changes: the entries of the rows dropped go at the next :meth:`get_many`, and until then they
        are texts of the table before. Otherwise only the entries of its texts are kept, and a text that is not
        an object the cache holds but equals the one held for its row (``row_id``) in the last table takes over
        that entry (which lets go of the old object); so the cache holds no text that ``texts`` does not but
        those of the table before, and never a text twice."""
        old, previous, previous_texts = self.entries, self.row_ids, self.texts
        self.entries, self.row_ids, self.texts = {}, None, []
        has_ids = "row_id" in docs.column_names
        if has_ids:
            self.row_ids, self.texts = docs.column("row_id"), values
        if not old:
            return
        ids = list(map(id, values))
        entries = list(map(old.get, ids))
        if None not in entries:  # a table of held texts (the runner's next, smaller table): nothing to rebuild
            self.entries = old  # those of rows no longer shown go at the next ``get_many``
            return
        new = dict(zip(ids, entries, strict=True))
        unmatched = [i for i, e in enumerate(entries) if e is None] if None in entries else []
        for i in unmatched:
            new.pop(ids[i], None)  # a text twice in the table is one key
        if unmatched and has_ids and previous is not None:
            by_row = dict(zip(previous.to_pylist(), previous_texts, strict=True))
            row_ids = docs.column("row_id").to_pylist()
            for i in unmatched:
                held = by_row.get(row_ids[i])
                entry = None if held is None else old.get(id(held))
                if entry is not None and entry[0] == values[i]:
                    new[id(values[i])] = (values[i], entry[1])  # held under the new object, the old one let go
        self.entries = new


_cache = _RowCache()
TEXT_HOOKS.append(_cache.rebase)


def word_stats(docs: pa.Table, ctx: GateContext) -> list[WordStats]:
    """:func:`word_stats_of` of each text of ``docs`` (None as ""), reusing the numbers of the last call's rows."""
    limits = dict(ctx.gating.quality.max_top_ngram_char_fraction)
    key = ("words", *sorted(limits.items()))
    if any(n < 1 for n in limits):  # not an n-gram: only the per-document arithmetic says what such a limit does
        return _cache.get(docs, key, lambda text: word_stats_of(text, limits))
    return _cache.get_many(docs, key, lambda column, _: word_stats_batch(column, limits))


def line_stats(
    docs: pa.Table, bullets: tuple[str, ...], ellipses: tuple[str, ...], terminal: tuple[str, ...]
) -> list[LineStats]:
    """:func:`line_stats_of` of each text of ``docs`` (None as ""), reusing the numbers of the last call's rows."""
    return _cache.get_many(
        docs,
        ("lines", bullets, ellipses, terminal),
        lambda column, values: line_stats_batch(column, bullets, ellipses, terminal, values),
    )


def line_stats_batch(
    values: pa.Array | pa.ChunkedArray,
    bullets: tuple[str, ...],
    ellipses: tuple[str, ...],
    terminal: tuple[str, ...],
    strings: Sequence[str] | None = None,
) -> list[LineStats]:
    """:func:`line_stats_of` of every text of ``values`` (null as ""): the ASCII texts by a compiled loop, the
    others one by one from ``strings`` (the same texts as ``str``, where the caller has them) or the column."""
    column = pc.fill_null(values, "")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not len(column):
        return []
    is_ascii = np.asarray(pc.string_is_ascii(column), dtype=bool)
    out: list[Any] = [None] * len(column)
    if is_ascii.any():
        part = column if is_ascii.all() else column.filter(pa.array(is_ascii))
        counts = ascii_line_counts(part, bullets, ellipses, terminal).tolist()
        for i, row in zip(np.flatnonzero(is_ascii).tolist(), counts, strict=True):
            out[i] = LineStats(*row)
    other = np.flatnonzero(~is_ascii).tolist()
    if other:
        shown = [strings[i] for i in other] if strings is not None else column.take(pa.array(other)).to_pylist()
        for i, text in zip(other, shown, strict=True):
            out[i] = line_stats_of(text, bullets, ellipses, terminal)
    return out
