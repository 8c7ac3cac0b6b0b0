"""Revoked sources: a rights holder withdrew consent, a license turned out wrong, a takedown arrived.

A revocation is a small YAML file the project owns (``revocations/<source>.yaml``: who, when, why), so it is
reviewed and versioned like any other spec, and the ``revocations`` observable asset fingerprints the folder:
``source_manifest`` drops revoked sources from the corpus fan-in, so dedupe, the screen, the mixture and the
models downstream are stale and rebuild, while every per-source partition (raw, gated) stays as it is. Models
already trained on the source are labelled in their stored manifests, because a later rebuild replaces the
artifact but whoever shipped the old one must be able to see what it was trained on.
"""

from __future__ import annotations

import datetime as dt
import getpass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from upath import UPath

from mixtrain.config.errors import suggest
from mixtrain.identity import spec_hash
from mixtrain.project import Project, ProjectError
from mixtrain.provenance import impact
from mixtrain.storage import json_bytes, read_json, write_atomic

REVOCATIONS_DIR = "revocations"


class Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_id: str
    reason: str = Field(min_length=1)
    revoked_by: str
    revoked_at: dt.datetime


def revocation_files(project: Project) -> list[Path]:
    return sorted((project.root / REVOCATIONS_DIR).glob("*.yaml"))


def load_revocations(project: Project) -> dict[str, Revocation]:
    """Every recorded revocation by source; a malformed file or an unknown source names the file and field."""
    out: dict[str, Revocation] = {}
    for path in revocation_files(project):
        try:
            data = yaml.safe_load(path.read_text()) or {}
            rev = Revocation.model_validate(data)
        except yaml.YAMLError as e:
            raise ProjectError(f"{path}: not valid YAML: {e}") from e
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "<root>"
            raise ProjectError(f"{path}: field '{field}': {first['msg']}") from e
        if rev.source_id not in project.sources:
            raise ProjectError(f"{path}: field 'source_id': unknown source '{rev.source_id}'")
        if path.stem != rev.source_id:
            raise ProjectError(f"{path}: field 'source_id': '{rev.source_id}' does not match the file name")
        out[rev.source_id] = rev
    return out


def revocations_fingerprint(project: Project) -> str:
    return spec_hash({sid: r.model_dump(mode="json") for sid, r in sorted(load_revocations(project).items())})


def record_revocation(
    project: Project, source_id: str, reason: str, revoked_by: str | None = None
) -> tuple[Revocation, dict[str, Any]]:
    """Write ``revocations/<source>.yaml`` (atomically) and label the stored models trained on the source;
    returns the revocation and the source's :func:`~mixtrain.provenance.impact` (what is now stale)."""
    if source_id not in project.sources:
        hint = suggest(source_id, project.sources)
        raise ProjectError(f"unknown source '{source_id}'{hint} (sources: {', '.join(project.source_ids())})")
    rev = Revocation(
        source_id=source_id,
        reason=reason,
        revoked_by=revoked_by or getpass.getuser(),
        revoked_at=dt.datetime.now(dt.timezone.utc).replace(microsecond=0),
    )
    path = project.root / REVOCATIONS_DIR / f"{source_id}.yaml"
    write_atomic(UPath(path), yaml.safe_dump(rev.model_dump(mode="json"), sort_keys=False).encode())
    reached = impact(project.storage_root, source_id)
    label_models(project.storage_root, rev, reached["models"])
    return rev, reached


def label_models(root: str, rev: Revocation, models: list[dict[str, Any]]) -> None:
    """Add the revocation to every stored manifest file of each model in ``models`` (those trained on a mixture
    that used the source): its version history file, and the asset's current manifest while it is live."""
    label: dict[str, Any] = rev.model_dump(mode="json")
    for model in models:
        for file in model["files"]:
            path = UPath(file)
            manifest = read_json(path)
            marks = [m for m in manifest.get("trained_on_revoked", []) if m.get("source_id") != rev.source_id]
            manifest["trained_on_revoked"] = [*marks, label]
            write_atomic(path, json_bytes(manifest))
