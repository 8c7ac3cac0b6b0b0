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
