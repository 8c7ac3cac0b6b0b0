"""The release record (``released_model.json``): which model is live, why, and the releases before it.

It lives in mixassets so that the CLI can roll back without loading the evaluation stage; the asset that
promotes models (eval_assets) writes the same shape.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mixtrain.storage import JSON_EXT, asset_path, json_bytes, read_json, write_atomic

RELEASE_KEY = "released_model"


def release_entry(model: str, manifest: dict[str, Any], *, reason: Any, at: dt.datetime) -> dict[str, Any]:
    """One release: the model asset, its version, weights, where it lives and why it was promoted."""
    run = manifest.get("run_manifest", {})
    return {
        "model": model,
        "version": manifest.get("version"),
        "path": manifest.get("path"),
        "weights_sha256": run.get("output_weights_sha256"),
        "data_manifest_id": run.get("data_manifest_id"),
        "released_at": at.replace(microsecond=0).isoformat(),
        "reason": reason,
    }


def current_release(root: str) -> dict[str, Any] | None:
    path = asset_path(root, RELEASE_KEY, ext=JSON_EXT)
    return read_json(path) if path.exists() else None


def rollback(root: str, reason: str, *, at: dt.datetime | None = None) -> dict[str, Any]:
    """Make the previous release live again (atomically); the rolled-back one stays in the history."""
    release = current_release(root)
    if release is None:
        raise ValueError(f"nothing to roll back: no {RELEASE_KEY} under {root}")
    history = list(release.get("history", []))
    if not history:
        raise ValueError(f"nothing to roll back to: {release['current']['model']} is the only release so far")
    when = (at or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0).isoformat()
    restored = {**history[-1], "reason": {"rollback": reason, "from": release["current"]}, "released_at": when}
    rolled = {"current": restored, "previous": release["current"], "history": history[:-1]}
    write_atomic(asset_path(root, RELEASE_KEY, ext=JSON_EXT), json_bytes(rolled))
    return rolled
