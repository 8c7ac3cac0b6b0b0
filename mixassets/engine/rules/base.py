"""What a gating rule is, what it may say, and the few text helpers several rules share.

A rule only says what it saw (an action and a reason per document, with a span when it points at text);
it never removes, counts or logs anything. Keeping that in the runner means a document is dropped once,
counted once and logged once however many rules would have objected, and a rule's version in the decision
log tells a later reader which logic produced a decision.
"""

from __future__ import annotations

import re
import string
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, ClassVar, Literal

import pyarrow as pa

from mixassets.engine import chat
from mixtrain.config.data import GatingConfig, SourceSpec

Action = Literal["reject", "quarantine", "redact", "strip", "flag"]
BLOCKING_ACTIONS = frozenset({"reject", "quarantine"})

# Which documents a rule is meant for: every source, or only sources judged by the prose / code rule set.
Scope = Literal["any", "prose", "code"]


@dataclass(frozen=True)
class Outcome:
    action: Action
    reason: str
    span: tuple[int, int] | None = None  # character offsets into the text the rule was shown
    replacement: str | None = None  # for redact: what replaces the span
    rule_id: str | None = None  # a finer id inside the rule's family (e.g. "pii.email"); default: the rule's id
    score: float | None = None  # the measure a threshold rule compared (a ratio, a length, a probability)


@dataclass(frozen=True)
class GateContext:
    """What every rule may read during one ``gate()`` call.

    ``cache`` lives exactly as long as the call, so an expensive resource (a classifier) is loaded once per
    call and never leaks between sources with different settings; a streaming run keeps one context for all
    its batches, so what a rule keeps there (the exact-duplicate seen-set) carries from batch to batch.
    ``observations`` carries per-document facts a rule measured but that are not decisions (e.g. the detected
    language) to the runner's metrics. ``prepared`` holds, by rule id, what ``Rule.prepare`` computed over the
    whole source before any batch was gated; a rule without an entry computes it from the table it is shown.
    """

    spec: SourceSpec
    forbidden_tags: frozenset[str] = frozenset()
    cache: dict[str, Any] = field(default_factory=dict)
    observations: dict[str, dict[str, str]] = field(default_factory=dict)
    prepared: dict[str, Any] = field(default_factory=dict)

    @property
    def gating(self) -> GatingConfig:
        return self.spec.gating

    def observe(self, kind: str, doc_id: str, value: str) -> None:
        self.observations.setdefault(kind, {})[doc_id] = value


DocOutcomes = list[Outcome]


class Rule(ABC):
    id: ClassVar[str]
    version: ClassVar[int]
    scope: ClassVar[Scope] = "any"
    # True when judging one document needs documents that come *after* it (boilerplate counts lines over the
    # whole source). A runner that sees the source in batches must then call ``prepare`` over all of it first.
    # Rules that only look back (exact duplicates) keep their state in ``ctx.cache`` and need no prepare pass.
    needs_prepare: ClassVar[bool] = False
    # True when a document's outcomes depend on that document alone: no state kept between documents or calls,
    # no observation, nothing measured over the table. The runner may then show the rule rows an earlier rule
    # has held (and drop their outcomes) instead of building a table without them, which copies every text.
    per_document: ClassVar[bool] = False

    def idle(self, ctx: GateContext) -> bool:
        """True when the configuration leaves the rule nothing to judge (every outcome would be empty): the runner
        then skips it, rather than building it a table of the documents standing, which copies their texts."""
        return False

    def prepare(self, batches: Iterable[pa.Table], ctx: GateContext) -> Any:
        """Whole-source state, from every batch as this rule would be shown it (earlier rules applied); the
        runner stores it in ``ctx.prepared[self.id]``. Only called when ``needs_prepare`` is true."""
        return None

    @abstractmethod
    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        """One list of outcomes per row of ``docs`` (empty when the rule has nothing to say)."""


