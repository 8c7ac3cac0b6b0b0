"""The live release as a model of an evaluation run, and its results stored with it when it is released.

``eval_report`` reads what is live when it runs (``released_model.json``): a release alone does not make the
evaluation stale, since that would loop (a release changes what is live, which would re-evaluate, which would
re-release); the live model is compared whenever the candidates are evaluated. Its rows come from the snapshot
stored at release time when the items and settings are the same (``engine.live.run_fingerprint``), else it is
loaded from the pinned versions (``mixtrain.release.released_model_dirs``) and evaluated with the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from upath import UPath

from eval_assets.engine.live import LIVE, model_rows, reusable, snapshot_record
from mixtrain.project import Project
from mixtrain.release import released_model_dirs
from mixtrain.tables import PendingTable, TableError, open_table
from training_assets.assets.model_store import model_cache

SNAPSHOTS = "released_model_eval"  # <storage root>/released_model_eval/<model>/<version>: a release's item rows


@dataclass
class LiveModel:
    """How a run gets the live model's rows: ``dirs`` to evaluate it, or ``reused`` rows; ``how`` says which."""

    dirs: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)
    reused: dict[str, tuple[pa.Table, dict[str, Any]]] = field(default_factory=dict)
    how: str = ""


def live_model(proj: Project, release: dict[str, Any], fingerprint: str) -> LiveModel:
    entry = release["current"]
    identity = {"model": entry["model"], "version": entry["version"], "weights_sha256": entry["weights_sha256"]}
    stored = entry.get("eval")
    why_not = reusable(stored, fingerprint)
    if why_not is None:
        try:
            rows = open_table(UPath(proj.storage_root) / stored["table"], stored["table_version"]).read()
            how = f"reused the results stored with the release ({stored['table']})"
            return LiveModel(identity=identity, reused={LIVE: (rows, stored["model_record"])}, how=how)
        except TableError as e:  # gone, or not the table the release recorded
            why_not = f"its stored results cannot be used: {e}"
    base_dir, model_dir = released_model_dirs(proj.storage_root, model_cache(proj), entry)
    dirs = (str(base_dir), str(model_dir)) if base_dir is not None else (str(model_dir), None)
    return LiveModel(dirs={LIVE: dirs}, identity=identity, how=f"evaluated again: {why_not}")


def store_snapshot(proj: Project, entry: dict[str, Any], items: pa.Table, record: dict[str, Any]) -> dict[str, Any]:
    """Keep the released model's item rows (under its version, never overwritten by a later release) and what
    they were computed on; returns the ``eval`` field of its release entry."""
    relative = f"{SNAPSHOTS}/{entry['model']}/{entry['version']}"
    stored = PendingTable.of(model_rows(items, entry["model"])).commit(UPath(proj.storage_root) / relative)
    return {
        "table": relative,
        "table_version": stored.version,
        "fingerprint": record["fingerprint"],
        "model_record": snapshot_record(record, entry["model"]),
    }
