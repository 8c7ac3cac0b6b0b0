"""Document length. These run after boilerplate stripping, so a page that was only header and footer is judged
by what is left of it."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule, texts
from mixassets.engine.rules.text_stats import word_stats


class EmptyRule(Rule):
    """Nothing to learn from; rejected rather than reviewed."""

    id = "quality.empty"
    version = 1
    per_document = True

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        # ``t.strip()`` is empty exactly when ``t`` is empty or all whitespace (both ask ``Py_UNICODE_ISSPACE``),
        # and ``isspace`` stops at the first other character instead of copying the text.
        return [
            [] if t and not t.isspace() else [Outcome("reject", "no text after stripping whitespace")]
            for t in texts(docs)
        ]


class TooShortRule(Rule):
    """A handful of words carries no context for a model and is mostly stray fragments of a page."""

    id = "quality.too_short"
    version = 1
    per_document = True

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        minimum = ctx.gating.min_words
        out: list[DocOutcomes] = []
        # ``tokens`` is len(text.split()); the counts are kept for the word rules that follow (text_stats).
        for n in (s.tokens for s in word_stats(docs, ctx)):
            out.append([Outcome("reject", f"{n} words < min_words {minimum}", score=n)] if n < minimum else [])
        return out


class TooLongRule(Rule):
    """Long documents go to review rather than being cut: a truncated file is a different, unreviewed text."""

    id = "quality.too_long"
    version = 1
    per_document = True

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        limit = ctx.gating.max_chars
        lengths = pc.fill_null(pc.utf8_length(docs.column("text")), 0).to_pylist()
        return [
            [Outcome("quarantine", f"{n} characters > max_chars {limit}", score=n)] if n > limit else []
            for n in lengths
        ]
