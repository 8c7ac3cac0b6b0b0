"""Prose quality heuristics after Gopher (Rae et al. 2021, appendix A) and C4 (Raffel et al. 2020).

Each measure is cheap and explainable; none of them proves a page is bad, so a hit quarantines the document
for review. Only placeholder text ("lorem ipsum") is certain junk and is rejected. Every threshold comes from
``gating.quality`` so a source can loosen a rule that misfires on it instead of disabling gating wholesale.

Skipped for chat (``skip_chat``): bullet lines, ellipsis lines, duplicate lines and paragraphs, terminal
punctuation and curly braces. In a conversation a "line" is a turn, short repeated turns ("ok", "thanks")
are normal, and assistants answer with code; those measures describe web-page layout, not dialogue.
"""

from __future__ import annotations

import re
from abc import abstractmethod

import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.rules.base import (
    DocOutcomes,
    GateContext,
    Outcome,
    TextRule,
    nonblank_lines,
    paragraphs,
    quarantine_if,
    ratio,
    texts,
)
from mixassets.engine.rules.base import words as split_words
from mixassets.engine.rules.text_stats import LineStats, TopNgram, line_stats, top_ngram_verdict, word_stats
from mixassets.engine.text_words import braces_and_chars

# Bullet glyphs (\u2022 \u25cf \u25cb \u25e6 \u25aa \u2023 \u2043 \u2219 \u00b7), ASCII list markers, en/em dash.
_BULLETS = tuple("\u2022\u25cf\u25cb\u25e6\u25aa\u2023\u2043\u2219\u00b7-*+\u2013\u2014")
_ELLIPSES = ("...", "…")
_TERMINAL = (".", "!", "?", '"', "'", "\u201d", "\u2019", "\u00bb", "\u2026", ")")
_LOREM_RE = re.compile(r"lorem\s+ipsum", re.IGNORECASE)


class ProseRule(TextRule):
    """Judges natural-language text; code sources get ``quality_code`` instead."""

    scope = "prose"
    per_document = True  # every measure is of one text; the shared counts are cached per text


class LoremIpsumRule(ProseRule):
    """C4 drops any page with placeholder text: it is a template that was never filled in."""

    id = "quality.lorem_ipsum"
    version = 1

    def enabled(self, ctx: GateContext) -> bool:
        return ctx.gating.quality.reject_lorem_ipsum

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        if not self.enabled(ctx):
            return [[] for _ in range(docs.num_rows)]
        # Only texts holding "lorem" in some case are searched: RE2 over the whole column finds them. Its case
        # folding agrees with Python's on these five letters (none of them has a special case partner, as the
        # i of "ipsum" has in Python's), so no text the rule's pattern matches is left out.
        maybe = pc.fill_null(pc.match_substring(docs.column("text"), "lorem", ignore_case=True), False)
        found = maybe.to_pylist()
        if not any(found):
            return [[] for _ in range(docs.num_rows)]
        return [self.check(t, ctx) if f else [] for t, f in zip(texts(docs), found, strict=True)]

    def check(self, text: str, ctx: GateContext) -> DocOutcomes:
        m = _LOREM_RE.search(text)
        return [Outcome("reject", f"placeholder text 'lorem ipsum' at {m.start()}", (m.start(), m.end()))] if m else []


class MeanWordLengthRule(ProseRule):
    """Very short mean words are token soup or tables of numbers; very long ones are URLs, hashes, base64."""

    id = "quality.mean_word_length"
    version = 1

    def check(self, text: str, ctx: GateContext) -> DocOutcomes:
        ws = split_words(text)
        return self._judge(len(ws), sum(map(len, ws)), ctx)

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        return [self._judge(s.words, s.chars, ctx) for s in word_stats(docs, ctx)]

    @staticmethod
    def _judge(n_words: int, chars: int, ctx: GateContext) -> DocOutcomes:
        q = ctx.gating.quality
        if not n_words:
            return []
        mean = chars / n_words
        if mean < q.min_mean_word_length:
            return [Outcome("quarantine", f"mean word length {mean:.2f} < {q.min_mean_word_length}", score=mean)]
        if mean > q.max_mean_word_length:
            return [Outcome("quarantine", f"mean word length {mean:.2f} > {q.max_mean_word_length}", score=mean)]
        return []


