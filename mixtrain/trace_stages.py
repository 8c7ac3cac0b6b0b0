"""A traced document's story as one decision per stage, and close matches for an id that is not stored.

:func:`mixtrain.provenance.trace` gathers the stored rows about a document; read raw, they answer "was it
accepted?" with the gate's verdict alone, so a document the dedupe or the contamination screen removed later
still looked accepted. This module turns those rows into what a person asks: at each stage, what happened to
the document and why (which keeper it duplicated; which eval set, item, field and method removed it), and, once
it is removed, that the later stages never saw it.
"""

from __future__ import annotations

import difflib
from typing import Any

import pyarrow.compute as pc
from upath import UPath

from mixtrain.storage import asset_path
from mixtrain.tables import MANIFEST_NAME, MissingTableError, open_table

MAX_LISTED = 5
# Above this many stored ids a fuzzy scan costs seconds; prefix matches are still offered (one column read).
MAX_FUZZY_IDS = 200_000
NON_BLOCKING = ("redact", "strip", "flag")


def _has(root: str, key: str, doc_id: str) -> bool | None:
    """Whether the stored table holds the document; None when the table was never written."""
    try:
        table = open_table(asset_path(root, key))
    except MissingTableError:
        return None
    return table.read(columns=["doc_id"], filter=pc.field("doc_id") == doc_id).num_rows > 0


def _more(items: list[str]) -> str:
    extra = len(items) - MAX_LISTED
    return "; ".join(items[:MAX_LISTED]) + (f"; and {extra} more" if extra > 0 else "")


def _gating(root: str, answer: dict[str, Any]) -> tuple[str, str]:
    if answer["unreadable"]:
        r = answer["unreadable"][0]
        return "removed", f"could not be read: {r['rule_id']}: {r['reason']}"
    if answer["passed_gating"]:
        kept = sorted(
            {f"{d['rule_id']} ({d['action']})" for d in answer["decision_log"] if d["action"] in NON_BLOCKING}
        )
        return "accepted", "into the gated corpus" + (f", after {_more(kept)}" if kept else "")
    if answer["quarantine"]:
        q = answer["quarantine"][0]
        return "removed", f"{q['disposition']} by {q['rule_id']}: {q['reason']}"
    sources = sorted({r["source_id"] for r in answer["raw"]})
    if not any((asset_path(root, "gated_documents", sid) / MANIFEST_NAME).exists() for sid in sources):
        return "pending", f"gating has not run for {', '.join(sources)} yet"
    return "unknown", "not in the gated corpus and no gating decision stored (gated before it was captured?)"


def _dedupe(root: str, answer: dict[str, Any]) -> tuple[str, str]:
    dropped, keeper_of = answer["dedupe"]["dropped_as"], answer["dedupe"]["keeper_of"]
    for row in dropped:
        how = f"{row['match_type']} duplicate of {row['kept_doc_id']} ({row['kept_source_id']})"
        how += f", Jaccard {row['exact_jaccard']:.2f}"
        if row["action"] == "dropped":
            return "removed", how
        return "kept", f"{how}, kept under the cluster's per-source cap"
    state = _has(root, "deduplicated_corpus", answer["doc_id"])
    if state is None:
        return "pending", "dedupe has not run yet"
    if keeper_of:
        return "kept", f"keeper of a cluster: {len(keeper_of)} duplicate(s) dropped in its favour"
    if state:
        return "kept", "no duplicate found"
    return "unknown", "not in the deduplicated corpus (built before this document was gated?)"


