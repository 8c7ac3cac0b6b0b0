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

from eval_assets.engine.candidates import BASELINE
from eval_assets.engine.live import LIVE, model_rows, reusable, snapshot_record, stored_rows
from mixtrain.project import Project
from mixtrain.release import ReleaseError, released_model_dirs
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
    try:
        base_dir, model_dir = released_model_dirs(proj.storage_root, model_cache(proj), entry)
    except ReleaseError as e:  # no rows for it: the report's check and the gate then say the baseline is missing
        return LiveModel(identity=identity, how=f"cannot be evaluated ({why_not}): {e}")
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


def reuse_base(
    models: dict[str, tuple[str, str | None]], base_eval: pa.Table, fingerprint: str
) -> dict[str, tuple[pa.Table, dict[str, Any]]]:
    """The base's rows from ``base_eval`` when they were computed on the same items and settings (then the base is
    taken out of ``models``, not loaded again); else nothing, and the base is evaluated with the others."""
    found = stored_rows(base_eval, fingerprint)
    if found is None:
        return {}
    del models[BASELINE]
    return {BASELINE: found}
