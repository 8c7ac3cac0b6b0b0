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


def source_fingerprint(project: Project, source_id: str) -> str:
    """Hash of the source spec and of every file it names (path relative to the project, content)."""
    h = hashlib.sha256(spec_hash(project.sources[source_id]).encode())
    for path in project.source_paths(source_id):
        rel = os.path.relpath(path, project.root) if "://" not in path else path
        h.update(f"\0{rel}\0{file_sha256(path)}".encode())
    return h.hexdigest()[:16]
