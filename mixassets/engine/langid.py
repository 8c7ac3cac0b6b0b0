"""Language identification for the gate's language-mismatch rule.

py3langid is used because its naive-Bayes model (97 languages) ships inside the wheel: the gate must run offline
and give the same answer on every machine, which rules out detectors that fetch a model on first use.

Confidence is py3langid's normalised probability: it softmaxes the naive-Bayes scores at a temperature of
sqrt(text bytes), so a few words spread the probability mass and a paragraph concentrates it. The rule can therefore
treat a low confidence as "unknown" rather than as a mismatch, which is what short or mixed text deserves.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

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
