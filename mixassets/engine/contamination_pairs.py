"""The ``stem_answer`` method: a multiple-choice stem and its correct answer near each other in one document.

Why a method of its own: a quiz page or an answer key carries a question with its answer and without the options,
and the stems of most multiple-choice sets are short (under 13 words), so the exact 13-gram test never fires and the
fuzzy tests see too few shingles to trust (``fuzzy_min_shingles``). Neither part is evidence alone: a short stem is
an ordinary sentence, and an answer ("Paris", "O(n log n)") is in countless documents. Together they are specific:
the document holds the item's question and the one answer that scores it, which is exactly what a leak is.

So the thresholds are lower than the fuzzy methods' only because two independent parts must agree. A pair fires when

* the document holds at least ``containment_threshold`` of the stem's distinct word shingles, and at least 3 of
  them (all of them when the stem has fewer), inside a stretch at most 1.5 times the stem's length; and
* the answer's whole token sequence (after the screen's folding) starts within ``stem_answer_window`` tokens
  before that stretch or after it.

Stems shorter than a shingle (``containment_n`` tokens) cannot be screened this way and are listed as unscreenable.
Only documents that already share stem shingles reach the Python-level answer check, so the cost is one more
look-up of the shingles the fuzzy methods hash anyway.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from mixassets.engine.contamination_index import ScreenIndex

# A stem must contribute at least this many distinct shingles (or all it has): with the answer, 3 shingles are a
# 7-token stretch of the stem followed by the answer, which ordinary text does not produce by chance.
MIN_STEM_SHINGLES = 3


class Chunk(Protocol):
    """What the method reads of the screen's document chunk (``contamination._Chunk``)."""

    hashes: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    doc_of: np.ndarray

    def grams(self, g: int) -> tuple[np.ndarray, np.ndarray]: ...


def _answer_at(doc_hashes: np.ndarray, answer: np.ndarray, window: tuple[int, int], stem: tuple[int, int]) -> int:
    """The first position in ``window`` (inclusive) where ``answer`` starts in ``doc_hashes``, or -1.

    An occurrence inside the stem's own stretch does not count: an answer word the stem itself contains
    ("Which built-in returns a sorted list?" / "sorted") would otherwise make the stem alone fire.
    """
    lo, hi = max(window[0], 0), min(window[1], len(doc_hashes) - len(answer))
    if hi < lo:
        return -1
    cand = lo + np.flatnonzero(doc_hashes[lo : hi + 1] == answer[0])
    for start in cand.tolist():
        within = stem[0] <= start and start + len(answer) - 1 <= stem[1]
        if not within and np.array_equal(doc_hashes[start : start + len(answer)], answer):
            return start
    return -1


def stem_answer_findings(chunk: Chunk, index: ScreenIndex) -> list[tuple[int, int, int, int, float]]:
    """(document in the chunk, field ref, first token, last token, stem share) of every stem+answer pair found."""
    pairs, cfg = index.pairs, index.config
    if pairs is None:
        return []
    grams, inside = chunk.grams(pairs.g)
    pos, keys = pairs.lookup(grams)
    keep = inside[pos]
    which, refs = pairs.expand(keys[keep])
    pos, keys = pos[keep][which], keys[keep][which]
    if not len(pos):
        return []
    nfields = len(pairs.field_counts)
    pair = chunk.doc_of[pos] * nfields + refs
    order = np.lexsort((pos, pair))
    pair, pos, keys = pair[order], pos[order], keys[order]
    bounds = np.flatnonzero(np.diff(pair)) + 1
    out = []
    for pr, p, k in zip(pair[np.r_[0, bounds]].tolist(), np.split(pos, bounds), np.split(keys, bounds), strict=True):
        doc, ref = divmod(pr, nfields)
        total = int(pairs.field_counts[ref])
        need = max(int(np.ceil(cfg.containment_threshold * total)), min(total, MIN_STEM_SHINGLES))
        if len(np.unique(k)) < need:
            continue
        local = p - chunk.starts[doc]
        # The densest stretch no longer than 1.5 times the stem must itself hold enough distinct shingles.
        width = index.field_tokens[ref] * 3 // 2 + pairs.g
        last = np.searchsorted(local, local + width, side="right") - 1
        shared = [len(np.unique(k[a : b + 1])) for a, b in enumerate(last.tolist())]
        best = int(np.argmax(shared))
        if shared[best] < need:
            continue
        first, stop = int(local[best]), int(local[last[best]]) + pairs.g - 1
        doc_hashes = chunk.hashes[chunk.starts[doc] : chunk.ends[doc]]
        answer = index.answers[ref]
        window = cfg.stem_answer_window
        at = _answer_at(doc_hashes, answer, (first - window - len(answer), stop + 1 + window), (first, stop))
        if at < 0:
            continue
        span = (min(first, at), max(stop, at + len(answer) - 1))
        out.append((doc, ref, *span, shared[best] / total))
    return out
