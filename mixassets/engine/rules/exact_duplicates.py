"""Exact duplicates inside one source (cross-source and near duplicates are the dedupe stage's job)."""

from __future__ import annotations

import hashlib
import unicodedata

import pyarrow as pa

from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule, texts


def normalize_for_dedupe(text: str) -> str:
    """Case, Unicode compatibility forms and whitespace runs do not make two documents different."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


class ExactDedupeRule(Rule):
    """A repeated document only over-weights itself; the first one (in source order) is kept and named."""

    id = "dedupe.exact_in_source"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        first_seen: dict[tuple[str, bytes], str] = {}
        out: list[DocOutcomes] = []
        rows = zip(docs.column("doc_id").to_pylist(), docs.column("source_id").to_pylist(), texts(docs), strict=True)
        for doc_id, source_id, text in rows:
            key = (source_id, hashlib.sha256(normalize_for_dedupe(text).encode()).digest())
            kept = first_seen.setdefault(key, doc_id)
            out.append([] if kept == doc_id else [Outcome("reject", f"same normalized text as kept doc {kept}")])
        return out
