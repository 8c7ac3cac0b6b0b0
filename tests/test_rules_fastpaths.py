"""The batched rule code paths against simple per-document references written here, on awkward texts."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pyarrow as pa
import pytest

from benchmarks.bench_gate_rules import top_ngram_reference
from mixassets.engine.gating import conform_documents
from mixassets.engine.rules.base import GateContext, Outcome, words
from mixassets.engine.rules.boilerplate import RepeatedLineRule, batch_line_hashes, line_key
from mixassets.engine.rules.exact_duplicates import normalize_for_dedupe
from mixassets.engine.text_norm import stable_hash64, text_key
from mixtrain.schema import DOCUMENT_SCHEMA
from tests.test_rules_boilerplate import _docs, _spec

BANNERS = ["Acme Daily   News — all rights reserved", "Subscribe to our newsletter 📰 today", "Ünïcödé bänner line hé"]
EDGE = [
    "",
    "short",
    "\r\n\r\n",
    "line one\r\nline two\r\n" + BANNERS[0] + "\r\n",
    "emoji 😀😀😀 line here\n" + BANNERS[1],
    "x" * 5000 + "\n" + BANNERS[2] + "\n" + "y " * 3000,
    BANNERS[0] + "\x0b" + BANNERS[1] + "\x1c" + BANNERS[2] + "\u2028tail line here\x85more\u2029",
    "  " + BANNERS[0].replace(" ", "\t ") + "  \n\n" + BANNERS[1],
    "\U0001d518\U0001d52b astral letters \U0001f600\n" + BANNERS[2] + "\n",
]


def _corpus(seed: int) -> list[str]:
    rng = random.Random(seed)
    words = ["alpha", "béta", "γάμμα", "😀", "delta", "echo", "foxtrot", "ünï", "\u00a0", "x" * 40]
    out = list(EDGE)
    for _ in range(60):
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 8))) for _ in range(rng.randint(0, 6))]
        lines += rng.sample(BANNERS, rng.randint(0, 3))
        rng.shuffle(lines)
        out.append(rng.choice(["\n", "\r\n", "\n\n"]).join(lines) + rng.choice(["", "\n", "\r\n"]))
    out += out[5:15]  # exact copies count once
    return out


def _reference_boilerplate(texts: list[str], kinds: list[str], cfg: Any) -> list[list[Outcome]]:
    """The rule as one document at a time: per-document sets of line hashes, then every line hashed again."""
    seen: set[bytes] = set()
    counts: Counter[int] = Counter()
    for text, kind in zip(texts, kinds, strict=True):
        key = text_key(normalize_for_dedupe(text))
        if kind == "chat" or key in seen:
            continue
        seen.add(key)
        keys = {k for line in text.splitlines() if len(k := line_key(line)) >= cfg.min_line_chars}
        counts.update({stable_hash64(k) for k in keys})
    n = len(seen)
    lines = {h: c for h, c in counts.items() if c >= cfg.min_docs and c / n >= cfg.min_doc_fraction}
    out: list[list[Outcome]] = []
    for text, kind in zip(texts, kinds, strict=True):
        outcomes: list[Outcome] = []
        pos = 0
        for line in [] if kind == "chat" else text.splitlines(keepends=True):
            key = line_key(line)
            count = lines.get(stable_hash64(key)) if len(key) >= cfg.min_line_chars else None
            if count is not None:
                reason = (
                    f"line in {count} of {n} distinct documents "
                    f"(>= min_docs {cfg.min_docs}, share {count / n:.2f} >= {cfg.min_doc_fraction})"
                )
                outcomes.append(Outcome("strip", reason, (pos, pos + len(line)), "", score=count / n))
            pos += len(line)
        out.append(outcomes)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("boilerplate", [{}, {"min_docs": 2, "min_doc_fraction": 0.01, "min_line_chars": 1}])
def test_boilerplate_matches_per_document_reference(seed: int, boilerplate: dict[str, Any]) -> None:
    texts = _corpus(seed)
    docs = _docs(texts)
    spec = _spec(gating={"boilerplate": boilerplate})
    rule = RepeatedLineRule()
    expected = _reference_boilerplate(texts, ["text"] * len(texts), spec.gating.boilerplate)
    assert any(expected)
    assert rule.evaluate(docs, GateContext(spec=spec)) == expected
    # The streaming runner's way: prepare over batches first, then evaluate each batch against that state.
    ctx = GateContext(spec=spec)
    half = docs.num_rows // 2
    ctx.prepared[rule.id] = rule.prepare([docs.slice(0, half), docs.slice(half)], ctx)
    got = rule.evaluate(docs.slice(0, half), ctx) + rule.evaluate(docs.slice(half), ctx)
    assert got == expected


def test_boilerplate_leaves_chat_alone_and_handles_none_and_empty() -> None:
    texts = [BANNERS[0] + "\n" + f"body {i}" for i in range(8)]
    kinds = ["text"] * 6 + ["chat", "text"]
    rows = _docs(texts).to_pylist()
    rows[-1]["text"] = None
    rows[-2]["kind"] = "chat"
    docs = pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)
    spec = _spec()
    got = RepeatedLineRule().evaluate(docs, GateContext(spec=spec))
    assert got == _reference_boilerplate([*texts[:-1], ""], kinds, spec.gating.boilerplate)
    assert got[-1] == got[-2] == [] and all(got[:-2])
    empty = RepeatedLineRule().evaluate(_docs([]), GateContext(spec=spec))
    assert empty == []


def test_batch_line_hashes_are_stable_hash64_of_line_keys() -> None:
    texts = _corpus(3)
    hashes, line_doc, line_no = batch_line_hashes(texts, 3)
    expected = [
        (stable_hash64(line_key(line)), d, n)
        for d, text in enumerate(texts)
        for n, line in enumerate(text.splitlines())
        if len(line_key(line)) >= 3
    ]
    assert list(zip(hashes.tolist(), line_doc.tolist(), line_no.tolist(), strict=True)) == expected
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate cannot be hashed, as before
        batch_line_hashes(["fine line\nbad \ud800 line"], 3)


WORDY = [
    "",
    "   \r\n\t ",
    "... ### …",
    "İstanbul İİİ ΟΔΟΣ ΟΔΟΣ ΟΔΟΣ straße STRASSE",  # lower() changes the length of some words
    "the the the the the the cat cat cat sat",
    "click here click here click here click here to win",
    "😀 😀 😀 emoji words 😀 and more 😀",
    "a b c d e f g h",
    "supercalifragilisticexpialidocious " * 4,
    "CRLF line one\r\nCRLF line two\r\n" * 3,
    "word " * 2000,
    ("long-" * 3000) + " tail",
    "#tag #tag #tag some words here ...",
]


def _wordy_corpus(seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = ["the", "ΟΔΟΣ", "İ", "of", "😀", "alpha,", "(beta)", "gamma.", "…", "#", "x" * 15, "\u00a0"]
    out = list(WORDY)
    for _ in range(80):
        out.append(" ".join(rng.choice(vocab[: rng.randint(2, len(vocab))]) for _ in range(rng.randint(0, 60))))
    return out


@pytest.mark.parametrize("quality", [{}, {"max_top_ngram_char_fraction": {1: 0.05, 2: 0.1, 3: 0.05, 5: 0.01}}])
def test_word_rules_match_their_per_document_check(quality: dict[str, Any]) -> None:
    from mixassets.engine.rules.quality_prose import MeanWordLengthRule, SymbolWordRatioRule, TopNgramRule

    texts = _wordy_corpus(0)
    rows = _docs(texts).to_pylist()
    rows[1]["text"] = ""  # DOCUMENT_SCHEMA's text is not nullable: a conformed table has no None
    rows[2]["kind"] = "chat"
    docs = conform_documents(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA))
    ctx = GateContext(spec=_spec(gating={"quality": quality}))
    plain = ["" if t is None else t for t in docs.column("text").to_pylist()]
    for rule in (MeanWordLengthRule(), SymbolWordRatioRule(), TopNgramRule()):
        expected = [rule.check(t, ctx) for t in plain]
        assert rule.evaluate(docs, ctx) == expected, rule.id
        # A subset of the rows (the shared counts are reused) and the same rows with other texts (they are not).
        assert rule.evaluate(docs.slice(3, 40), ctx) == expected[3:43], rule.id
        other = docs.set_column(docs.schema.get_field_index("text"), "text", pa.array(plain[::-1], pa.string()))
        assert rule.evaluate(other, ctx) == [rule.check(t, ctx) for t in plain[::-1]], rule.id
    assert any(TopNgramRule().evaluate(docs, ctx)) and any(MeanWordLengthRule().evaluate(docs, ctx))


@pytest.mark.parametrize("limits", [{2: 0.2, 3: 0.18, 4: 0.16}, {1: 0.05, 2: 0.1, 3: 0.05, 5: 0.01}, {2: 0.0}])
def test_word_stats_of_is_the_per_document_arithmetic(limits: dict[int, float]) -> None:
    from mixassets.engine.rules.text_stats import word_stats_of

    hits = 0
    for text in _wordy_corpus(1):
        ws = words(text)
        expected_top = top_ngram_reference(text, limits)
        hits += bool(expected_top)
        top = (expected_top[0].reason, expected_top[0].score) if expected_top else None
        assert word_stats_of(text, limits) == (len(text.split()), len(ws), sum(map(len, ws)), top)
    assert hits


def test_top_ngram_rule_matches_the_reference_without_bounds() -> None:
    from mixassets.engine.rules.quality_prose import TopNgramRule

    texts = _wordy_corpus(2)
    docs = _docs(texts)
    for limits in ({2: 0.2, 3: 0.18, 4: 0.16}, {1: 0.05, 2: 0.1, 3: 0.05, 5: 0.01}):
        ctx = GateContext(spec=_spec(gating={"quality": {"max_top_ngram_char_fraction": limits}}))
        expected = [top_ngram_reference(t, limits) for t in texts]
        assert any(expected)
        assert TopNgramRule().evaluate(docs, ctx) == expected
        assert [TopNgramRule().check(t, ctx) for t in texts] == expected


LINEY = [
    "",
    "\r\n \r\n\t\r\n",
    "• one\r\n• two\r\n• one\r\nplain line.\r\n",
    "- a\n* b\n+ c\n\u2013 d\n\u2014 e\n\u00b7 f\nend\u2026\nmore...\n",
    "same\nsame\nsame\n  same  \nother!\n",
    "line\u2028• bullet\u2029line\x85line\x0bquote”\x0c(paren)\x1cend?",
    "😀 emoji line…\n😀 emoji line…\n\n\nthe end.",
    ("x" * 10000 + "\n") * 3 + "fin.",
    "no terminal\nstill none\nnope",
]


def test_line_rules_match_their_per_document_check() -> None:
    from mixassets.engine.rules.quality_prose import (
        BulletLinesRule,
        DuplicateLinesRule,
        EllipsisLinesRule,
        TerminalPunctuationRule,
    )

    rng = random.Random(4)
    pieces = ["• item", "plain words", "end.", "trail...", "  ", "- dash", "same", "“quoted”", "😀…"]
    texts = LINEY + [rng.choice(["\n", "\r\n"]).join(rng.choices(pieces, k=rng.randint(0, 12))) for _ in range(60)]
    rows = _docs(texts).to_pylist()
    rows[1]["text"] = ""  # DOCUMENT_SCHEMA's text is not nullable: a conformed table has no None
    rows[2]["kind"] = "chat"
    docs = conform_documents(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA))
    plain = ["" if t is None else t for t in docs.column("text").to_pylist()]
    kinds = docs.column("kind").to_pylist()
    for quality in ({}, {"min_terminal_punctuation_ratio": 0.5, "max_bullet_line_ratio": 0.3}):
        ctx = GateContext(spec=_spec(gating={"quality": quality}))
        for rule in (BulletLinesRule(), EllipsisLinesRule(), DuplicateLinesRule(), TerminalPunctuationRule()):
            expected = [
                [] if k == "chat" or not rule.enabled(ctx) else rule.check(t, ctx)
                for k, t in zip(kinds, plain, strict=True)
            ]
            assert rule.evaluate(docs, ctx) == expected, rule.id
            assert rule.evaluate(docs.slice(5, 30), ctx) == expected[5:35], rule.id
        assert any(TerminalPunctuationRule().evaluate(docs, ctx)) == bool(quality)
    assert any(BulletLinesRule().evaluate(docs, ctx)) and any(DuplicateLinesRule().evaluate(docs, ctx))


def test_line_stats_of_is_the_per_line_arithmetic() -> None:
    from mixassets.engine.rules.quality_prose import _BULLETS, _ELLIPSES, _TERMINAL
    from mixassets.engine.rules.text_stats import line_stats_of

    for text in LINEY:
        lines = [s for p in text.splitlines() if (s := p.strip())]
        expected = (
            len(lines),
            sum(1 for x in lines if x.startswith(_BULLETS)),
            sum(1 for x in lines if x.endswith(_ELLIPSES)),
            sum(1 for x in lines if x.endswith(_TERMINAL)),
            len(lines) - len(set(lines)),
        )
        assert line_stats_of(text, _BULLETS, _ELLIPSES, _TERMINAL) == expected


def test_lorem_ipsum_prefilter_never_hides_a_match() -> None:
    from mixassets.engine.rules.quality_prose import LoremIpsumRule

    texts = [
        "",
        "lorem ipsum dolor",
        "LOREM\u00a0IPSUM",
        "Lorem\r\n\t ip\u017fum",  # Python's IGNORECASE: the long s is an s
        "lorem \u0130psum and lorem \u0131psum",  # dotted/dotless capital and small i
        "😀 loReM\u2028iPsUm 😀",
        "lorem only",
        "ipsum lorem",
        "x" * 5000 + " lorem   ipsum",
        "l\u00f6rem ipsum",
    ]
    rows = _docs(texts).to_pylist()
    rows[0]["text"] = None
    docs = pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)
    ctx = GateContext(spec=_spec())
    rule = LoremIpsumRule()
    got = rule.evaluate(docs, ctx)
    assert got == [rule.check(t or "", ctx) for t in docs.column("text").to_pylist()]
    assert [bool(o) for o in got] == [False, True, True, True, True, True, False, False, True, False]


def test_shared_counts_hold_no_text_that_texts_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixassets.engine.rules import text_stats
    from mixassets.engine.rules.base import remember_texts, texts
    from mixassets.engine.rules.quality_prose import MeanWordLengthRule

    docs = conform_documents(_docs(_wordy_corpus(5)))
    ctx = GateContext(spec=_spec())
    rule = MeanWordLengthRule()
    expected = rule.evaluate(docs, ctx)
    held = texts(docs)
    assert {id(t) for t in held} == set(text_stats._cache.entries)
    assert all(text_stats._cache.entries[id(t)][0] is t for t in held)
    subset = docs.take(pa.array([3, 1, 4, 1, 5]))  # a new column: converted again, the numbers reused
    values = texts(subset)
    assert all(v == held[i] and v is not held[i] for v, i in zip(values, [3, 1, 4, 1, 5], strict=True))
    entries = text_stats._cache.entries
    assert set(entries) == {id(v) for v in values}  # the new objects, the other rows' texts let go
    assert all(entries[id(v)][0] is v for v in values)
    computed = []
    monkeypatch.setattr(text_stats, "word_stats_batch", lambda *a: computed.append(a) or [])
    assert rule.evaluate(subset, ctx) == [expected[i] for i in [3, 1, 4, 1, 5]] and not computed
    fewer = subset.take(pa.array([0, 2]))  # held texts only: kept until the next lookup, which lets go of the rest
    base_texts = [values[0], values[2]]
    remember_texts(fewer, base_texts)
    assert rule.evaluate(fewer, ctx) == [expected[3], expected[4]]
    assert set(text_stats._cache.entries) == {id(v) for v in base_texts}
    changed = subset.set_column(subset.schema.get_field_index("text"), "text", pa.array(["other"] * 5, pa.string()))
    texts(changed)
    assert text_stats._cache.entries == {}
    monkeypatch.undo()
    assert rule.evaluate(changed, ctx) == [rule.check("other", ctx)] * 5


def test_length_and_brace_rules_match_their_per_document_arithmetic() -> None:
    """The empty and too-short rules and the curly-brace rule, counted over the column (``isspace``, compiled
    token counts, Arrow's brace and character counts), give what ``strip``, ``split`` and ``count`` give."""
    from mixassets.engine.rules.length import EmptyRule, TooShortRule
    from mixassets.engine.rules.quality_prose import CurlyBraceRule

    texts = [*_corpus(0), "{", "{}", "x{y}z" * 50, "\u3000\u2028 \x1c", "a\u00a0b\x1dc d", "é{}😀", " \x85 ", "{{ 😀"]
    rows = _docs(texts).to_pylist()
    rows[1]["text"] = None
    rows[-1]["kind"] = "chat"
    docs = pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)
    ctx = GateContext(spec=_spec(gating={"min_words": 3, "quality": {"max_curly_brace_ratio": 0.01}}))
    plain = [t or "" for t in docs.column("text").to_pylist()]
    empty = [[] if t.strip() else [Outcome("reject", "no text after stripping whitespace")] for t in plain]
    assert EmptyRule().evaluate(docs, ctx) == empty and sum(map(bool, empty)) >= 4
    short = [
        [Outcome("reject", f"{n} words < min_words 3", score=n)] if (n := len(t.split())) < 3 else [] for t in plain
    ]
    assert TooShortRule().evaluate(docs, ctx) == short
    rule = CurlyBraceRule()
    expected = [[] if r["kind"] == "chat" else rule.check(t, ctx) for r, t in zip(rows, plain, strict=True)]
    assert rule.evaluate(docs, ctx) == expected and sum(map(bool, expected)) >= 4 and not expected[-1]


