"""The compiled document keys of ASCII texts and line keys of UTF-8 texts against the Python definitions, on
awkward texts."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mixassets.engine import text_keys
from mixassets.engine.rules.boilerplate import line_key
from mixassets.engine.rules.exact_duplicates import dedupe_key, normalize_for_dedupe
from mixassets.engine.text_norm import stable_hash64, text_key

# Every ASCII whitespace and line break, runs of them, at the edges, CRLF and lone CR, upper case, controls.
ASCII_EDGE = [
    "",
    " ",
    "\r\n",
    "\n\n\n",
    "a",
    "A\tB\x0bC\x0cD\rE\x1cF\x1dG\x1eH\x1fI J\nK",
    "  Leading and trailing  \t",
    "line one\r\nline two\rline three\n\rline four\r\n\r\n",
    "ALL CAPS LINE HERE\nMiXeD CaSe LiNe\x00with a NUL\x7f and DEL",
    "x" * 300 + "\n" + " y" * 200 + "\n",
    "tab\t\t\tseparated\x1f\x1funit separators\n\x1c\x1d\x1eend",
    "ends with a break\x0c",
    "@[`{ punctuation next to letters ~\n",
]


# Every non-ASCII space and line break next to text, runs of them, at the edges, and characters of two to four
# bytes (the ones that look like spaces but are not: zero width space, Mongolian vowel separator).
UNICODE_EDGE = [
    "\u3000\u3000full width\u3000spaces\u3000",
    "nbsp\u00a0\u00a0run\u2000\u200a\u202f\u205f\u1680end\u2028next\u2029\u0085last\u0085",
    "\u00e9\u00e9 \u20ac\u20ac\U0001f600\U0001f600 x\u200by \u180e z",
    "\u0085\u0085\u2028\r\u2029\n",
    "caf\u00e9\r\n\u00a0\u00a0caf\u00e9\u00a0\r\n",
]


def _texts(seed: int) -> list[str]:
    """ASCII edge cases, random ASCII texts and some non-ASCII ones (which take the Python path) mixed."""
    rng = random.Random(seed)
    alphabet = [chr(c) for c in range(128)] + ["word", "Word", "WORD", " ", "\n", "\r\n"] * 8
    texts = list(ASCII_EDGE)
    for _ in range(300):
        texts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))))
    texts += [
        "caf\u00e9 au lait\nSTRASSE stra\u00dfe",
        "no\u00a0break\u2028line sep\u0085nel",
        "\ufb01 ligature \u2163",
        *UNICODE_EDGE,
    ]
    unicode = [*text_keys.UNICODE_SPACES, "\u00e9", "\u20ac", "\U0001f600", "\u0301", "\u200b", "\u180e", "\r\n"]
    for _ in range(100):
        texts.append("".join(rng.choice(alphabet + unicode * 4) for _ in range(rng.randint(0, 80))))
    rng.shuffle(texts)
    return texts


def test_the_ascii_sets_are_pythons() -> None:
    spaces = bytes(c for c in range(128) if chr(c).isspace())
    breaks = bytes(c for c in range(128) if len(f"a{chr(c)}b".splitlines()) == 2)
    assert spaces == text_keys.ASCII_SPACES
    assert breaks == text_keys.ASCII_LINE_BREAKS
    beyond = [chr(c) for c in range(128, 0x110000) if not 0xD800 <= c < 0xE000]
    assert "".join(c for c in beyond if c.isspace()) == text_keys.UNICODE_SPACES
    assert "".join(c for c in beyond if len(f"a{c}b".splitlines()) == 2) == text_keys.UNICODE_LINE_BREAKS


@pytest.mark.parametrize("seed", [0, 1])
def test_document_keys_are_the_python_keys(seed: int) -> None:
    texts = _texts(seed)
    assert text_keys.document_keys(texts, normalize_for_dedupe) == [text_key(normalize_for_dedupe(t)) for t in texts]
    sources = [random.Random(seed + i).choice(["web", "forum", "n\u00e9ws", ""]) for i in range(len(texts))]
    prefixes = [f"{s}\x00" for s in sources]
    expected = [dedupe_key(s, t) for s, t in zip(sources, texts, strict=True)]
    assert text_keys.document_keys(texts, normalize_for_dedupe, prefixes) == expected
    assert text_keys.document_keys([], normalize_for_dedupe) == []


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("min_chars", [0, 1, 5])
def test_line_hashes_are_the_python_ones(seed: int, min_chars: int) -> None:
    texts = _texts(seed)
    hashes, line_doc, line_no = text_keys.line_hashes(texts, min_chars)
    expected = [
        (stable_hash64(line_key(line)), d, n)
        for d, text in enumerate(texts)
        for n, line in enumerate(text.splitlines())
        if len(line_key(line)) >= min_chars
    ]
    assert list(zip(hashes.tolist(), line_doc.tolist(), line_no.tolist(), strict=True)) == expected
    assert hashes.dtype == np.uint64 and line_doc.dtype == line_no.dtype == np.int64


def test_line_hashes_of_a_text_without_utf8_form_are_the_python_ones() -> None:
    """A lone surrogate has no UTF-8 form: such a text takes the Python path, beside texts that do not."""
    texts = ["ok line here\nsame", "bad \ud800 line\nsame", "\u00e9t\u00e9 line\nsame"]
    hashes, line_doc, line_no = text_keys.line_hashes(texts[:1] + texts[2:], 1)
    assert line_doc.tolist() == [0, 0, 1, 1] and line_no.tolist() == [0, 1, 0, 1]
    assert hashes.tolist() == [stable_hash64(line_key(x)) for t in texts[:1] + texts[2:] for x in t.splitlines()]
    with pytest.raises(UnicodeEncodeError):  # as stable_hash64 of that line raises
        text_keys.line_hashes(texts, 1)
    assert text_keys.line_hashes(["\ud800"], 2)[0].tolist() == []  # too short to be hashed at all


def test_compiled_loops_are_the_python_loops() -> None:
    """The loops compiled and run as plain Python write the same bytes."""
    from mixassets.engine.compiled import compiled

    texts = [*ASCII_EDGE, "the Quick brown fox\n\n  jumps\tOVER\r\nthe lazy dog  "]
    data, offsets = text_keys._ascii_buffer(texts, list(range(len(texts))))
    outs = []
    for fold in (compiled(text_keys._fold), text_keys._fold):
        out, out_offsets = np.zeros(len(data), dtype=np.uint8), np.empty(len(offsets), dtype=np.int64)
        fold(data, offsets, out, out_offsets)
        outs.append((out[: out_offsets[-1]].tobytes(), out_offsets.tolist()))
    assert outs[0] == outs[1] and outs[0][0]
    encoded = [t.encode("utf-8") for t in [*texts, *UNICODE_EDGE]]
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype(np.int64)
    got, plain = compiled(text_keys._lines)(data, offsets, 2), text_keys._lines(data, offsets, 2)
    n = got[3]
    assert n == plain[3] > 0
    assert got[0][: got[1][n - 1]].tobytes() == plain[0][: plain[1][n - 1]].tobytes()
    assert got[1][:n].tolist() == plain[1][:n].tolist() and got[2][:n].tolist() == plain[2][:n].tolist()


def test_a_remembered_normalization_is_reused_only_for_the_same_object_and_only_once() -> None:
    """``remember`` leaves the normalized non-ASCII texts in the handoff for the next call given it, which gives the
    keys it would give anyway: a text equal to a remembered one but another object, another ``normalize``, or a
    call without the handoff, normalizes afresh."""
    calls: list[str] = []

    def counting(text: str) -> str:
        calls.append(text)
        return normalize_for_dedupe(text)

    handoff = text_keys.NormalizedHandoff(counting)
    shared, other = "Ünïcode  TEXT", "Ärger im Büro"
    text_keys.document_keys([shared, other, "plain ascii"], counting, handoff=handoff, remember=True)
    assert calls == [shared, other]
    text_keys.document_keys([shared], counting)  # no handoff: normalized again, and the handoff keeps its texts
    assert len(calls) == 3
    copy = "".join(list(other))  # equal, another object
    prefixes = ["s\x00"] * 3
    keys = text_keys.document_keys([shared, copy, "Çava"], counting, prefixes, handoff=handoff)
    assert keys == [dedupe_key("s", t) for t in (shared, copy, "Çava")]
    assert calls[3:] == [copy, "Çava"]  # ``shared`` was not normalized again
    text_keys.document_keys([shared], counting, handoff=handoff)  # the first call's forms were taken over
    assert calls[-1] is shared and len(calls) == 6
    text_keys.document_keys([shared], counting, handoff=handoff, remember=True)
    upper = text_keys.document_keys([shared], lambda t: t.upper(), handoff=handoff)
    assert upper == [text_key(shared.upper())]
