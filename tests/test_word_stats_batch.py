"""The whole-table word counts and top n-gram verdicts (``text_stats.word_stats_batch``) against the per-document
arithmetic they replace, on awkward text: every Unicode whitespace, punctuation-only tokens, case mappings that
change a word's length, n-grams across document boundaries, ties between the most frequent n-grams."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mixassets.engine.rules.base import _PUNCT
from mixassets.engine.rules.text_stats import _ngram_kernel, _top_ngrams, word_stats_batch, word_stats_of

LIMITS = [{2: 0.2, 3: 0.18, 4: 0.16}, {1: 0.05, 2: 0.1, 3: 0.05, 5: 0.01}, {2: 0.0}, {7: 0.01}]
VOCAB = ["the", "The", "THE", "İstanbul", "straße", "STRASSE", "ΟΔΟΣ", "όδος", "😀", "(beta)", "gamma.", "…", "#", "—"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\x0b", "\x1c", "\x85", "\xa0", "\u2003", "\u2028", "\u3000", "\u200b"]


def _texts(seed: int, n: int = 300) -> list[str | None]:
    rng = random.Random(seed)
    out: list[str | None] = [None, "", "   ", "…", "a a a a", "a b a b a b a b", "x y z x y z q x y z"]
    for _ in range(n):
        vocab = VOCAB[: rng.randint(1, len(VOCAB))]
        words = [rng.choice(vocab) for _ in range(rng.randint(0, 80))]
        out.append("".join(w + rng.choice(SPACES) for w in words))
    return out


def test_arrow_whitespace_split_and_trim_are_pythons() -> None:
    """The batch relies on Arrow splitting on exactly the code points ``str.split`` splits on, and on
    ``utf8_trim`` removing what ``str.strip(_PUNCT)`` removes: checked for every code point."""
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    texts = ["a" + chr(c) + "b" for c in points]
    split = pc.utf8_split_whitespace(pa.array(texts)).to_pylist()
    assert [t for t, s in zip(texts, split, strict=True) if [x for x in s if x] != t.split()] == []
    padded = [chr(c) + "x" + chr(c) for c in points]
    trimmed = pc.utf8_trim(pa.array(padded), characters=_PUNCT).to_pylist()
    assert [t for t, s in zip(padded, trimmed, strict=True) if s != t.strip(_PUNCT)] == []


@pytest.mark.parametrize("limits", LIMITS)
def test_word_stats_batch_is_word_stats_of(limits: dict[int, float]) -> None:
    texts = _texts(0)
    expected = [word_stats_of(t or "", limits) for t in texts]
    assert any(s.top_ngram for s in expected) or limits == {7: 0.01}
    assert word_stats_batch(pa.array(texts, pa.string()), limits) == expected
    # Chunks, and a slice whose first row is not the first of its buffers.
    chunked = pa.chunked_array([pa.array(texts[:100]), pa.array(texts[100:])])
    assert word_stats_batch(chunked, limits) == expected
    assert word_stats_batch(pa.array(texts).slice(5), limits) == expected[5:]
    assert word_stats_batch(pa.array([], pa.string()), limits) == []


def test_ties_go_to_the_first_n_gram_seen() -> None:
    limits = {1: 0.1, 2: 0.1}
    for text in ["b a b a", "a b b a c", "z y x z y x w v u", "one two one two three three"]:
        assert word_stats_batch(pa.array([text]), limits) == [word_stats_of(text, limits)]


def test_compiled_ngram_counter_is_the_python_one() -> None:
    rng = np.random.default_rng(0)
    word = rng.integers(0, 6, 2_000)
    bounds = np.array([0, 3, 3, 400, 401, 1_200, 2_000])
    lower_len = rng.integers(1, 9, 6)
    total = np.array([lower_len[word[a:b]].sum() for a, b in itertools.pairwise(bounds.tolist())])
    args = (word, bounds, lower_len, total, np.array([1, 2, 3, 6]), np.array([0.2, 0.1, 0.05, 0.01]))
    compiled, plain = _ngram_kernel()(*args), _top_ngrams(*args)
    for got, want in zip(compiled, plain, strict=True):
        assert got.tolist() == want.tolist()
    assert plain[0].any()


def test_word_stats_batch_in_small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixassets.engine.rules import text_stats

    monkeypatch.setattr(text_stats, "_WORD_BATCH_ROWS", 7)
    texts = _texts(1, 60)
    limits = LIMITS[1]
    assert word_stats_batch(pa.array(texts), limits) == [word_stats_of(t or "", limits) for t in texts]
