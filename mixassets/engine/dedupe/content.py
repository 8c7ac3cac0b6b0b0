"""What dedupe compares of a document: its content, not the instruction template its source wraps it in.

Why: a chat record's ``text`` joins every message, the system prompt included, and instruction datasets wrap
each example in one fixed prompt. For short examples that shared wrapping is most of the shingles, so two
different examples reach a Jaccard of 0.85 and one is dropped as the other's duplicate. So for each source
*kind* the config names the parts that are deduped (:attr:`DedupeConfig.content_fields`): by default a chat
record's user, assistant and tool message contents and its tool calls (name and arguments), never the system
prompt. A template inside a selected message (``"Describe this function: ```{code}```"``) cannot be told
apart from content by looking at one record, so it is found from the source: a line (whitespace runs
collapsed) of the selected parts that recurs in at least ``template_min_share`` of a source's chat records,
and in at least ``template_min_records`` of them, is that source's template and is left out of what is
compared. A line is the unit because templates are written as lines around a slot; a content line common
enough to pass both bars (a ``return self`` in half of a source's examples) carries no identity either.

The view depends only on the record and its own source's records, so an unchanged source has an unchanged
view, and a row's content hash (over its view) changes whenever its view does: sketches and verified pairs
stay valid exactly when their views are. Text documents are compared whole. A chat row whose messages do not
parse is compared on its ``text``, as before this view existed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pyarrow as pa

from mixassets.engine.chat import CHAT_JOINER, Chat, call_text, parse_stored
from mixassets.engine.text_norm import stable_hash64

# Line hashes buffered per source before they are merged into its sorted counts.
_MERGE_EVERY = 1 << 20
TOOL_CALLS = "tool_calls"
WHOLE_TEXT = "text"
VIEW_COLUMNS = ("text", "kind", "messages", "source_id")


def _line_key(line: str) -> str:
    return " ".join(line.split())


def _line_hash(line: str) -> int:
    return stable_hash64(_line_key(line))


def chat_segments(chat: Chat, fields: Iterable[str]) -> list[str]:
    """The parts of ``chat`` named by ``fields``, in message order: a role's message contents, and with
    :data:`TOOL_CALLS` each tool call's canonical JSON (name and arguments)."""
    wanted = set(fields)
    out: list[str] = []
    for m in chat.messages:
        if m["role"] in wanted and m["content"]:
            out.append(m["content"])
        if TOOL_CALLS in wanted:
            out.extend(call_text(c) for c in m.get("tool_calls", ()))
    return out


@dataclass(frozen=True)
class ContentView:
    """The fields compared per kind and the template lines found per source (hashes of whitespace-collapsed
    lines); :meth:`texts` turns rows into what dedupe shingles."""

    fields: Mapping[str, tuple[str, ...]]
    templates: Mapping[str, frozenset[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType({k: tuple(v) for k, v in self.fields.items()}))
        object.__setattr__(self, "templates", MappingProxyType({k: frozenset(v) for k, v in self.templates.items()}))

    def segments(self, text: str | None, kind: str | None, messages: str | None) -> list[str] | None:
        """The selected parts of one row before template lines are removed; None: compare ``text`` whole."""
        fields = self.fields.get(kind or "", (WHOLE_TEXT,))
        if WHOLE_TEXT in fields or kind != "chat":
            return None
        chat = parse_stored(messages)
        return None if chat is None else chat_segments(chat, fields)

    def text(self, text: str | None, kind: str | None, messages: str | None, source_id: str) -> str | None:
        """What dedupe compares of one row."""
        segments = self.segments(text, kind, messages)
        if segments is None:
            return text
        template = self.templates.get(source_id)
        if template:
            segments = ["\n".join(ln for ln in s.split("\n") if _line_hash(ln) not in template) for s in segments]
        return CHAT_JOINER.join(s for s in segments if s)

    def texts(self, batch: pa.Table | pa.RecordBatch) -> pa.Array:
        """:meth:`text` of every row of ``batch`` (which has the :data:`VIEW_COLUMNS` it can); a batch without
        chat rows is returned as its ``text`` column, uncopied."""
        text = batch.column("text")
        if "kind" not in batch.schema.names or "messages" not in batch.schema.names:
            return text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
        kinds = batch.column("kind").to_pylist()
        if "chat" not in kinds:
            return text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
        messages, sources = batch.column("messages").to_pylist(), batch.column("source_id").to_pylist()
        rows = zip(text.to_pylist(), kinds, messages, sources, strict=True)
        return pa.array([self.text(t, k, m, s) for t, k, m, s in rows], pa.string())


class _LineCounts:
    """How many records hold each line hash, in memory that grows with the distinct lines (12 bytes each), not
    with the records: hashes are buffered in one flat array and merged in bulk into sorted keys with counts."""

    def __init__(self) -> None:
        self._keys = np.empty(0, dtype=np.uint64)
        self._counts = np.empty(0, dtype=np.uint32)
        self._pending: list[np.ndarray] = []
        self._buffered = 0

    def add_record(self, hashes: list[int]) -> None:
        """One record's line hashes (repeats count once)."""
        if hashes:
            self._pending.append(np.unique(np.asarray(hashes, dtype=np.uint64)))
            self._buffered += len(self._pending[-1])
            if self._buffered >= _MERGE_EVERY:
                self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys, *self._pending])
        weights = np.concatenate([self._counts, np.ones(self._buffered, dtype=np.uint32)])
        self._keys, inverse = np.unique(keys, return_inverse=True)
        self._counts = np.bincount(inverse, weights=weights, minlength=len(self._keys)).astype(np.uint32)
        self._pending, self._buffered = [], 0

    def at_least(self, bar: float) -> frozenset[int]:
        self._merge()
        return frozenset(self._keys[self._counts >= bar].tolist())


def chat_line_hashes(batch: pa.Table | pa.RecordBatch, view: ContentView) -> Iterator[tuple[str, list[int]]]:
    """``(source_id, line hashes)`` of each chat row of ``batch`` that the view compares by parts (non-blank
    lines of the selected parts, in order, repeats included): what template counting reads of a record."""
    if "kind" not in batch.schema.names or "messages" not in batch.schema.names:
        return
    kinds = batch.column("kind").to_pylist()
    if "chat" not in kinds:
        return
    texts, messages = batch.column("text").to_pylist(), batch.column("messages").to_pylist()
    for text, kind, message, source in zip(texts, kinds, messages, batch.column("source_id").to_pylist(), strict=True):
        segments = view.segments(text, kind, message)
        if segments is not None:
            yield source, [_line_hash(ln) for s in segments for ln in s.split("\n") if _line_key(ln)]


def find_templates(
    batches: Iterable[pa.Table | pa.RecordBatch],
    fields: Mapping[str, tuple[str, ...]],
    min_share: float,
    min_records: int,
) -> dict[str, frozenset[int]]:
    """Each source's template lines among its chat rows (see the module docstring), from batches with the
    :data:`VIEW_COLUMNS`. Memory: the distinct line hashes of each source with their counts (12 bytes a line),
    never the texts; a line counts once per record."""
    plain = ContentView(fields)
    counts: dict[str, _LineCounts] = {}
    records: dict[str, int] = {}
    for batch in batches:
        for source, lines in chat_line_hashes(batch, plain):
            records[source] = records.get(source, 0) + 1
            counts.setdefault(source, _LineCounts()).add_record(lines)
    out = {s: counts[s].at_least(max(min_records, min_share * n)) for s, n in records.items()}
    return {s: t for s, t in out.items() if t}
