"""Exact duplicates inside one source (cross-source and near duplicates are the dedupe stage's job)."""

from __future__ import annotations

import unicodedata

import pyarrow as pa

from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule, texts
from mixassets.engine.text_norm import text_key

# ``ctx.cache`` key of the seen-map: it lives as long as the context, so a streaming run that keeps one
# context for all its batches finds a duplicate of a document gated batches earlier.
SEEN_CACHE_KEY = "dedupe.exact_in_source:seen"


def normalize_for_dedupe(text: str) -> str:
    """Case, Unicode compatibility forms and whitespace runs do not make two documents different."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def dedupe_key(source_id: str, text: str) -> bytes:
    """16 bytes per document instead of its text: a collision needs ~2**64 documents in one source."""
    return text_key(f"{source_id}\x00{normalize_for_dedupe(text)}")


class ExactDedupeRule(Rule):
    """A repeated document only over-weights itself; the first one (in source order) is kept and named.

    Only documents before a duplicate decide about it, so the rule needs no pass over the whole source: the
    seen-map (normalized-text hash -> kept doc id) in ``ctx.cache`` is all it carries between batches.
    """

    id = "dedupe.exact_in_source"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        first_seen: dict[bytes, str] = ctx.cache.setdefault(SEEN_CACHE_KEY, {})
        out: list[DocOutcomes] = []
        rows = zip(docs.column("doc_id").to_pylist(), docs.column("source_id").to_pylist(), texts(docs), strict=True)
        for doc_id, source_id, text in rows:
            kept = first_seen.setdefault(dedupe_key(source_id, text), doc_id)
            out.append([] if kept == doc_id else [Outcome("reject", f"same normalized text as kept doc {kept}")])
        return out
