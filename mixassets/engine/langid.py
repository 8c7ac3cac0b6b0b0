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


# Bytes of one document walked as one lane of the batched DFA walk. Each lane first re-reads the bytes before it
# (at most the automaton's depth), so the lanes are independent and a long document costs no more steps than a
# short one; shorter lanes mean more of them per step and fewer steps (fewer NumPy calls), at the price of the
# re-read bytes: 64 (8 re-read, 12%) measured ~10% faster than 256 on the realistic corpus, 32 no faster.
_LANE_BYTES = 64
# Bytes walked together: bounds the walk's arrays (about 40 bytes per byte of text) whatever the batch size.
_WALK_BYTES = 1 << 18


# Bytes a lane re-reads before its own: at least the automaton's depth, the longest byte string one of its
# states stands for (6 for py3langid's model; ``tests/test_langid.py`` checks the bound).
WARM_BYTES = 8


class _Walk:
    """py3langid's automaton as NumPy arrays.

    The automaton is an Aho-Corasick machine over byte n-grams: the state after any input is the node of the
    longest suffix of the input that is a prefix of some n-gram, so it depends only on the last ``depth`` bytes.
    That is what lets the batched walk start a lane ``WARM_BYTES`` early from the root and reach the same state
    as the sequential walk (``tests/test_langid.py`` checks the two agree)."""

    def __init__(self, identifier: LanguageIdentifier) -> None:
        self.nextmove = np.frombuffer(identifier.tk_nextmove, dtype=np.uint32)
        self.rowbase = np.asarray(identifier._rowbase, dtype=np.int64)
        self.output = np.asarray(identifier.tk_output, dtype=np.int64)
        # The per-class feature weights widened once (57 MB): ``float32 @ float16`` widens the gathered rows on
        # every call, which took two thirds of the scoring time; the products are the same bits.
        self.weights = identifier.nb_ptc.astype(np.float32)

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


def _feature_counts(encoded: list[bytes]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per document, the features the automaton emits over its bytes and how often, in order of first
    emission: exactly py3langid's ``visit_counts`` (a Counter's keys and values), for many documents at once."""
    walk = _get_walk()
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    buf = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    doc_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    lanes = (lengths + _LANE_BYTES - 1) // _LANE_BYTES
    lane_doc = np.repeat(np.arange(len(encoded)), lanes)
    first_lane = np.repeat(np.cumsum(lanes) - lanes, lanes)
    lane_start = doc_start[lane_doc] + (np.arange(len(lane_doc)) - first_lane) * _LANE_BYTES
    lane_end = np.minimum(lane_start + _LANE_BYTES, doc_start[lane_doc] + lengths[lane_doc])
    warm = np.minimum(WARM_BYTES, lane_start - doc_start[lane_doc])  # bytes re-read before the lane's own
    begin = lane_start - warm
    steps = lane_end - begin
    order = np.argsort(-steps, kind="stable")  # longest first: the lanes still walking are a prefix
    begin, warm, steps = begin[order], warm[order], steps[order]
    active = np.searchsorted(-steps, -np.arange(int(steps.max()) if len(steps) else 0), side="left")
    state = np.zeros(len(begin), dtype=np.int64)
    positions: list[np.ndarray] = []
    features: list[np.ndarray] = []
    nextmove, rowbase, output = walk.nextmove, walk.rowbase, walk.output
    for t, k in enumerate(active.tolist()):
        pos = begin[:k] + t
        s = nextmove[rowbase[state[:k]] + buf[pos]]
        state[:k] = s
        f = output[s]
        emitted = f >= 0
        if t < WARM_BYTES:
            emitted &= warm[:k] <= t
        positions.append(pos[emitted])
        features.append(f[emitted])
    pos = np.concatenate(positions) if positions else np.empty(0, dtype=np.int64)
    feat = np.concatenate(features) if features else np.empty(0, dtype=np.int64)
    n_features = len(walk.output)
    key = (np.searchsorted(doc_start, pos, side="right") - 1) * n_features + feat
    # Group the emissions by (document, feature); each group's first position orders the groups as a
    # Counter's keys would be: by document (positions grow with the document), then by first emission.
    # Sorting one packed integer (key, then position) is faster than an argsort and two gathers.
    key, pos = _sort_pairs(key, pos, len(encoded) * n_features, len(buf))
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if len(key) else np.empty(0, np.int64)
    counts = np.diff(np.append(starts, len(key)))
    _, group = _sort_pairs(pos[starts], np.arange(len(starts)), len(buf), len(starts))
    keys, counts = key[starts][group], counts[group]
    key_doc = keys // n_features
    bounds = np.searchsorted(key_doc, np.arange(len(encoded) + 1))
    key_feat = keys - key_doc * n_features
    return [(key_feat[a:b], counts[a:b]) for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]


def _sort_pairs(
    major: np.ndarray, minor: np.ndarray, major_bound: int, minor_bound: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(major, minor)`` pairs of non-negative integers below the bounds, sorted by major then minor."""
    shift = max(int(minor_bound).bit_length(), 1)
    if int(major_bound).bit_length() + shift <= 63:
        packed = np.sort((major.astype(np.int64) << shift) | minor.astype(np.int64))
        return packed >> shift, packed & ((1 << shift) - 1)
    order = np.lexsort((minor, major))
    return major[order], minor[order]


def _classify(
    identifier: LanguageIdentifier, weights: np.ndarray, n_bytes: int, feats: np.ndarray, counts: np.ndarray
) -> tuple[str, float]:
    """py3langid's ``classify`` (``_decide`` with ``norm_probs``) from the feature counts of a text of ``n_bytes``."""
    if len(feats):
        scores = np.log1p(counts.astype(np.float32)) @ weights[feats] + identifier.nb_pc
    else:
        scores = np.full(len(identifier.nb_classes), 0.0, dtype=np.float32)
    scores *= 1.0 / math.sqrt(n_bytes or 1)
    np.exp(scores - scores.max(), out=scores)
    scores /= scores.sum()
    for i, j in identifier._alias_pairs:
        scores[i] += scores[j]
        scores[j] = 0.0
    best = int(scores.argmax())
    conf = float(scores[best])
    if identifier.min_confidence is not None and conf < identifier.min_confidence:
        return "und", conf
    return str(identifier.nb_classes[best]), conf


def detect_languages(texts: Sequence[str]) -> list[tuple[str, float]]:
    """``[detect_language(t) for t in texts]``, with the automaton walked over all the texts at once in NumPy
    instead of byte by byte in Python."""
    identifier = _get()
    weights = _get_walk().weights
    out: list[tuple[str, float]] = [(UNKNOWN, 0.0)] * len(texts)
    todo = [(i, identifier._encode(t)) for i, t in enumerate(texts) if any(ch.isalpha() for ch in t)]
    while todo:
        size, n = 0, 0
        while n < len(todo) and (n == 0 or size + len(todo[n][1]) <= _WALK_BYTES):
            size += len(todo[n][1])
            n += 1
        part, todo = todo[:n], todo[n:]
        counted = _feature_counts([b for _, b in part])
        for (i, encoded), (feats, counts) in zip(part, counted, strict=True):
            lang, conf = _classify(identifier, weights, len(encoded), feats, counts)
            out[i] = (lang, min(1.0, max(0.0, conf)))
    return out
