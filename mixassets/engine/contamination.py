"""Screen training documents for eval-set contamination with token n-gram overlap (GPT-3, appendix C).

Why n-grams of ``\\w+`` tokens: lowercasing and dropping punctuation/whitespace makes the screen blind
to re-formatting (a HumanEval solution pasted into a blog post with different indentation still
matches), and splitting code into identifier/number runs lets the same rule cover prose and code.
A 13-gram shared with an eval item is long enough that chance overlap in unrelated text is rare, yet
short enough that a partial copy of a solution is caught.

Item fields shorter than ``n`` tokens have no n-gram and so cannot be screened this way; they are not
silently ignored: :func:`unscreenable_fields` (and :attr:`NgramIndex.unscreenable`) lists them so the
caller can report how much of an eval set went unscreened.

N-grams are compared by 64-bit BLAKE2b-derived hashes (:mod:`mixassets.engine.text_norm`), which are
identical in every process; with 2^64 values, a false hit from a hash collision is negligible next to
the volume of any realistic corpus.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from mixassets.engine.text_norm import TokenHasher, ngram_hashes, word_tokens
from mixassets.schema import FINDING_SCHEMA

OVERLAP_MAX_CHARS = 300
_ITEM_COLUMNS = ("eval_set", "item_id", "screen_fields")
_DOC_COLUMNS = ("doc_id", "source_id", "text")


@dataclass(frozen=True)
class FieldRef:
    """One screened text of an eval item."""

    eval_set: str
    item_id: str
    field: str


@dataclass(frozen=True)
class UnscreenableField:
    eval_set: str
    item_id: str
    field: str
    tokens: int  # fewer than n, so no n-gram exists


@dataclass
class NgramIndex:
    """n-gram hash -> the item fields containing it, plus each field's count of distinct n-grams."""

    n: int
    fields: list[FieldRef] = field(default_factory=list)
    field_ngrams: list[int] = field(default_factory=list)
    postings: dict[int, list[int]] = field(default_factory=dict)
    unscreenable: list[UnscreenableField] = field(default_factory=list)
    hasher: TokenHasher = field(default_factory=TokenHasher)


def _require(table: pa.Table, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"contamination: {what} table lacks required column(s) {missing}; got {table.column_names}")
    for name in columns[:2]:
        nulls = table.column(name).null_count
        if nulls:
            raise ValueError(f"contamination: {what} column '{name}' has {nulls} null value(s)")


def _screen_fields(eval_set: str, item_id: str, raw: str | None) -> dict[str, str]:
    where = f"eval item {eval_set}/{item_id}, field 'screen_fields'"
    try:
        parsed = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from e
    if not isinstance(parsed, dict):
        raise ValueError(f"{where}: expected a JSON object {{field_name: text}}, got {type(parsed).__name__}")
    bad = sorted(k for k, v in parsed.items() if not isinstance(v, str))
    if bad:
        raise ValueError(f"{where}: values must be strings; not a string for {bad}")
    return parsed


def build_index(items: pa.Table, n: int = 13) -> NgramIndex:
    """Index every screen field of every item; a malformed ``screen_fields`` raises naming the item."""
    if n < 1:
        raise ValueError(f"contamination: n must be >= 1, got {n}")
    _require(items, _ITEM_COLUMNS, "eval item")
    index = NgramIndex(n=n)
    cols = {c: items.column(c).to_pylist() for c in _ITEM_COLUMNS}
    for eval_set, item_id, raw in zip(cols["eval_set"], cols["item_id"], cols["screen_fields"], strict=True):
        for name, text in _screen_fields(eval_set, item_id, raw).items():
            tokens = word_tokens(text)
            if len(tokens) < n:
                index.unscreenable.append(UnscreenableField(eval_set, item_id, name, len(tokens)))
                continue
            ref = len(index.fields)
            index.fields.append(FieldRef(eval_set, item_id, name))
            grams = np.unique(ngram_hashes(index.hasher.hashes(tokens), n)).tolist()
            index.field_ngrams.append(len(grams))
            for h in grams:
                index.postings.setdefault(h, []).append(ref)
    return index


def unscreenable_fields(items: pa.Table, n: int = 13) -> list[UnscreenableField]:
    """Item fields with fewer than ``n`` tokens, which an n-gram screen cannot check."""
    return build_index(items, n).unscreenable


def _longest_run(positions: list[int]) -> tuple[int, int]:
    """The longest stretch of consecutive n-gram start positions, as (first, last)."""
    best = cur = (positions[0], positions[0])
    for p in positions[1:]:
        cur = (cur[0], p) if p == cur[1] + 1 else (p, p)
        if cur[1] - cur[0] > best[1] - best[0]:
            best = cur
    return best


def _overlap_text(tokens: list[str], first: int, last: int, n: int) -> str:
    text = " ".join(tokens[first : last + n])
    if len(text) <= OVERLAP_MAX_CHARS:
        return text
    cut = text.rfind(" ", 0, OVERLAP_MAX_CHARS)
    return text[: cut if cut > 0 else OVERLAP_MAX_CHARS] + " …"


def _scan(text: str, index: NgramIndex) -> list[tuple[int, str, float]]:
    """(field ref, overlap text, score) for every item field the text shares an n-gram with."""
    tokens = word_tokens(text)
    grams = ngram_hashes(index.hasher.hashes(tokens), index.n).tolist()
    positions: dict[int, list[int]] = {}
    found: dict[int, set[int]] = {}
    postings = index.postings
    for pos, h in enumerate(grams):
        refs = postings.get(h)
        if refs is None:
            continue
        for ref in refs:
            positions.setdefault(ref, []).append(pos)
            found.setdefault(ref, set()).add(h)
    out = []
    for ref in sorted(positions):
        first, last = _longest_run(positions[ref])
        out.append((ref, _overlap_text(tokens, first, last, index.n), len(found[ref]) / index.field_ngrams[ref]))
    return out


def screen(docs: pa.Table, items: pa.Table, *, n: int = 13) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Split ``docs`` into (clean, contaminated) and return the findings behind every contaminated doc.

    A document is contaminated when it shares at least one n-gram with any screened field of any item.
    Findings have one row per (document, item field) pair, in document order; ``overlap_text`` is the
    longest contiguous overlapping run in the document's normalised tokens (cut to ~300 characters) and
    ``score`` the share of the field's distinct n-grams that occur in the document.
    """
    _require(docs, _DOC_COLUMNS, "document")
    index = build_index(items, n)
    match_type = f"ngram{n}"
    doc_ids = docs.column("doc_id").to_pylist()
    sources = docs.column("source_id").to_pylist()
    texts = docs.column("text").to_pylist()
    hit = np.zeros(docs.num_rows, dtype=bool)
    rows: dict[str, list] = {name: [] for name in FINDING_SCHEMA.names}
    if index.postings:
        for i, text in enumerate(texts):
            for ref, overlap, score in _scan(text or "", index):
                hit[i] = True
                f = index.fields[ref]
                rows["doc_id"].append(doc_ids[i])
                rows["source_id"].append(sources[i])
                rows["eval_set"].append(f.eval_set)
                rows["item_id"].append(f.item_id)
                rows["field"].append(f.field)
                rows["match_type"].append(match_type)
                rows["overlap_text"].append(overlap)
                rows["score"].append(score)
    findings = pa.Table.from_pydict(rows, schema=FINDING_SCHEMA)
    return docs.filter(pa.array(~hit)), docs.filter(pa.array(hit)), findings
