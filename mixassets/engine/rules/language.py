"""Language: a document in a language the source did not declare is mislabelled or scraped from elsewhere."""

from __future__ import annotations

import pyarrow as pa

from mixassets.engine.langid import detect_languages
from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule, texts
from mixtrain.config.data import SourceSpec

# What the runner's ``lang.<code>`` metric counts when the detector was not sure.
UNDETERMINED = "und"
OBSERVATION = "language"


def expected_languages(spec: SourceSpec) -> list[str]:
    return list(spec.gating.language.expected or [spec.language])


class LanguageMismatchRule(Rule):
    """Only a confident mismatch quarantines: short or mixed text gets a low confidence from the detector and
    counts as undetermined, because calling it a mismatch would punish code-switching and short replies.
    Skipped for code sources (identifiers are not a language). Chat is judged on its joined message contents.

    Every detected language is recorded as an observation so the runner can report the language mix of the
    accepted documents; documents too short to check are left out and counted under their declared language.
    """

    id = "language.mismatch"
    version = 1
    scope = "prose"

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        cfg = ctx.gating.language
        expected = expected_languages(ctx.spec)
        doc_ids = docs.column("doc_id").to_pylist()
        all_texts = texts(docs)
        checked = [i for i, text in enumerate(all_texts) if len(text.strip()) >= cfg.min_chars]
        detected = dict(zip(checked, detect_languages([all_texts[i] for i in checked]), strict=True))
        out: list[DocOutcomes] = []
        for i, doc_id in enumerate(doc_ids):
            if i not in detected:
                out.append([])
                continue
            code, confidence = detected[i]
            if confidence < cfg.min_confidence:
                ctx.observe(OBSERVATION, doc_id, UNDETERMINED)
                out.append([])
                continue
            ctx.observe(OBSERVATION, doc_id, code)
            if code in expected:
                out.append([])
            else:
                reason = f"language {code} ({confidence:.2f}) not in {expected} (min_confidence {cfg.min_confidence})"
                out.append([Outcome("quarantine", reason, score=confidence)])
        return out
