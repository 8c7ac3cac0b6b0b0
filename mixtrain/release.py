"""The release record (``released_model.json``): which model is live, why, and the releases before it.

It lives in the core so that the CLI can roll back without loading the evaluation stage; the asset that
promotes models (eval_assets) writes the same shape.

An entry pins the released model's published version and weights hash (``adapter``), the base it was trained on
(``base``: version and weights hash; None for a model that is whole by itself) and the hash of the tokenizer
files it is served with. A rollback restores the whole pair, and :func:`released_model_dirs`, the one way to find
the files of a release, refuses a base or adapter whose bytes are not the pinned ones: an old adapter is never
served on a newer base.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from mixtrain.model_store import ModelStoreError, fetch_model, version_of
from mixtrain.storage import JSON_EXT, asset_path, json_bytes, read_json, write_atomic

RELEASE_KEY = "released_model"


class ReleaseError(ValueError):
    """A release cannot be served or restored as pinned; the message names the part that does not match."""


def release_entry(model: str, manifest: dict[str, Any], *, reason: Any, at: dt.datetime) -> dict[str, Any]:
    """One release: the model asset, its version, weights, where it lives and why it was promoted, with the
    pins (``adapter``, ``base``, ``tokenizer_sha256``) that make a rollback restore exactly this pair."""
    run = manifest.get("run_manifest", {})
    adapter = {
        "key": list(manifest.get("key") or [model]),
        "version": manifest.get("version"),
        "location": manifest.get("location"),
        "weights_sha256": run.get("output_weights_sha256"),
        "tokenizer_sha256": manifest.get("tokenizer_sha256"),
    }
    base = manifest.get("base")
    return {
        "model": model,
        "version": manifest.get("version"),
        "path": manifest.get("path"),
        "weights_sha256": run.get("output_weights_sha256"),
        "data_manifest_id": run.get("data_manifest_id"),
        "adapter": adapter,
        "base": dict(base) if base else None,
        # what the model is served with: its own tokenizer files when it carries them, else the base's
        "tokenizer_sha256": adapter["tokenizer_sha256"] or (base or {}).get("tokenizer_sha256"),
        "released_at": at.replace(microsecond=0).isoformat(),
        "reason": reason,
    }


def _check_pin(root: str, pin: dict[str, Any] | None, what: str, model: str) -> dict[str, Any]:
    """The published version record a pin names, when its weights are the pinned ones."""
    if not pin or not pin.get("version") or not pin.get("weights_sha256"):
        raise ReleaseError(f"release of {model} has no {what} pin (released before pins were recorded): re-release it")
    try:
        record = version_of(root, pin["key"], pin["version"])
    except ModelStoreError as e:
        raise ReleaseError(f"release of {model}: pinned {what} is gone: {e}") from e
    if record.get("weights_sha256") != pin["weights_sha256"]:
        raise ReleaseError(
            f"release of {model}: {what} {pin['key']}@{pin['version']} holds weights {record.get('weights_sha256')}, "
            f"the release pinned {pin['weights_sha256']}"
        )
    return record


def check_release(root: str, entry: dict[str, Any]) -> None:
    """Raise unless the adapter and base an entry pins are published with the pinned weights (no bytes read:
    the version records are checked; :func:`released_model_dirs` checks the files themselves)."""
    _check_pin(root, entry.get("adapter"), "adapter", entry["model"])
    if entry.get("base") is not None:
        _check_pin(root, entry["base"], "base", entry["model"])


def released_model_dirs(
    root: str, cache_root: str | os.PathLike[str], entry: dict[str, Any] | None = None
) -> tuple[Path | None, Path]:
    """``(base_dir, model_dir)`` of the live release (or ``entry``): local directories of exactly the pinned
    versions, every file checked against its published sha256. ``base_dir`` is None when the model is whole by
    itself (a student, a merged adapter); pass both to ``load_for_inference(base_dir, model_dir)``."""
    if entry is None:
        release = current_release(root)
        if release is None:
            raise ReleaseError(f"no {RELEASE_KEY} under {root}")
        entry = release["current"]
    check_release(root, entry)
    adapter = entry["adapter"]
    try:
        model_dir = fetch_model(root, adapter["key"], cache_root, version=adapter["version"])
        needs_base = (model_dir / "adapter_config.json").is_file()
        if needs_base and entry.get("base") is None:
            raise ReleaseError(f"release of {entry['model']}: a LoRA adapter without a pinned base")
        base = entry.get("base") if needs_base else None
        base_dir = fetch_model(root, base["key"], cache_root, version=base["version"]) if base else None
    except ModelStoreError as e:
        raise ReleaseError(f"release of {entry['model']}: {e}") from e
    return base_dir, model_dir


def current_release(root: str) -> dict[str, Any] | None:
    path = asset_path(root, RELEASE_KEY, ext=JSON_EXT)
    return read_json(path) if path.exists() else None


def rollback(root: str, reason: str, *, at: dt.datetime | None = None) -> dict[str, Any]:
    """Make the previous release live again (atomically), with the base it pinned; the rolled-back one stays in
    the history. Refused when that release's adapter or base is no longer published with the pinned weights."""
    release = current_release(root)
    if release is None:
        raise ValueError(f"nothing to roll back: no {RELEASE_KEY} under {root}")
    history = list(release.get("history", []))
    if not history:
        raise ValueError(f"nothing to roll back to: {release['current']['model']} is the only release so far")
    when = (at or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0).isoformat()
    check_release(root, history[-1])
    restored = {**history[-1], "reason": {"rollback": reason, "from": release["current"]}, "released_at": when}
    rolled = {"current": restored, "previous": release["current"], "history": history[:-1]}
    write_atomic(asset_path(root, RELEASE_KEY, ext=JSON_EXT), json_bytes(rolled))
    return rolled
