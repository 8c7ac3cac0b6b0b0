"""Unsafe content: a weighted lexicon always, a local classifier when the source names one.

Both only quarantine: a lexicon hit can be a quotation, a moderation guideline or security documentation,
and a person should decide. Chat documents are judged on their joined message contents.
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

from mixassets.engine import safety
from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule, TextRule, texts


class UnsafeClassifier(Protocol):
    def unsafe_probability(self, texts: list[str]) -> list[float]: ...


def load_classifier(path: str) -> UnsafeClassifier:
    """Indirection so tests can substitute a small fake for the Hugging Face model."""
    return safety.HFTextClassifier(path)


def lexicon_rule_id(category: str) -> str:
    return f"{SafetyLexiconRule.id}.{category}"


class SafetyLexiconRule(TextRule):
    """Lexicon hits per 1,000 words, per category, against ``safety.max_scores``; a category without a
    threshold there is not judged. One outcome per category over its limit, each with its own rule id."""

    id = "safety.lexicon"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        """``check`` on every document, but the lexicon is only run where one pass of RE2 over the whole column
        says it may match: elsewhere the scores are all zero, and so are the outcomes ``check`` would give."""
        nothing = self._outcomes(dict.fromkeys(safety.CATEGORIES, 0.0), ctx)
        all_texts = texts(docs)
        rows = [i for i, possible in enumerate(safety.may_match(docs.column("text"))) if possible]
        out = [list(nothing) for _ in all_texts]
        # Of the texts the lexicon may match, which of its regular expressions may: one RE2 pass each.
        candidates = [all_texts[i] for i in rows]
        for i, text, patterns in zip(
            rows, candidates, safety.possible_patterns(pa.array(candidates, type=pa.large_string())), strict=True
        ):
            out[i] = self._outcomes(safety.lexicon_scores(text, patterns), ctx)
        return out

    def check(self, text: str, ctx: GateContext) -> DocOutcomes:
        return self._outcomes(safety.lexicon_scores(text), ctx)

    @staticmethod
    def _outcomes(scores: dict[str, float], ctx: GateContext) -> DocOutcomes:
        limits = ctx.gating.safety.max_scores
        out: DocOutcomes = []
        for category, score in scores.items():
            if category in limits and score > limits[category]:
                reason = f"{category} {score:.1f} hits per 1k words > {limits[category]}"
                out.append(Outcome("quarantine", reason, rule_id=lexicon_rule_id(category), score=score))
        return out


class SafetyClassifierRule(Rule):
    """The source's moderation model, loaded once per ``gate()`` call (the context's cache lives that long),
    scoring all remaining documents in batches; probability at or above ``classifier_threshold`` quarantines."""

    id = "safety.classifier"
    version = 1

    def idle(self, ctx: GateContext) -> bool:
        return ctx.gating.safety.classifier_path is None

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        cfg = ctx.gating.safety
        if cfg.classifier_path is None or docs.num_rows == 0:
            return [[] for _ in range(docs.num_rows)]
        key = f"{self.id}:{cfg.classifier_path}"
        if key not in ctx.cache:
            try:
                ctx.cache[key] = load_classifier(cfg.classifier_path)
            except (OSError, ValueError) as e:
                raise ValueError(f"source '{ctx.spec.id}': field 'gating.safety.classifier_path': {e}") from e
        classifier: UnsafeClassifier = ctx.cache[key]
        probabilities = classifier.unsafe_probability(texts(docs))
        if len(probabilities) != docs.num_rows:
            raise RuntimeError(f"safety classifier returned {len(probabilities)} scores for {docs.num_rows} texts")
        limit = cfg.classifier_threshold
        return [
            [Outcome("quarantine", f"unsafe probability {p:.3f} >= classifier_threshold {limit}", score=p)]
            if p >= limit
            else []
            for p in probabilities
        ]
