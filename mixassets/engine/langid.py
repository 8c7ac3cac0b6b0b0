"""Language identification for the gate's language-mismatch rule.

py3langid is used because its naive-Bayes model (97 languages) ships inside the wheel: the gate must run offline
and give the same answer on every machine, which rules out detectors that fetch a model on first use.

Confidence is py3langid's normalised probability: it softmaxes the naive-Bayes scores at a temperature of
sqrt(text bytes), so a few words spread the probability mass and a paragraph concentrates it. The rule can therefore
treat a low confidence as "unknown" rather than as a mismatch, which is what short or mixed text deserves.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mixassets.engine.compiled import compiled

if TYPE_CHECKING:
    from py3langid.langid import LanguageIdentifier

UNKNOWN = "und"  # ISO 639-2 "undetermined": returned for text with nothing to classify

_identifier: LanguageIdentifier | None = None
_lock = threading.Lock()


def _get() -> LanguageIdentifier:
    """The model, decompressed once per process (about a second) and only by the first caller that needs it."""
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _identifier


def detect_language(text: str) -> tuple[str, float]:
    """``(ISO 639-1 code, confidence in [0, 1])``; ``("und", 0.0)`` for text without letters."""
    if not any(ch.isalpha() for ch in text):
        return UNKNOWN, 0.0
    lang, conf = _get().classify(text)
    return str(lang), min(1.0, max(0.0, float(conf)))


# Bytes walked together: bounds the walk's arrays (16 bytes per byte of text, at most) whatever the batch size.
_WALK_BYTES = 1 << 20
# Segments walked side by side (see ``_walk_source``): 8 measured 2x faster than one walk, 16 to 64 no faster.
_LANES = 8
# Bytes a segment re-reads before its own: at least the automaton's depth, the longest byte string one of its
# states stands for (6 for py3langid's model; ``tests/test_langid.py`` checks the bound).
WARM_BYTES = 8


class _Walk:
    """py3langid's automaton as NumPy arrays, walked by a compiled loop.

    The automaton is an Aho-Corasick machine over byte n-grams with at most one feature per state. py3langid walks
    it byte by byte in Python; a NumPy walk over many documents at once still costs a dozen array operations per
    byte position. A loop compiled with numba walks each document once, byte after byte, as py3langid does, so it
    emits the same features in the same order (``tests/test_langid.py`` checks the two agree)."""

    def __init__(self, identifier: LanguageIdentifier) -> None:
        self.nextmove = np.frombuffer(identifier.tk_nextmove, dtype=np.uint32)
        self.rowbase = np.asarray(identifier._rowbase, dtype=np.int64)
        output = np.asarray(identifier.tk_output, dtype=np.int64)
        self.features = int(output.max()) + 1
        # One 8-byte entry per transition holding what the walk needs of the state it leads to: the row of its
        # own transitions (low half) and the feature it emits (high half, -1 for none). The walk then makes one
        # load per byte where it made three (the row, the transition, later the feature): the transition is the
        # one that misses the cache, and the other two sat in the same dependency chain (measured the walk and
        # the count 0.37 -> 0.23 CPU s on the realistic corpus), at twice the table's 40 MB. NumPy's own
        # allocation of a large array asks Linux for huge pages, so the walk's random reads of this table miss
        # the TLB far less than in the model's buffer (measured 20-25% faster walks).
        reached = self.nextmove.astype(np.int64)
        self.moves = self.rowbase[reached] | (output[reached] << 32)
        self.root = np.int64(self.rowbase[0] | (output[0] << 32))  # NumPy's: added to a uint8, stays int64
        del reached
        # The per-class feature weights widened once (57 MB): ``float32 @ float16`` widens the gathered rows on
        # every call, which took two thirds of the scoring time; the products are the same bits.
        self.weights = identifier.nb_ptc.astype(np.float32)
        self.count = compiled(_walk_source)
        self.gather = compiled(_gather_rows)

    def depth(self) -> int:
        """The longest shortest path from the root: breadth first over every byte (slow; for the tests)."""
        depth = np.full(len(self.rowbase), -1, dtype=np.int64)
        depth[0] = 0
        frontier = np.zeros(1, dtype=np.int64)
        level = 0
        while len(frontier):
            level += 1
            reached = np.unique(self.nextmove[(self.rowbase[frontier][:, None] + np.arange(256)).ravel()])
            frontier = reached[depth[reached] < 0]
            depth[frontier] = level
        return int(depth.max())


_walk: _Walk | None = None


def _get_walk() -> _Walk:
    global _walk
    identifier = _get()
    if _walk is None:
        with _lock:
            if _walk is None:
                _walk = _Walk(identifier)
    return _walk


def _walk_source(
    buf: np.ndarray, ends: np.ndarray, moves: np.ndarray, root: int, features: int, lanes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The features each document of ``buf`` (documents end at ``ends``) emits and how often, in order of first
    emission: the documents' runs one after another, document ``d``'s ``emitted[d]`` long (a document emits at
    most one feature per byte, so a run never reaches past its document's bytes and the first ``emitted.sum()``
    entries are written). Compiled by numba; returns ``(feats, counts, emitted)``.

    First the feature (or -1) of the automaton's state after every byte, walking ``moves`` (see ``_Walk``) from
    ``root``. Each step of one walk waits for the last, and the table is mostly out of cache, so ``buf`` is cut
    into ``lanes`` segments walked side by side, one byte of each in turn, which keeps that many independent
    loads in flight. A segment is first warmed up from ``WARM_BYTES`` before it (or from its document's start),
    which reaches the state the walk from the document's start reaches (the state depends only on the last depth
    bytes). Then each document's features are counted in order, as py3langid's ``visit_counts`` counts them."""
    n = len(buf)
    doc_start = np.zeros(n + 1, dtype=np.bool_)
    doc_start[0] = True
    doc_start[ends] = True
    emits = np.empty(n, dtype=np.int32)  # the feature of the state after each byte; 4 bytes: half the traffic
    segment = (n + lanes - 1) // lanes
    state = np.empty(lanes, dtype=np.int64)
    for k in range(lanes):  # the bytes before a lane's own only warm it up; a dozen each, walked one lane at a time
        first = min(k * segment, n)
        p = first
        while p > 0 and first - p < WARM_BYTES and not doc_start[p]:
            p -= 1
        s = root
        for q in range(p, first):
            s = moves[((root if doc_start[q] else s) & 0xFFFFFFFF) + buf[q]]
        state[k] = s
    for i in range(segment):
        for k in range(lanes):
            p = k * segment + i
            if p < n:
                s = moves[((root if doc_start[p] else state[k]) & 0xFFFFFFFF) + buf[p]]
                state[k] = s
                emits[p] = s >> 32
    feats = np.empty(n, dtype=np.int32)
    counts = np.empty(n, dtype=np.int32)
    emitted = np.zeros(len(ends), dtype=np.int64)
    slot = np.full(features, -1, dtype=np.int32)  # where a feature's count is, in the current document
    begin = 0
    run = 0  # where the current document's run starts
    for d in range(len(ends)):
        m = 0
        for p in range(begin, ends[d]):
            f = emits[p]
            if f >= 0:
                j = slot[f]
                if j < 0:
                    j = run + m
                    slot[f] = j
                    feats[j] = f
                    counts[j] = 0
                    m += 1
                counts[j] += 1
        for j in range(run, run + m):
            slot[feats[j]] = -1
        emitted[d] = m
        run += m
        begin = ends[d]
    return feats, counts, emitted