def _screen(root: str, answer: dict[str, Any]) -> tuple[str, str]:
    findings = answer["contamination"]
    hits = [
        f"{f['eval_set']}/{f['item_id']} field '{f['field']}' ({f['kind']}) by {f['match_type']}"
        + f", score {f['score']:.2f}"
        for f in findings
    ]
    removed = _has(root, "contaminated_documents", answer["doc_id"])
    if removed:
        return "removed", "contaminated: " + (_more(hits) if hits else "quarantined by the screen")
    clean = _has(root, "screened_corpus", answer["doc_id"])
    if clean is None and removed is None:
        return "pending", "the contamination screen has not run yet"
    if clean:
        return "kept", "clean" + (f" (findings kept for review: {_more(hits)})" if hits else "")
    return "unknown", "in neither the screened corpus nor the contaminated documents (screened before this version?)"


def _mixture(root: str, answer: dict[str, Any]) -> tuple[str, str]:
    uses = [u for m in answer["mixtures"] for u in m["uses"]]
    if uses:
        n = sum(u["occurrences"] for u in uses)
        phases = sorted({str(u["phase"]) for u in uses if u["phase"] is not None})
        return "used", f"{n} occurrence(s) in mixture {answer['mixtures'][0]['manifest_id']}" + (
            f", phase(s) {', '.join(phases)}" if phases else ""
        )
    if _has(root, "heldout_text", answer["doc_id"]):
        return "held out", "set aside as held-out text for the perplexity suite, never trained on"
    if _has(root, "mixture", answer["doc_id"]) is None:
        return "pending", "no mixture built yet"
    return "not drawn", "not sampled into the current mixture (weights, caps or the release policy left it out)"


def stage_decisions(root: str, answer: dict[str, Any]) -> list[dict[str, str]]:
    """``[{stage, decision, detail}]`` from capture to models; after the stage that removed the document, the
    later ones say so instead of reporting absence as a decision of their own."""
    stages: list[dict[str, str]] = []
    raw = answer["raw"]
    if raw:
        r = raw[0]
        stages.append({"stage": "capture", "decision": "read", "detail": f"{r['source_id']} at {r['locator']}"})
    elif answer["unreadable"]:
        r = answer["unreadable"][0]
        stages.append({"stage": "capture", "decision": "unreadable", "detail": f"{r['source_id']} at {r['locator']}"})
    steps = (
        ("gating", lambda: _gating(root, answer)),
        ("dedupe", lambda: _dedupe(root, answer)),
        ("contamination screen", lambda: _screen(root, answer)),
        ("mixture", lambda: _mixture(root, answer)),
    )
    removed_at = None
    for name, decide in steps:
        if removed_at is not None:
            stages.append({"stage": name, "decision": "not reached", "detail": f"removed at {removed_at}"})
            continue
        decision, detail = decide()
        stages.append({"stage": name, "decision": decision, "detail": detail})
        if decision == "removed":
            removed_at = name
    models = [f"{m['asset']}@{m['version']}" + ("" if m["current"] else " (superseded)") for m in answer["models"]]
    if removed_at is None and models:
        stages.append({"stage": "models", "decision": "trained on it", "detail": ", ".join(models)})
    return stages


def _stored_ids(root: str) -> list[str]:
    ids: list[str] = []
    for key in ("raw_documents", "raw_rejects"):
        folder = UPath(root) / key
        for part in sorted(folder.iterdir()) if folder.exists() else []:
            if (part / MANIFEST_NAME).exists():
                ids += open_table(part).read(columns=["doc_id"]).column("doc_id").to_pylist()
    return ids


def similar_doc_ids(root: str, doc_id: str) -> tuple[int, list[str]]:
    """How many documents are stored, and up to five stored ids close to ``doc_id``: those it is a prefix of
    (a truncated paste), else difflib's closest (a mistyped digit) when the store is small enough to scan."""
    ids = _stored_ids(root)
    wanted = doc_id.strip().lower()
    prefixed = sorted(i for i in ids if wanted and i.startswith(wanted))
    if prefixed or len(ids) > MAX_FUZZY_IDS:
        return len(ids), prefixed[:MAX_LISTED]
    return len(ids), difflib.get_close_matches(wanted, ids, n=MAX_LISTED, cutoff=0.7)