class TextRule(Rule):
    """A rule that judges each document's text on its own.

    Chat documents are judged on their ``text``, which is the message contents joined by blank lines; a rule
    whose measure is about page layout (lines, paragraphs) sets ``skip_chat`` because there a "line" is a
    conversational turn and repeats like "ok" are normal.
    """

    skip_chat: ClassVar[bool] = False

    def enabled(self, ctx: GateContext) -> bool:
        """False when the configuration switches the rule off, so no document is even looked at."""
        return True

    @abstractmethod
    def check(self, text: str, ctx: GateContext) -> DocOutcomes:
        """Outcomes for one document's text."""

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        if not self.enabled(ctx):
            return [[] for _ in range(docs.num_rows)]
        kinds = docs.column("kind").to_pylist()
        return [
            [] if self.skip_chat and kind == "chat" else self.check(text, ctx)
            for kind, text in zip(kinds, texts(docs), strict=True)
        ]


class _LastColumn(threading.local):
    """The Python values of the last column converted on this thread, with the column itself held so that its
    buffers (whose addresses are the key) cannot be freed and reused while the entry stands."""

    column: pa.ChunkedArray | None = None
    key: tuple[Any, ...] = ()
    values: list[str] = []


_last_text = _LastColumn()


def _column_key(column: pa.ChunkedArray) -> tuple[Any, ...]:
    return tuple(
        (chunk.offset, len(chunk), *(0 if b is None else b.address for b in chunk.buffers())) for chunk in column.chunks
    )


def texts(docs: pa.Table) -> list[str]:
    """The texts of ``docs`` as Python strings, None as "". The rules run one after another on the same table
    until a document is held, so the conversion of the last text column is kept and reused (a copy of the list
    is returned, so a caller may change its own)."""
    column = docs.column("text")
    key = _column_key(column)
    if _last_text.column is None or _last_text.key != key:
        _keep_texts(docs, [t or "" for t in column.to_pylist()])
    return list(_last_text.values)


def remember_texts(docs: pa.Table, values: list[str]) -> None:
    """Make ``values`` what :func:`texts` gives for ``docs`` without converting its column: for a caller that
    built ``docs`` from rows whose texts it holds in Python already (the runner, once per table it shows the
    rules). ``values`` must be exactly what the conversion would give (None as "")."""
    _keep_texts(docs, values)


def _keep_texts(docs: pa.Table, values: list[str]) -> None:
    column = docs.column("text")
    _last_text.column, _last_text.key = None, ()
    for hook in TEXT_HOOKS:
        hook(docs, values)
    _last_text.values = values
    _last_text.column, _last_text.key = column, _column_key(column)


# Called as ``hook(docs, values)`` each time :func:`texts` converts a new column, before the values are kept. A
# hook that holds texts of the table converted before may swap an element of ``values`` for an equal ``str`` it
# holds and must let go of the texts not in ``values``: then it never keeps a second copy of a text alive.
TEXT_HOOKS: list[Callable[[pa.Table, list[str]], None]] = []


def chat_contents(messages: str | None) -> list[str] | None:
    """The text segments of a chat document's ``messages`` JSON (contents and tool calls, see :mod:`chat`);
    None when it is not the expected shape."""
    conversation = chat.parse_stored(messages)
    return None if conversation is None else conversation.segments()


# Typographic quotes, guillemets, ellipsis, en/em dash, inverted marks.
_PUNCT = string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb\u2026\u2013\u2014\u00a1\u00bf"
_PARAGRAPH_RE = re.compile(r"\n[ \t\r\f\v]*\n")


def nonblank_lines(text: str) -> list[str]:
    """Lines with surrounding whitespace removed, blank ones dropped: layout measures count content lines."""
    return list(filter(None, map(str.strip, text.splitlines())))  # C loops: the same as a comprehension


def paragraphs(text: str) -> list[str]:
    return [s for p in _PARAGRAPH_RE.split(text) if (s := p.strip())]


def words(text: str) -> list[str]:
    """Whitespace tokens with leading/trailing punctuation removed; pure-punctuation tokens are not words."""
    return list(filter(None, map(str.strip, (tokens := text.split()), repeat(_PUNCT, len(tokens)))))


def ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def quarantine_if(exceeded: bool, reason: str, score: float | None = None) -> DocOutcomes:
    """The outcome of a threshold rule: quarantine with ``reason`` when the measure ``exceeded`` its bound; ``score``
    is that measure, logged as a number so a threshold can be re-tuned from the decision log without re-gating."""
    return [Outcome("quarantine", reason, score=score)] if exceeded else []