def _gather_rows(table: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
    """``out[:len(rows)] = table[rows]``. Compiled by numba: NumPy's fancy index allocates a fresh array for each
    document and fills it more slowly; the rows and their layout are the same, so the product over them is too."""
    width = table.shape[1]
    for i in range(len(rows)):
        row = rows[i]
        for j in range(width):
            out[i, j] = table[row, j]


def _scores(encoded: list[bytes]) -> np.ndarray:
    """py3langid's normalised class probabilities (``_decide`` with ``norm_probs``), one row per text of
    ``encoded``, with the aliased classes folded into their targets.

    Each document's naive-Bayes score is still one vector-matrix product of its own, over its features' rows in
    order of first emission, exactly as py3langid computes it: BLAS may sum in another order (and round
    otherwise) for any other shape, and the confidences must be py3langid's to the bit. Everything around the
    products (the log counts, the temperature, the softmax, the aliases) works element by element or row by row
    in float32 as py3langid's per-document steps do, so it runs once over all the documents' rows."""
    identifier, walk = _get(), _get_walk()
    ends = np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
    buf = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    feats, counts, emitted = walk.count(buf, ends, walk.moves, walk.root, walk.features, _LANES)
    weights = walk.weights
    offsets = np.cumsum(emitted) - emitted  # where each document's run starts
    total = int(emitted.sum())
    logs = np.log1p(counts[:total].astype(np.float32))
    scores = np.zeros((len(encoded), weights.shape[1]), dtype=np.float32)
    rows = np.empty((int(emitted.max(initial=0)), weights.shape[1]), dtype=np.float32)
    gather = walk.gather
    for d, (start, n) in enumerate(zip(offsets.tolist(), emitted.tolist(), strict=True)):
        if n:
            gather(weights, feats[start : start + n], rows)
            np.matmul(logs[start : start + n], rows[:n], out=scores[d])
    has_features = emitted > 0
    scores[has_features] += identifier.nb_pc
    # The temperature as py3langid applies it: a Python float, which NumPy casts to float32 for the product.
    scores *= np.array([1.0 / math.sqrt(len(e) or 1) for e in encoded], dtype=np.float32)[:, None]
    scores -= scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    for i, j in identifier._alias_pairs:
        scores[:, i] += scores[:, j]
        scores[:, j] = 0.0
    return scores


def detect_languages(texts: Sequence[str]) -> list[tuple[str, float]]:
    """``[detect_language(t) for t in texts]``, with the automaton walked over many texts at once by a compiled
    loop instead of byte by byte in Python."""
    identifier = _get()
    out: list[tuple[str, float]] = [(UNKNOWN, 0.0)] * len(texts)
    todo = [(i, identifier._encode(t)) for i, t in enumerate(texts) if any(ch.isalpha() for ch in t)]
    classes = [str(c) for c in identifier.nb_classes]
    while todo:
        size, n = 0, 0
        while n < len(todo) and (n == 0 or size + len(todo[n][1]) <= _WALK_BYTES):
            size += len(todo[n][1])
            n += 1
        part, todo = todo[:n], todo[n:]
        scores = _scores([b for _, b in part])
        best = scores.argmax(axis=1)
        confs = scores[np.arange(len(part)), best].tolist()
        for (i, _), b, conf in zip(part, best.tolist(), confs, strict=True):
            if identifier.min_confidence is not None and conf < identifier.min_confidence:
                out[i] = ("und", min(1.0, max(0.0, conf)))
            else:
                out[i] = (classes[b], min(1.0, max(0.0, conf)))
    return out
