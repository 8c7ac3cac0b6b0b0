"""The compiled word and line counts of ASCII texts against the Python definitions, compiled and not."""

from __future__ import annotations

import random
import string
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from mixassets.engine import text_words
from mixassets.engine.compiled import compiled
from mixassets.engine.rules.base import _PUNCT, words
from mixassets.engine.rules.quality_prose import _BULLETS, _ELLIPSES, _TERMINAL
from mixassets.engine.rules.text_stats import line_stats_batch, line_stats_of, word_stats_batch, word_stats_of
from tests.test_text_keys import ASCII_EDGE, _texts

PROSE = [
    "The cat sat. THE CAT SAT! the cat sat?",
    "- one\n* two\n+ three\n  - four...\n- one\n\n- one  \n...\n",
    "\"Quoted,\" she said... (aside) 'single' end.\r\nend.\r\nEnd.\rend.\n",
    "!!! ??? ... --- ''' \"\"\" (((\n)))",
    "a-b a_b a.b A.B a.b. ...a.b... a",
    "repeat line\nrepeat line\nrepeat line \n repeat line\nRepeat line",
]


def _ascii(seed: int) -> list[str]:
    return [t for t in [*ASCII_EDGE, *PROSE, *_texts(seed)] if t.isascii()]


def _buffers(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return text_words.ascii_buffers(pa.array(texts, type=pa.large_string()).slice(1))


@pytest.mark.parametrize("seed", [0, 1])
def test_words_are_pythons(seed: int) -> None:
    """Token counts, words in order and their numbers: the same number exactly for the same lower-cased word."""
    texts = ["", *_ascii(seed)]
    data, offsets = _buffers(texts)
    punct = text_words.byte_table(_PUNCT)
    outs = [text_words._words(data, offsets, punct), compiled(text_words._words)(data, offsets, punct)]
    for n_tokens, word_doc, word_id, id_start, id_length, n, n_ids in outs:
        assert n_tokens.tolist() == [len(t.split()) for t in texts[1:]]
        lowered = text_words.LoweredWords(data, id_start[:n_ids], id_length[:n_ids])
        got = [[] for _ in texts[1:]]
        for d, i in zip(word_doc[:n].tolist(), word_id[:n].tolist(), strict=True):
            got[d].append(lowered[i])
        assert got == [[w.lower() for w in words(t)] for t in texts[1:]]
        assert len(set(lowered)) == n_ids == len({w.lower() for t in texts for w in words(t)})
    trimmed = [
        [out[0].tolist(), out[1][: out[5]].tolist(), out[2][: out[5]].tolist(), out[3][: out[6]].tolist()]
        for out in outs
    ]
    assert trimmed[0] == trimmed[1]


@pytest.mark.parametrize("seed", [0, 1])
def test_line_counts_are_pythons(seed: int) -> None:
    texts = ["", *_ascii(seed)]
    column = pa.array(texts, type=pa.large_string()).slice(1)
    expected = [list(line_stats_of(t, _BULLETS, _ELLIPSES, _TERMINAL)) for t in texts[1:]]
    assert text_words.ascii_line_counts(column, _BULLETS, _ELLIPSES, _TERMINAL).tolist() == expected
    # Uncompiled, with patterns of several bytes, an empty one and one that is not ASCII.
    patterns = (("--", "* "), ("...", "\u2026", "!"), ("", "."))
    data, offsets = text_words.ascii_buffers(column)
    flat, ends = b"--* ...!.", [(0, 2, 0), (2, 4, 0), (4, 7, 1), (7, 8, 1), (8, 8, 2), (8, 9, 2)]
    out = np.zeros((len(offsets) - 1, 5), dtype=np.int64)
    text_words._lines(data, offsets, np.frombuffer(flat, dtype=np.uint8), np.asarray(ends, dtype=np.int64), out)
    assert out.tolist() == [list(line_stats_of(t, *patterns)) for t in texts[1:]]
    assert text_words.ascii_line_counts(column, *patterns).tolist() == out.tolist()
    assert sum(row[4] for row in expected) > 0 and sum(row[1] for row in expected) > 0


@pytest.mark.parametrize("limits", [{2: 0.2, 3: 0.18, 4: 0.16}, {1: 0.05, 2: 0.1, 3: 0.05, 5: 0.01}])
def test_batches_of_mixed_texts_are_the_per_document_stats(limits: dict[int, float]) -> None:
    """ASCII and other texts in one column: each takes its own path, and the rows come back in order."""
    rng = random.Random(3)
    vocabulary = ["Spam", "spam", "SPAM,", "eggs", "\u00e9clair", "ham.", "--", "bacon"]
    texts = [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 40))) for _ in range(200)]
    texts += [*PROSE, "caf\u00e9\ncaf\u00e9\n- caf\u00e9...", string.punctuation, None]
    column = pa.array(texts, type=pa.large_string())
    plain = [t or "" for t in texts]
    assert word_stats_batch(column, limits) == [word_stats_of(t, limits) for t in plain]
    assert line_stats_batch(column, _BULLETS, _ELLIPSES, _TERMINAL) == [
        line_stats_of(t, _BULLETS, _ELLIPSES, _TERMINAL) for t in plain
    ]
    fired = Counter(s.top_ngram is not None for s in word_stats_batch(column, limits))
    assert fired[True] > 0 and fired[False] > 0


def test_braces_and_chars_are_pythons() -> None:
    """Brace and character counts of UTF-8 texts (one- to four-byte characters, braces among them, a sliced
    array), compiled and not, are ``str.count`` and ``len``."""
    rng = random.Random(3)
    alphabet = "ab {}\n\u00e9\u00a0\u2028\uff5b\uff5d\u3000\U0001f600\u0301"
    texts = ["", "{}", "{\u00e9}", *PROSE, *(
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(300)
    )]  # fmt: skip
    column = pa.array(["skipped", *texts]).slice(1)
    expected = [[t.count("{") + t.count("}"), len(t)] for t in texts]
    assert text_words.braces_and_chars(column) == expected
    data, offsets = text_words.ascii_buffers(column)
    out = np.zeros((len(texts), 2), dtype=np.int64)
    text_words._braces_and_chars(data, offsets, out)
    assert out.tolist() == expected
    assert text_words.braces_and_chars(pa.array([], type=pa.string())) == []
