"""Per eval set and per item summaries of contamination findings.

Why a module: the screen emits one row per (document, item field, method); these collapse them into what
a report or a release gate reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pyarrow as pa

from mixassets.engine.contamination_index import HOLDOUT, TARGET, ScreenConfig, UnscreenableField, _require, build_index

REPORT_SCHEMA = pa.schema(
    [
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("items", pa.int64(), nullable=False),
        pa.field("items_leaked", pa.int64(), nullable=False),  # items with any finding
        pa.field("holdout_leaked", pa.int64(), nullable=False),  # items with a finding of kind "holdout"
        pa.field("target_leaked", pa.int64(), nullable=False),  # items with a finding of kind "target"
        pa.field("leaked_share", pa.float64(), nullable=False),  # items_leaked / items
        pa.field("sources", pa.list_(pa.string()), nullable=False),  # source_ids of the documents hit, sorted
        pa.field("documents_hit", pa.int64(), nullable=False),  # distinct (source_id, doc_id) with a finding
        pa.field("fields_unscreenable", pa.int64(), nullable=False),  # item fields no enabled method can screen
    ]
)
ITEM_LEAK_SCHEMA = pa.schema(
    [
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("kinds", pa.list_(pa.string()), nullable=False),
        pa.field("fields", pa.list_(pa.string()), nullable=False),
        pa.field("match_types", pa.list_(pa.string()), nullable=False),
        pa.field("documents", pa.int64(), nullable=False),
        pa.field("sources", pa.list_(pa.string()), nullable=False),
        pa.field("example_doc_id", pa.string(), nullable=False),  # the document of the longest overlap
        pa.field("example_overlap", pa.string(), nullable=False),
    ]
)


def _sorted_strings(values: Iterable[str]) -> list[str]:
    return sorted(set(values))


def contamination_report(
    findings: pa.Table,
    items: pa.Table,
    *,
    config: ScreenConfig | None = None,
    unscreenable: Sequence[UnscreenableField] | None = None,
) -> pa.Table:
    """One row per eval set of ``items`` (sorted): how many of its items leaked, as holdout or target, from where.

    The unscreenable fields are counted from ``unscreenable`` (the ``ScreenIndex.unscreenable`` of the
    screen) when given; otherwise the items are indexed again under ``config``, which must then be the one
    the findings were screened with. A finding naming an item that ``items`` does not hold means the two
    tables do not belong together, so it raises rather than report a share against the wrong denominator.
    """
    _require(items, ("eval_set", "item_id"), "eval item")
    _require(findings, ("eval_set", "item_id", "kind", "doc_id", "source_id"), "finding")
    known: dict[str, set[str]] = {}
    for s, i in zip(items.column("eval_set").to_pylist(), items.column("item_id").to_pylist(), strict=True):
        known.setdefault(s, set()).add(i)
    if unscreenable is None:
        has_fields = "screen_fields" in items.column_names
        unscreenable = build_index(items, config=config or ScreenConfig()).unscreenable if has_fields else []
    too_short: dict[str, int] = dict.fromkeys(known, 0)
    for u in unscreenable:
        if u.eval_set not in too_short:
            raise ValueError(f"contamination_report: unscreenable field of eval set {u.eval_set!r}, not in the items")
        too_short[u.eval_set] += 1
    leaked: dict[str, dict[str, set[str]]] = {s: {"any": set(), HOLDOUT: set(), TARGET: set()} for s in known}
    sources: dict[str, set[str]] = {s: set() for s in known}
    docs: dict[str, set[tuple[str, str]]] = {s: set() for s in known}
    stray: set[tuple[str, str]] = set()
    for f in findings.select(["eval_set", "item_id", "kind", "doc_id", "source_id"]).to_pylist():
        s, i = f["eval_set"], f["item_id"]
        if i not in known.get(s, ()):
            stray.add((s, i))
            continue
        leaked[s]["any"].add(i)
        if f["kind"] in (HOLDOUT, TARGET):
            leaked[s][f["kind"]].add(i)
        sources[s].add(f["source_id"])
        docs[s].add((f["source_id"], f["doc_id"]))
    if stray:
        raise ValueError(
            f"contamination_report: findings name {len(stray)} item(s) not in the items table, e.g. {sorted(stray)[:5]}"
        )
    rows = [
        {
            "eval_set": s,
            "items": len(known[s]),
            "items_leaked": len(leaked[s]["any"]),
            "holdout_leaked": len(leaked[s][HOLDOUT]),
            "target_leaked": len(leaked[s][TARGET]),
            "leaked_share": len(leaked[s]["any"]) / len(known[s]),
            "sources": sorted(sources[s]),
            "documents_hit": len(docs[s]),
            "fields_unscreenable": too_short[s],
        }
        for s in sorted(known)
    ]
    return pa.Table.from_pylist(rows, schema=REPORT_SCHEMA)


def item_leaks(findings: pa.Table) -> pa.Table:
    """One row per leaked item (sorted by set, item): what leaked, how, into how many documents and sources."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for f in findings.to_pylist():
        groups.setdefault((f["eval_set"], f["item_id"]), []).append(f)
    rows = []
    for (s, i), fs in sorted(groups.items()):
        example = max(fs, key=lambda f: (len(f["overlap_text"]), f["score"]))
        rows.append(
            {
                "eval_set": s,
                "item_id": i,
                "kinds": _sorted_strings(f["kind"] for f in fs),
                "fields": _sorted_strings(f["field"] for f in fs),
                "match_types": _sorted_strings(f["match_type"] for f in fs),
                "documents": len({(f["source_id"], f["doc_id"]) for f in fs}),
                "sources": _sorted_strings(f["source_id"] for f in fs),
                "example_doc_id": example["doc_id"],
                "example_overlap": example["overlap_text"],
            }
        )
    return pa.Table.from_pylist(rows, schema=ITEM_LEAK_SCHEMA)
