"""Boilerplate: lines that many documents of one source share (headers, navigation, footers, license banners).

They are stripped rather than used to hold a document: the rest of the page is usually fine, and leaving the
banner in would make it one of the most repeated strings in the corpus. The rule sees the documents still
standing when it runs (one source per ``gate()`` call), so "share of the source's documents" is the share
of those. Stripped spans are whole lines including their line break, as offsets into the original text, so
``text[start:end]`` is exactly what was removed. Chat documents are left alone: a repeated message ("Hello!
How can I help?") is part of the conversation, and stripping it would change what a turn means.

The runner applies the strips before the rules that follow, so the length rules judge the stripped text:
a page that was nothing but header and footer ends up empty or too short and is rejected there.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule, texts
from mixassets.engine.rules.exact_duplicates import normalize_for_dedupe


def line_key(line: str) -> str:
    """Whitespace runs and surrounding spaces do not make two banner lines different."""
    return " ".join(line.split())


class RepeatedLineRule(Rule):
    """A line in at least ``min_docs`` documents *and* at least ``min_doc_fraction`` of them is boilerplate
    (exact copies of a document count once). Both conditions, so a tiny source does not lose a line that
    happens to occur twice, and a huge source does not lose a phrase common in absolute terms but rare in share.
    """

    id = "boilerplate.repeated_line"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        cfg = ctx.gating.boilerplate
        out: list[DocOutcomes] = [[] for _ in range(docs.num_rows)]
        if not cfg.enabled:
            return out
        kinds = docs.column("kind").to_pylist()
        all_texts = texts(docs)
        candidates = [i for i, kind in enumerate(kinds) if kind != "chat"]
        # Copies of one document count once: five copies of a page make a duplicate (which the exact-duplicate
        # rule resolves by keeping one), not five pages sharing their every line.
        distinct = {normalize_for_dedupe(all_texts[i]): i for i in reversed(candidates)}
        n_docs = len(distinct)
        doc_freq: Counter[str] = Counter()
        for i in distinct.values():
            doc_freq.update({k for line in all_texts[i].splitlines() if len(k := line_key(line)) >= cfg.min_line_chars})
        boiler = {k: c for k, c in doc_freq.items() if c >= cfg.min_docs and c / n_docs >= cfg.min_doc_fraction}
        if not boiler:
            return out
        for i in candidates:
            pos = 0
            for line in all_texts[i].splitlines(keepends=True):
                count = boiler.get(line_key(line))
                if count is not None:
                    reason = (
                        f"line in {count} of {n_docs} distinct documents "
                        f"(>= min_docs {cfg.min_docs}, share {count / n_docs:.2f} >= {cfg.min_doc_fraction})"
                    )
                    out[i].append(Outcome("strip", reason, (pos, pos + len(line)), ""))
                pos += len(line)
        return out
