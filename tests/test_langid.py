from __future__ import annotations

import pytest

from mixassets.engine.langid import UNKNOWN, detect_language

SAMPLES = {
    "en": "The committee met on Tuesday evening to discuss the new water supply and the rules for bonfires"
    " on the site.",
    "de": "Der Vorstand traf sich am Dienstagabend, um über die neue Wasserversorgung und die Regeln für Feuer"
    " zu reden.",
    "fr": "Le comité s'est réuni mardi soir pour parler de la nouvelle alimentation en eau et des règles sur les feux.",
    "es": "El comité se reunió el martes por la noche para hablar del nuevo suministro de agua y de las normas"
    " del huerto.",
}


@pytest.mark.parametrize("lang", sorted(SAMPLES))
def test_sentences_are_detected_confidently(lang):
    code, confidence = detect_language(SAMPLES[lang])
    assert code == lang
    assert 0.5 < confidence <= 1.0


def test_short_text_is_not_confident():
    for text in ("hi", "ok", "x = 1"):
        _, confidence = detect_language(text)
        assert 0.0 <= confidence < 0.5, text


def test_text_without_letters_is_undetermined():
    assert detect_language("") == (UNKNOWN, 0.0)
    assert detect_language("  12 345 -- ()") == (UNKNOWN, 0.0)


def test_longer_text_is_more_confident_than_a_fragment():
    _, short = detect_language("Le comité")
    _, long = detect_language(SAMPLES["fr"])
    assert long > short


# Edge cases for the batched walk: empty, no letters, upper case (lowered), CRLF, emoji, combining marks (NFC),
# a lone surrogate (encoded with surrogatepass), lanes cut inside a multi-byte character, and long lines.
EDGE_TEXTS = [
    "",
    "a",
    "  12 345 -- ()",
    "HELLO WORLD, THIS TEXT IS ALL UPPER CASE AND SHOULD BE LOWERED FIRST",
    "Line one.\r\nLine two.\r\n",
    "Emoji 😀🎉 between words 🍎 and more words after them 🏆",
    "Cafe\u0301 au lait, cre\u0300me bru\u0302le\u0301e",
    "lone \ud800 surrogate in text",
    "é" * 300 + " ü" * 200,
    "日本語のテキストと English words mixed 中文 " * 20,
    "x" * 5_000 + " the end of a very long line",
    *SAMPLES.values(),
]


def _reference(text: str) -> tuple[str, float]:
    """py3langid's own per-document classify, as ``detect_language`` calls it."""
    from mixassets.engine.langid import _get

    if not any(ch.isalpha() for ch in text):
        return UNKNOWN, 0.0
    lang, conf = _get().classify(text)
    return str(lang), min(1.0, max(0.0, float(conf)))


def test_batched_detection_is_the_per_document_detection():
    import random

    from mixassets.engine import langid

    rng = random.Random(0)
    words = [
        "the",
        "committee",
        "met",
        "on",
        "tuesday",
        "der",
        "vorstand",
        "traf",
        "sich",
        "le",
        "comité",
        "réuni",
        "mardi",
        "😀",
        "☃",
        "12",
        "δ",
        "ж",
        "中",
    ]
    generated = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 400))) for _ in range(200)]
    texts = EDGE_TEXTS + generated
    assert langid.detect_languages(texts) == [_reference(t) for t in texts]
    assert [detect_language(t) for t in texts] == [_reference(t) for t in texts]


def test_batched_detection_with_small_walks(monkeypatch):
    from mixassets.engine import langid

    monkeypatch.setattr(langid, "_WALK_BYTES", 300)
    assert langid.detect_languages(EDGE_TEXTS) == [_reference(t) for t in EDGE_TEXTS]
    assert langid.detect_languages([]) == []


def test_segments_warm_up_longer_than_the_automaton_is_deep():
    from mixassets.engine import langid

    assert langid._get_walk().depth() <= langid.WARM_BYTES


def test_compiled_walk_is_the_python_walk():
    """The compiled loop and the same function run as plain Python count the same features in the same order."""
    import numpy as np

    from mixassets.engine import langid

    walk = langid._get_walk()
    encoded = [langid._get()._encode(t) for t in [*EDGE_TEXTS, "the committee met on tuesday " * 20, "ж中😀"]]
    ends = np.cumsum([len(e) for e in encoded]).astype(np.int64)
    buf = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    args = (buf, ends, walk.moves, walk.root, walk.features, 3)
    compiled, plain = walk.count(*args), langid._walk_source(*args)
    assert compiled[2].tolist() == plain[2].tolist() and compiled[2].sum() > 0
    total = int(plain[2].sum())
    for got, want in zip(compiled[:2], plain[:2], strict=True):
        assert got[:total].tolist() == want[:total].tolist()
