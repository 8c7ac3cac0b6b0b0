"""Content fingerprints of what the user owns: source specs with their files, and config sections.

These become the data versions of the observable spec assets, so "stale" downstream means the bytes or the
config changed — touching a file's mtime or reformatting YAML changes nothing.
"""

from __future__ import annotations

import hashlib
import os

import fsspec

from mixassets.project import Project, spec_hash

_CHUNK = 1 << 20


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with fsspec.open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# Spec fields that decide how documents are gated or ranked, not what is read: they have their own
# fingerprints, so a threshold change regates a source without re-reading it (and without rerunning anything
# when the read is unchanged).
POLICY_FIELDS = frozenset({"gating", "pii_policy", "trust_tier"})


def _files_hash(h: hashlib._Hash, project: Project, paths: list[str]) -> str:
    for path in paths:
        rel = os.path.relpath(path, project.root) if "://" not in path else path
        h.update(f"\0{rel}\0{file_sha256(path)}".encode())
    return h.hexdigest()[:16]


def source_fingerprint(project: Project, source_id: str) -> str:
    """What raw_documents reads: the reading part of the spec and every file it names, by content."""
    reading = project.sources[source_id].model_dump(mode="json", exclude=set(POLICY_FIELDS))
    return _files_hash(hashlib.sha256(spec_hash(reading).encode()), project, project.source_paths(source_id))


def gating_fingerprint(project: Project, source_id: str) -> str:
    """What gated_documents decides with: the source's gating config and PII policy, the project's forbidden tags."""
    spec = project.sources[source_id]
    return spec_hash(
        {
            "gating": spec.gating.model_dump(mode="json"),
            "pii_policy": spec.pii_policy,
            "forbidden_license_tags": sorted(project.spec.forbidden_license_tags),
            "classifier": _model_dir_hash(spec.gating.safety.classifier_path),
        }
    )


def _model_dir_hash(path: str | None) -> str | None:
    """A retrained classifier in the same directory changes decisions, so its files are part of the policy."""
    if path is None or "://" in path or not os.path.isdir(path):
        return None
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            h.update(f"\0{os.path.relpath(full, path)}\0{file_sha256(full)}".encode())
    return h.hexdigest()[:16]


def review_fingerprint(project: Project, source_id: str) -> str:
    """The review sheets recorded for a source (``reviews/<source>/*.csv``), by content."""
    return _files_hash(hashlib.sha256(source_id.encode()), project, [str(p) for p in project.review_sheets(source_id)])
