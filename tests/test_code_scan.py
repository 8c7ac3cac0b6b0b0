"""The compiled code scan finds the documents' regex tokens, with the same ids, on real and hostile text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.code_contamination import stdlib_files
from mixassets.engine import contamination_code as code
from mixassets.engine.code_scan import UNRESOLVED, scan
from mixassets.engine.text_norm import TokenHasher

HOSTILE = [
    "",
    "   \t  ",
    "x = '''never closed",
    "s = '''a''' + \"\"\"b\"\"\" + ''",
    "rb'a' Rb\"b\" bR'c' f'd' u'e' rbf'g' x2'[.?!]' ur'h'",
    "it's a \"quote that never closes\nnext line 'ok'",
    "'a\\'b' \"c\\\"d\" 'tail\\",
    "a\\\nb c\\\r\nd \\ e \\\r f",
    "0x 0x1F 0b102 0o7_7 1_000.5e-3j .5 5. 1e 1e+ 1.e5 3J ٣٤ 0x٣",
    "**= //= >>= <<= ... -> := == != <= >= ** // << >> += -= *= /= %= &= |= ^= @= ~ ` $ ?",
    "² x² ½ Ⅻ é中 _x __init__ self len range print",
    "\x00\x00 \ud800 \udfff lone surrogates",
    "line\n\n   \n\tindented\r\n\u2028after\u00a0nbsp\n",
    "# only a comment\n# another",
    "\u03b1 = \u03bb(\u03b2) ≠ ∞ ∑ ü",  # Greek names, symbols
    "'\n'\"\n\"",
]


def _regex(texts: list[str]) -> list[tuple[int, int, int]]:
    """(start, stop, id) of every token the regex gives that the stream keeps, offsets in the joined texts."""
    out = []
    base = 0
    for text in texts:
        for m in code._DOC_TOKEN.finditer(text):
            ident = code._RAW_IDS[m.group()]
            if ident != code._DROPPED:
                out.append((base + m.start(), base + m.end(), ident))
        base += len(text)
    return out


def _scanned(texts: list[str], *, compile_loop: bool = True) -> list[tuple[int, int, int]]:
    found = scan(texts, code._scan_table(), compile_loop=compile_loop)
    ids = found.ids.copy()
    for k in np.flatnonzero(ids == UNRESOLVED).tolist():
        ids[k] = code._RAW_IDS[found.text[found.starts[k] : found.stops[k]]]
    return list(zip(found.starts.tolist(), found.stops.tolist(), ids.tolist(), strict=True))


@pytest.mark.parametrize("compile_loop", [True, False])
def test_scan_is_the_regex_on_hostile_text(compile_loop: bool) -> None:
    assert _scanned(HOSTILE, compile_loop=compile_loop) == _regex(HOSTILE)
    for text in HOSTILE:  # and each on its own: a token never runs into the next document
        assert _scanned([text], compile_loop=compile_loop) == _regex([text]), repr(text)


def test_scan_is_the_regex_on_the_standard_library() -> None:
    files = [text for _, text in stdlib_files()[::3]]
    assert len(files) > 400
    for lo in range(0, len(files), 100):
        batch = files[lo : lo + 100]
        assert _scanned(batch) == _regex(batch)
    assert _scanned(files[:3], compile_loop=False) == _regex(files[:3])


_PIECES = [
    *"abrRbBuUfFxXoOeEjJ_019.+-*/<>=!%&|^@~:;,()[]{}'\"\\#\n\r\t ",
    *["'''", '"""', "\r\n", "\\\n", "\u00a0", "²", "½", "٣", "é", "\u200b", "\u03a9", "$", "def", "len"],
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_PIECES), max_size=40).map("".join), min_size=1, max_size=5))
def test_scan_is_the_regex_on_generated_text(texts: list[str]) -> None:
    assert _scanned(texts) == _regex(texts)


def test_doc_tokens_are_the_regex_tokens_with_their_spans() -> None:
    texts = [text for _, text in stdlib_files()[:40:4]] + HOSTILE
    docs = code.DocTokens(texts, TokenHasher())
    hasher = TokenHasher()
    for doc, text in enumerate(texts):
        mine = docs.owner == doc
        assert docs.hashes[mine].tolist() == hasher.hashes(code.regex_code_tokens(text)).tolist()
        spans = [m.span() for m in code._CODE_TOKEN.finditer(text) if code._classify(m.group())]
        assert list(zip(docs.char_starts[mine].tolist(), docs.char_stops[mine].tolist(), strict=True)) == spans
