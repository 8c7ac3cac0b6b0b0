"""Provenance answered from what the pipeline stored: where a document came from and where it went, and what a
source reached. Nothing is recomputed; every answer is a filtered read of asset tables under the storage root, so
it costs milliseconds and says exactly what the stored lineage says (the same functions feed the CLI and the
assets' metadata, so the UI and the terminal tell one story).

Models are found by their manifests: any ``<asset>.json`` at the storage root whose ``run_manifest`` names the
``data_manifest_id`` of the mixture it was trained on. This module knows no training asset by name (mixassets is
the foundation and imports neither other package); a new model stage that follows the manifest contract shows
up here without a change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from upath import UPath

from mixtrain.storage import JSON_EXT, asset_path, read_json
from mixtrain.tables import MANIFEST_NAME, MissingTableError, open_table

PER_SOURCE = ("raw_documents", "raw_rejects", "gated_documents", "quarantine", "decision_log")
TEXT_COLUMNS = ("text", "messages")
# A held record's text is a redacted view, but an answer is printed and pasted into tickets: it names where the
# record is (locator, doc_id) and why it was held, never what it says. The vault/ prefix is never read here.
HELD_TEXT = ("text", "raw", "raw_bytes", "raw_sha256")
MANIFEST_HISTORY = "mixture_manifest_history"
MODEL_HISTORY = "model_history"


def _read(path: UPath, where: pc.Expression | None = None, *, drop: Iterable[str] = ()) -> pa.Table | None:
    """The rows of a stored table that match ``where``: the filter is pushed into the parquet reader (row groups
    whose statistics exclude it are skipped) and the ``drop`` columns (document text) are never read."""
    try:
        table = open_table(path)
    except MissingTableError:
        return None
    columns = [c for c in table.schema.names if c not in set(drop)]
    return table.read(columns=columns, filter=where)


def _doc(doc_id: str) -> pc.Expression:
    return pc.field("doc_id") == doc_id


def _partitions(root: str, key: str) -> list[UPath]:
    folder = UPath(root) / key
    if not folder.exists():
        return []
    return sorted(p for p in folder.iterdir() if (p / MANIFEST_NAME).exists())


def _rows(table: pa.Table | None) -> list[dict[str, Any]]:
    return [] if table is None else table.to_pylist()


# Model assets partitioned per adapter: their history folder is model_history/<asset>[<partition>]/.
PARTITIONED_MODELS = ("task_adapter",)


def model_history_path(root: str, asset: str, version: str) -> UPath:
    """Where a trained model's manifest is kept for good, one file per version (``<asset>/<version>/`` holds its
    weights): a rebuild writes a new version beside the old one, so an old model trained on data revoked later
    keeps its directory, its manifest and its revocation label."""
    return asset_path(root, [MODEL_HISTORY, asset], version, ext=JSON_EXT)


def _model_entry(asset: str, manifest: Any, file: UPath) -> dict[str, Any] | None:
    run = manifest.get("run_manifest") if isinstance(manifest, dict) else None
    if not isinstance(run, dict) or "data_manifest_id" not in run:
        return None
    return {
        "asset": asset,
        "version": manifest.get("version"),
        "path": manifest.get("path"),
        "data_manifest_id": run["data_manifest_id"],
        "trained_on_revoked": manifest.get("trained_on_revoked", []),
        "data_filter": manifest.get("data_filter"),
        "current": False,
        "files": [str(file)],
    }


def _json_files(folder: UPath) -> list[UPath]:
    if not folder.exists():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(JSON_EXT) and not p.name.startswith("."))


def _load(path: UPath) -> Any:
    try:
        return read_json(path)
    except (OSError, json.JSONDecodeError):
        return None


def model_manifests(root: str) -> list[dict[str, Any]]:
    """Every model ever trained here, current or superseded: asset, version, directory, the mixture manifest it
    was trained on, any revocation label, and the manifest files that describe it (the history file, and the
    asset's current JSON while it is the live version)."""
    models: dict[tuple[str, Any], dict[str, Any]] = {}
    history = UPath(root) / MODEL_HISTORY
    for folder in sorted(history.iterdir()) if history.exists() else []:
        for path in _json_files(folder):
            entry = _model_entry(folder.name, _load(path), path)
            if entry is not None:
                models[(entry["asset"], entry["path"])] = entry
    current = [(path.name.removesuffix(JSON_EXT), path) for path in _json_files(UPath(root))]
    for asset in PARTITIONED_MODELS:  # <root>/<asset>/<partition>.json, labelled <asset>[<partition>]
        current += [(f"{asset}[{p.name.removesuffix(JSON_EXT)}]", p) for p in _json_files(UPath(root) / asset)]
    for asset, path in current:
        entry = _model_entry(asset, _load(path), path)
        if entry is None:
            continue
        known = models.get((asset, entry["path"]))
        if known is None:
            models[(asset, entry["path"])] = entry
            known = entry
        else:
            known["files"].append(str(path))
        known["current"] = True
    return list(models.values())


def manifest_history_path(root: str, manifest_id: str) -> UPath:
    """Where every mixture manifest ever written is kept by id (what ``mixtrain mixture diff`` compares)."""
    return asset_path(root, MANIFEST_HISTORY, manifest_id, ext=JSON_EXT)


def mixture_manifest(root: str) -> dict[str, Any] | None:
    path = asset_path(root, "mixture_manifest", ext=JSON_EXT)
    return read_json(path) if path.exists() else None


def _mixture_history(root: str, current: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every stored mixture manifest (the live one included even when its history file is missing)."""
    found = {m.get("manifest_id"): m for m in map(_load, _json_files(UPath(root) / MANIFEST_HISTORY)) if m}
    if current is not None:
        found.setdefault(current.get("manifest_id"), current)
    return list(found.values())


def reads(model: dict[str, Any], source_id: str, domain: str | None) -> bool:
    """Whether a model trained on a mixture's rows of this source and domain: a model with a ``data_filter``
    (an adapter partition) read only the sources / domains it names."""
    flt = model.get("data_filter") or {}
    return (not flt.get("sources") or source_id in flt["sources"]) and (
        not flt.get("domains") or domain in flt["domains"]
    )


def _models_of(root: str, manifest: dict[str, Any] | None, rows: list[tuple[str, str | None]]) -> list[dict[str, Any]]:
    if manifest is None:
        return []
    return [
        m
        for m in model_manifests(root)
        if m["data_manifest_id"] == manifest.get("manifest_id") and any(reads(m, s, d) for s, d in rows)
    ]


def trace(root: str, doc_id: str) -> dict[str, Any]:
    """A document's whole story: capture, every gating decision, dedupe, contamination, mixtures and models."""
    raw = [r for p in _partitions(root, "raw_documents") for r in _rows(_read(p, _doc(doc_id), drop=TEXT_COLUMNS))]
    # A record that could not be read has no raw_documents row: its capture is its raw_rejects row.
    unreadable = [r for p in _partitions(root, "raw_rejects") for r in _rows(_read(p, _doc(doc_id), drop=HELD_TEXT))]
    found: dict[str, Any] = {"doc_id": doc_id, "found": bool(raw or unreadable), "raw": raw, "unreadable": unreadable}
    sources = sorted({r["source_id"] for r in raw + unreadable})
    for key in ("decision_log", "quarantine"):
        found[key] = [
            r for sid in sources for r in _rows(_read(asset_path(root, key, sid), _doc(doc_id), drop=HELD_TEXT))
        ]
    found["passed_gating"] = any(
        _rows(_read(asset_path(root, "gated_documents", sid), _doc(doc_id), drop=TEXT_COLUMNS)) for sid in sources
    )
    clusters = _read(asset_path(root, "dedupe_clusters"), _doc(doc_id) | (pc.field("kept_doc_id") == doc_id))
    found["dedupe"] = {
        "dropped_as": _rows(clusters.filter(pc.equal(clusters["doc_id"], doc_id))) if clusters else [],
        "keeper_of": _rows(clusters.filter(pc.equal(clusters["kept_doc_id"], doc_id))) if clusters else [],
    }
    found["contamination"] = _rows(_read(asset_path(root, "contamination_findings"), _doc(doc_id)))
    mixture = _read(asset_path(root, "mixture"), _doc(doc_id), drop=TEXT_COLUMNS)
    manifest = mixture_manifest(root)
    uses = []
    if mixture is not None and mixture.num_rows:
        phases = mixture.column("phase").to_pylist() if "phase" in mixture.column_names else [None] * mixture.num_rows
        for phase in sorted(set(phases), key=str):
            uses.append({"phase": phase, "occurrences": phases.count(phase)})
    found["mixtures"] = (
        [{"mixture_id": manifest.get("mixture_id"), "manifest_id": manifest.get("manifest_id"), "uses": uses}]
        if uses and manifest
        else []
    )
    where = (
        list(zip(mixture.column("source_id").to_pylist(), mixture.column("domain").to_pylist(), strict=True))
        if uses
        else []
    )
    found["models"] = _models_of(root, manifest, where)
    if found["found"]:  # first, so that the terminal shows the decisions before the rows behind them
        from mixtrain.trace_stages import stage_decisions

        found = {"doc_id": doc_id, "found": True, "stages": stage_decisions(root, found), **found}
    return found


def _count_source(table: pa.Table, source_id: str) -> int:
    return int(pc.sum(pc.equal(table.column("source_id"), source_id)).as_py() or 0)


def impact(root: str, source_id: str) -> dict[str, Any]:
    """Every stored asset (partition), mixture and model a source reached, with its document counts."""
    per_source = {}
    for key in PER_SOURCE:
        path = asset_path(root, key, source_id)
        if (path / MANIFEST_NAME).exists():
            per_source[f"{key}[{source_id}]"] = open_table(path).rows
    cross = {}
    for key in ("deduplicated_corpus", "dedupe_clusters", "screened_corpus", "contaminated_documents", "mixture"):
        table = _read(asset_path(root, key), pc.field("source_id") == source_id, drop=())
        if table is not None:
            n = _count_source(table.select(["source_id"]), source_id)
            if n:
                cross[key] = n
    current = mixture_manifest(root)
    current_id = current.get("manifest_id") if current else None
    mixtures = []
    domains: dict[str, str | None] = {}  # the source's domain in each mixture (for adapters that filter by it)
    # Every mixture ever built, not only the live one: after a revocation and rebuild the live mixture no longer
    # holds the source, but the models trained on the earlier mixtures still carry it.
    for manifest in _mixture_history(root, current):
        stats = manifest.get("composition", {}).get("sources", {}).get(source_id, {})
        if not stats.get("docs"):
            continue
        is_current = manifest.get("manifest_id") == current_id
        domains[manifest.get("manifest_id")] = stats.get("domain")
        mixtures.append(
            {
                "mixture_id": manifest.get("mixture_id"),
                "manifest_id": manifest.get("manifest_id"),
                "current": is_current,
                "docs": cross.get("mixture", stats.get("docs")) if is_current else stats.get("docs"),
                "tokens": stats.get("tokens"),
            }
        )
    models = [
        m
        for m in model_manifests(root)
        if m["data_manifest_id"] in domains and reads(m, source_id, domains[m["data_manifest_id"]])
    ]
    return {"source_id": source_id, "partitions": per_source, "corpus": cross, "mixtures": mixtures, "models": models}


def render(answer: dict[str, Any]) -> str:
    """Plain, indented text for the terminal: the answer's structure, without the noise of JSON punctuation."""
    lines: list[str] = []

    def walk(value: Any, indent: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, dict | list) and v:
                    lines.append(f"{indent}{k}:")
                    walk(v, indent + "  ")
                else:
                    lines.append(f"{indent}{k}: {_scalar(v)}")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    first, *rest = list(item.items()) or [("", "")]
                    lines.append(f"{indent}- {first[0]}: {_scalar(first[1])}")
                    walk(dict(rest), indent + "  ")
                else:
                    lines.append(f"{indent}- {_scalar(item)}")

    walk(answer, "")
    return "\n".join(lines)


def _scalar(value: Any) -> str:
    if isinstance(value, list | dict):
        return "none" if not value else json.dumps(value, default=str)
    return str(value)