class SymbolWordRatioRule(ProseRule):
    """Hash signs and ellipses per word: hashtag spam and truncated teaser lists."""

    id = "quality.symbol_word_ratio"
    version = 1

    def check(self, text: str, ctx: GateContext) -> DocOutcomes:
        return self._judge(text, len(text.split()), ctx)

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        return [self._judge(t, s.tokens, ctx) for t, s in zip(texts(docs), word_stats(docs, ctx), strict=True)]

    @staticmethod
    def _judge(text: str, n_words: int, ctx: GateContext) -> DocOutcomes:
        limit = ctx.gating.quality.max_symbol_word_ratio
        symbols = text.count("#") + text.count("...") + text.count("…")
        value = ratio(symbols, n_words)
        return quarantine_if(
            bool(n_words) and value > limit, f"symbol-to-word ratio {value:.3f} ({symbols}/{n_words}) > {limit}", value
        )


class _LineShareRule(ProseRule):
    """Share of non-blank lines that match ``line_matches``, compared with a maximum from the config."""

    skip_chat = True
    label: str

    @abstractmethod
    def limit(self, ctx: GateContext) -> float:
        """The configured maximum share."""

    @abstractmethod
    def line_matches(self, line: str) -> bool:
        """Whether one stripped, non-blank line counts towards the share."""

    stat: str  # the field of ``LineStats`` that counts the matching lines

    def check(self, text: str, ctx: GateContext) -> DocOutcomes:
        lines = nonblank_lines(text)
        return self._judge(sum(1 for line in lines if self.line_matches(line)), len(lines), ctx)

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        kinds = docs.column("kind").to_pylist()
        stats = shared_line_stats(docs)
        return [
            [] if kind == "chat" else self._judge(getattr(s, self.stat), s.lines, ctx)
            for kind, s in zip(kinds, stats, strict=True)
        ]

    def _judge(self, hits: int, n_lines: int, ctx: GateContext) -> DocOutcomes:
        value = ratio(hits, n_lines)
        limit = self.limit(ctx)
        return quarantine_if(value > limit, f"{self.label} ratio {value:.2f} ({hits}/{n_lines} lines) > {limit}", value)


class BulletLinesRule(_LineShareRule):
    """A page that is almost all bullets is a navigation menu or a link list, not prose."""

    id = "quality.bullet_lines"
    version = 1
    label = "bullet-line"
    stat = "bullets"

    def limit(self, ctx: GateContext) -> float:
        return ctx.gating.quality.max_bullet_line_ratio

    def line_matches(self, line: str) -> bool:
        return line.startswith(_BULLETS)


class EllipsisLinesRule(_LineShareRule):
    """Many lines ending in an ellipsis are truncated previews (search results, feeds), not the text itself."""

    id = "quality.ellipsis_lines"
    version = 1
    label = "ellipsis-line"
    stat = "ellipses"

    def limit(self, ctx: GateContext) -> float:
        return ctx.gating.quality.max_ellipsis_line_ratio

    def line_matches(self, line: str) -> bool:
        return line.endswith(_ELLIPSES)


class _RepeatShareRule(ProseRule):
    """Share of ``units`` (lines, paragraphs) that repeat an earlier one, compared with a maximum from the config."""

    skip_chat = True
    label: str

    @abstractmethod
    def limit(self, ctx: GateContext) -> float:
        """The configured maximum share."""

    @abstractmethod
    def units(self, text: str) -> list[str]:
        """The pieces of ``text`` compared with each other."""

    def check(self, text: str, ctx: GateContext) -> DocOutcomes:
        units = self.units(text)
        return self._judge(len(units) - len(set(units)), len(units), ctx)

    def _judge(self, repeats: int, n_units: int, ctx: GateContext) -> DocOutcomes:
        limit = self.limit(ctx)
        value = ratio(repeats, n_units)
        reason = f"duplicate {self.label} fraction {value:.2f} ({repeats}/{n_units}) > {limit}"
        return quarantine_if(value > limit, reason, value)


class DuplicateLinesRule(_RepeatShareRule):
    """Repeated lines inside one page are templated listings or scraping loops, and teach repetition."""

    id = "quality.duplicate_lines"
    version = 1
    label = "line"

    def limit(self, ctx: GateContext) -> float:
        return ctx.gating.quality.max_duplicate_line_fraction

    def units(self, text: str) -> list[str]:
        return nonblank_lines(text)

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        kinds = docs.column("kind").to_pylist()
        stats = shared_line_stats(docs)
        return [
            [] if kind == "chat" else self._judge(s.repeats, s.lines, ctx) for kind, s in zip(kinds, stats, strict=True)
        ]