def test_redacted_views_of_repeated_texts() -> None:
    """``redact_views`` scans each distinct text once; every copy comes back as ``redact_view`` shows it."""
    from mixassets.engine.redaction import redact_view, redact_views

    texts = [None, "", "mail jane@example.com", "12 words < min_words 50", "mail jane@example.com", None, "ok"] * 3
    assert redact_views(texts) == [redact_view(t) for t in texts]
    assert "jane@example.com" not in str(redact_views(texts))


def test_texts_given_by_the_runner_are_what_the_conversion_gives() -> None:
    """The runner hands ``texts`` the strings it holds for the table it shows the rules (``remember_texts``);
    a rule asking about that table gets them, one asking about another table gets its own conversion."""
    from mixassets.engine.rules.base import remember_texts, texts

    docs = _docs(["alpha", "b\u00e9ta", ""])
    held = ["alpha", "b\u00e9ta", ""]
    remember_texts(docs, held)
    got = texts(docs)
    assert got == held and got is not held and all(a is b for a, b in zip(got, held, strict=True))
    other = docs.slice(1)
    assert texts(other) == held[1:]
    assert texts(docs) == held  # converted again: the last table asked about was ``other``


@pytest.mark.parametrize("limit", [0.0, 0.01, 0.5])
def test_undecodable_rule_counts_only_the_texts_one_pass_flags(limit: float) -> None:
    """Only texts with U+FFFD or a control character are counted; the outcomes are those of counting them all."""
    import re

    from mixassets.engine.rules.encoding import _CONTROL_PATTERN, UndecodableRule

    texts = [
        "clean text",
        None,
        "",
        "\ufffd" * 3 + "abc",
        "tab\tand\nnewline",
        "bell\x07 and \x85 \x9f",
        "a\ufffdb\x00",
    ]
    texts += ["x" * 200 + "\ufffd", "\u00e9\ufffd\ufffd", "\x7f"]
    docs = pa.Table.from_pylist(_docs([t or "" for t in texts]).to_pylist(), schema=DOCUMENT_SCHEMA)
    docs = docs.set_column(docs.schema.get_field_index("text"), "text", pa.array(texts, pa.string()))
    expected = []
    for t in texts:
        s, outcomes = t or "", []
        bad, n = s.count("\ufffd"), len(s)
        if n and bad / n > limit:
            reason = f"{bad} of {n} characters are U+FFFD (ratio {bad / n:.4f} > {limit})"
            outcomes.append(Outcome("quarantine", reason, score=bad / n))
        if found := re.findall(_CONTROL_PATTERN, s):
            first = re.search(_CONTROL_PATTERN, s)
            assert first is not None
            reason = f"{len(found)} control characters (first U+{ord(first.group()):04X} at {first.start()})"
            outcomes.append(Outcome("quarantine", reason, span=(first.start(), first.end())))
        expected.append(outcomes)
    ctx = GateContext(spec=_spec(gating={"max_replacement_ratio": limit}))
    assert UndecodableRule().evaluate(docs, ctx) == expected
    assert sum(map(bool, expected)) >= 4
