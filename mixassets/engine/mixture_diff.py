"""What changed between two mixtures, from their manifests alone.

A model's data identity is its mixture manifest, so "why does this model differ from the last one" is a
diff of two manifests: which spec fields moved, which upstream versions (inputs, source partitions, rule
versions) changed, how each source's, domain's and language's share of the tokens moved, and — when the
document ids are known — which documents came and went. Manifests written before a key existed simply
lack it; every key is read with a default so that old and new manifests can be compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mixassets.engine.mixture import doc_ids_digest

_GROUPS = ("sources", "domains", "languages", "phases")
_TOTALS = ("old_docs", "new_docs", "docs_delta", "old_tokens", "new_tokens", "tokens_delta")
_EXAMPLES = 10


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaves (``weights.web``, ``phases.0.share``) so a change names the YAML field; an empty
    map or list has no leaves, so ``{} -> {web: 9}`` reads as ``max_tokens.web: None -> 9``."""
    if isinstance(obj, Mapping):
        items: Iterable[tuple[str, Any]] = ((str(k), v) for k, v in obj.items())
    elif isinstance(obj, list):
        items = ((str(i), v) for i, v in enumerate(obj))
    else:
        return {prefix: obj}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
    return out


def _changes(old: Mapping[str, Any], new: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    return [
        {key: k, "old": old.get(k), "new": new.get(k)} for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    ]


def _composition(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    return manifest.get("composition") or {}


def _group_delta(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k) or {}, new.get(k) or {}
        row = {
            "old_share": float(a.get("effective_weight", 0.0)),
            "new_share": float(b.get("effective_weight", 0.0)),
            "old_docs": int(a.get("docs", 0)),
            "new_docs": int(b.get("docs", 0)),
            "old_tokens": int(a.get("tokens", 0)),
            "new_tokens": int(b.get("tokens", 0)),
        }
        row["share_change"] = row["new_share"] - row["old_share"]
        row["docs_delta"] = row["new_docs"] - row["old_docs"]
        row["tokens_delta"] = row["new_tokens"] - row["old_tokens"]
        row["status"] = "added" if k not in old else "removed" if k not in new else "kept"
        out[k] = row
    return out


def _digest(manifest: Mapping[str, Any], ids: Sequence[str] | None) -> str | None:
    if ids is not None:
        return doc_ids_digest(ids)
    return manifest.get("doc_ids_digest") or _composition(manifest).get("doc_ids_digest")


def _documents(
    a: Mapping[str, Any], b: Mapping[str, Any], ids_a: Sequence[str] | None, ids_b: Sequence[str] | None
) -> dict[str, Any] | None:
    """Added/removed documents from id lists; from the digests only whether the sets are the same."""
    if ids_a is not None and ids_b is not None:
        set_a, set_b = set(ids_a), set(ids_b)
        added, removed = sorted(set_b - set_a), sorted(set_a - set_b)
        return {
            "same_set": not added and not removed,
            "added": len(added),
            "removed": len(removed),
            "kept": len(set_a & set_b),
            "added_examples": added[:_EXAMPLES],
            "removed_examples": removed[:_EXAMPLES],
        }
    digest_a, digest_b = _digest(a, ids_a), _digest(b, ids_b)
    if digest_a is None or digest_b is None:
        return None
    return {"same_set": digest_a == digest_b}


def diff_manifests(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    *,
    doc_ids_a: Sequence[str] | None = None,
    doc_ids_b: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Differences from mixture manifest ``a`` (old) to ``b`` (new); JSON-ready.

    Pass both mixtures' ``doc_id`` lists to count added and removed documents; without them the
    ``doc_ids_digest`` of each composition tells only whether the document sets are equal.
    """
    ca, cb = _composition(a), _composition(b)
    totals = _group_delta({"totals": ca.get("totals")}, {"totals": cb.get("totals")})["totals"]
    rules_old, rules_new = a.get("rules_version"), b.get("rules_version")
    return {
        "old": {k: a.get(k) for k in ("manifest_id", "mixture_id", "spec_hash")},
        "new": {k: b.get(k) for k in ("manifest_id", "mixture_id", "spec_hash")},
        "identical": a.get("manifest_id") is not None and a.get("manifest_id") == b.get("manifest_id"),
        "spec_changes": _changes(_flatten(a.get("spec") or {}), _flatten(b.get("spec") or {}), "field"),
        "input_changes": _changes(a.get("inputs") or {}, b.get("inputs") or {}, "input"),
        "partition_changes": _changes(a.get("input_partitions") or {}, b.get("input_partitions") or {}, "source"),
        "rules_version_changes": _changes(
            _flatten(rules_old) if isinstance(rules_old, Mapping) else {"rules_version": rules_old},
            _flatten(rules_new) if isinstance(rules_new, Mapping) else {"rules_version": rules_new},
            "rule",
        ),
        **{g: _group_delta(ca.get(g) or {}, cb.get(g) or {}) for g in _GROUPS},
        "totals": {k: totals[k] for k in _TOTALS},
        "documents": _documents(a, b, doc_ids_a, doc_ids_b),
        "shards_changed": [s.get("sha256") for s in a.get("shards") or []]
        != [s.get("sha256") for s in b.get("shards") or []],
    }


def drift(
    prev_manifest: Mapping[str, Any], new_manifest: Mapping[str, Any], tolerance: float
) -> list[tuple[str, float, float]]:
    """Sources whose token share moved by more than ``tolerance`` (absolute, in share units: 0.05 = 5 points),
    as ``(source, old share, new share)``, largest move first; a source missing on one side has share 0."""
    if tolerance < 0:
        raise ValueError(f"drift: tolerance must be >= 0, got {tolerance}")
    rows = _group_delta(
        _composition(prev_manifest).get("sources") or {}, _composition(new_manifest).get("sources") or {}
    )
    moved = [(s, r["old_share"], r["new_share"]) for s, r in rows.items() if abs(r["share_change"]) > tolerance]
    return sorted(moved, key=lambda t: (-abs(t[2] - t[1]), t[0]))


@dataclass(frozen=True)
class MixtureDrift:
    """The drift check of a new mixture against the previous one (none for a first mixture)."""

    tolerance: float
    compared_with: str
    moved: list[tuple[str, float, float]]  # as :func:`drift` gives them

    @property
    def passed(self) -> bool:
        return not self.moved

    def metadata(self) -> dict[str, Any]:
        return {
            "tolerance": self.tolerance,
            "compared_with": self.compared_with,
            **{f"moved/{sid}": f"{old:.3f} -> {new:.3f}" for sid, old, new in self.moved},
        }


def mixture_drift(previous: Mapping[str, Any] | None, manifest: Mapping[str, Any], tolerance: float) -> MixtureDrift:
    """:func:`drift` from ``previous`` to ``manifest``, or nothing moved when there is no previous manifest."""
    moved = drift(previous, manifest, tolerance) if previous is not None else []
    compared_with = (previous or {}).get("manifest_id", "none (first mixture)")
    return MixtureDrift(tolerance, compared_with, moved)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _signed(x: float, pct: bool = False) -> str:
    return f"{'+' if x > 0 else ''}{100 * x:.2f} pp" if pct else f"{'+' if x > 0 else ''}{x:,}"


def _cell(v: Any) -> str:
    return "—" if v is None else str(v).replace("|", "\\|")


def render_diff_markdown(diff: Mapping[str, Any]) -> str:
    """The diff as a Markdown report: what a reviewer reads before accepting a new mixture."""
    old, new = diff["old"], diff["new"]
    lines = [
        f"# Mixture diff: {_cell(old.get('manifest_id'))} → {_cell(new.get('manifest_id'))}",
        "",
    ]
    if diff["identical"]:
        lines += ["The two manifests are identical.", ""]
    t = diff["totals"]
    lines += [
        f"- documents: {t['old_docs']:,} → {t['new_docs']:,} ({_signed(t['docs_delta'])})",
        f"- tokens: {t['old_tokens']:,} → {t['new_tokens']:,} ({_signed(t['tokens_delta'])})",
    ]
    docs = diff.get("documents")
    if docs is None:
        lines.append("- document set: unknown (no document ids or digests)")
    elif "added" in docs:
        lines.append(f"- document set: {docs['added']:,} added, {docs['removed']:,} removed, {docs['kept']:,} kept")
    else:
        lines.append(f"- document set: {'unchanged' if docs['same_set'] else 'changed'} (by digest)")
    lines.append(f"- shards: {'changed' if diff['shards_changed'] else 'unchanged'}")
    for title, key, name in (
        ("Spec changes", "spec_changes", "field"),
        ("Upstream input changes", "input_changes", "input"),
        ("Source partition changes", "partition_changes", "source"),
        ("Rule version changes", "rules_version_changes", "rule"),
    ):
        rows = diff.get(key) or []
        if rows:
            lines += ["", f"## {title}", "", f"| {name} | old | new |", "|---|---|---|"]
            lines += [f"| {_cell(r[name])} | {_cell(r['old'])} | {_cell(r['new'])} |" for r in rows]
    for group in _GROUPS:
        rows = diff.get(group) or {}
        if not rows:
            continue
        lines += [
            "",
            f"## {group.capitalize()}",
            "",
            "| name | share old | share new | change | docs Δ | tokens Δ | status |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for k, r in rows.items():
            lines.append(
                f"| {_cell(k)} | {_pct(r['old_share'])} | {_pct(r['new_share'])} | {_signed(r['share_change'], True)}"
                f" | {_signed(r['docs_delta'])} | {_signed(r['tokens_delta'])} | {r['status']} |"
            )
    if docs and docs.get("added_examples"):
        lines += ["", "## Documents added (first)", "", *[f"- `{d}`" for d in docs["added_examples"]]]
    if docs and docs.get("removed_examples"):
        lines += ["", "## Documents removed (first)", "", *[f"- `{d}`" for d in docs["removed_examples"]]]
    return "\n".join(lines) + "\n"