class DuplicateParagraphsRule(_RepeatShareRule):
    """The paragraph-level version of duplicate lines: whole blocks pasted twice."""

    id = "quality.duplicate_paragraphs"
    version = 1
    label = "paragraph"

    def limit(self, ctx: GateContext) -> float:
        return ctx.gating.quality.max_duplicate_paragraph_fraction

    def units(self, text: str) -> list[str]:
        return paragraphs(text)


class TopNgramRule(ProseRule):
    """Characters covered by the most frequent word n-gram: a phrase stamped all over the page (keyword
    stuffing, "click here to ..."). Only an n-gram that occurs more than once counts. The score is the share of
    characters the n-gram that fired covers (the number compared with that n's limit)."""

    id = "quality.top_ngram"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        return [_outcome(s.top_ngram) for s in word_stats(docs, ctx)]

    def check(self, text: str, ctx: GateContext) -> DocOutcomes:
        ws = list(map(str.lower, split_words(text)))
        return _outcome(top_ngram_verdict(ws, ctx.gating.quality.max_top_ngram_char_fraction))


def _outcome(verdict: TopNgram | None) -> DocOutcomes:
    return [] if verdict is None else [Outcome("quarantine", verdict.reason, score=verdict.score)]


class TerminalPunctuationRule(ProseRule):
    """C4 keeps only lines that end like sentences; as a share it separates prose from menus and lists."""

    id = "quality.terminal_punctuation"
    version = 1
    skip_chat = True

    def enabled(self, ctx: GateContext) -> bool:
        return ctx.gating.quality.min_terminal_punctuation_ratio > 0

    def check(self, text: str, ctx: GateContext) -> DocOutcomes:
        lines = nonblank_lines(text)
        return self._judge(sum(1 for line in lines if line.endswith(_TERMINAL)), len(lines), ctx)

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        if not self.enabled(ctx):
            return [[] for _ in range(docs.num_rows)]
        kinds = docs.column("kind").to_pylist()
        stats = shared_line_stats(docs)
        return [
            [] if kind == "chat" else self._judge(s.terminal, s.lines, ctx)
            for kind, s in zip(kinds, stats, strict=True)
        ]

    @staticmethod
    def _judge(ended: int, n_lines: int, ctx: GateContext) -> DocOutcomes:
        minimum = ctx.gating.quality.min_terminal_punctuation_ratio
        if not n_lines:
            return []
        value = ended / n_lines
        reason = f"terminal punctuation ratio {value:.2f} ({ended}/{n_lines} lines) < {minimum}"
        return quarantine_if(value < minimum, reason, value)


class CurlyBraceRule(ProseRule):
    """C4 drops pages with '{': in a prose source, braces mean code or template debris leaked into the text."""

    id = "quality.curly_braces"
    version = 1
    skip_chat = True

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        """``check`` on every prose document, with the braces and characters counted by a compiled pass over the
        column's bytes (a null text counts as "")."""
        if not self.enabled(ctx):
            return [[] for _ in range(docs.num_rows)]
        column = pc.fill_null(docs.column("text"), "").combine_chunks()
        rows = zip(docs.column("kind").to_pylist(), braces_and_chars(column), strict=True)
        return [[] if kind == "chat" else self._judge(b, n, ctx) for kind, (b, n) in rows]

    def check(self, text: str, ctx: GateContext) -> DocOutcomes:
        return self._judge(text.count("{") + text.count("}"), len(text), ctx)

    @staticmethod
    def _judge(braces: int, chars: int, ctx: GateContext) -> DocOutcomes:
        limit = ctx.gating.quality.max_curly_brace_ratio
        value = ratio(braces, chars)
        return quarantine_if(value > limit, f"curly-brace ratio {value:.4f} ({braces}/{chars} chars) > {limit}", value)


def shared_line_stats(docs: pa.Table) -> list[LineStats]:
    """The non-blank line counts the layout rules judge, computed once per document for all of them."""
    return line_stats(docs, _BULLETS, _ELLIPSES, _TERMINAL)


PROSE_RULES = (
    LoremIpsumRule(),
    MeanWordLengthRule(),
    SymbolWordRatioRule(),
    BulletLinesRule(),
    EllipsisLinesRule(),
    DuplicateLinesRule(),
    DuplicateParagraphsRule(),
    TopNgramRule(),
    TerminalPunctuationRule(),
    CurlyBraceRule(),
)
