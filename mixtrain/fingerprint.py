"""Content fingerprints of what the user owns: source specs with their files, and config sections.

These become the data versions of the observable spec assets, so "stale" downstream means the bytes or the
config changed — touching a file's mtime or reformatting YAML changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import time

from mixtrain.config.plugins import plugin_fingerprint
from mixtrain.identity import relative_path, spec_hash
from mixtrain.project import Project
from mixtrain.storage import file_sha256

# Spec fields that decide how documents are gated or ranked, not what is read: they have their own
# fingerprints, so a threshold change regates a source without re-reading it (and without rerunning anything
# when the read is unchanged).
POLICY_FIELDS = frozenset({"gating", "pii_policy", "trust_tier"})


# A local file's sha256 by path, with the (size, mtime_ns, inode) it had when hashed. The spec observation sensor
# fingerprints every source file every few seconds in one long-lived process; like git's index, it rehashes a file
# only when its stat changed.
_HASHED: dict[str, tuple[tuple[int, int, int], str]] = {}
RACY_S = 2.0  # a file modified this recently may change again within the clock's resolution: not cached


def _content_sha256(path: str) -> str:
    if "://" in path:
        return file_sha256(path)
    st = os.stat(path)
    key = (st.st_size, st.st_mtime_ns, st.st_ino)
    hit = _HASHED.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    sha = file_sha256(path)
    if time.time() - st.st_mtime_ns / 1e9 > RACY_S:
        _HASHED[path] = (key, sha)
    return sha


def _files_hash(h: hashlib._Hash, base: str, paths: list[str]) -> str:
    """Names (relative to ``base``, so a moved checkout keeps its fingerprints) and contents of ``paths``."""
    for path in paths:
        h.update(f"\0{relative_path(path, base)}\0{_content_sha256(path)}".encode())
    return h.hexdigest()[:16]


def source_fingerprint(project: Project, source_id: str) -> str:
    """What raw_documents reads: the reading part of the spec and every file it names, by content."""
    reading = project.sources[source_id].model_dump(mode="json", exclude=set(POLICY_FIELDS))
    return _files_hash(hashlib.sha256(spec_hash(reading).encode()), str(project.root), project.source_paths(source_id))


def gating_fingerprint(project: Project, source_id: str) -> str:
    """What gated_documents decides with: the source's gating config and PII policy, the project's forbidden tags,
    and the code of the source's own rules (``gating.extra_rules``), so editing one regates the source."""
    spec = project.sources[source_id]
    gating = spec.gating.model_dump(mode="json")
    classifier = gating["safety"]["classifier_path"]
    if classifier is not None:  # loading made it absolute; hash it as the project names it, so a move regates nothing
        gating["safety"]["classifier_path"] = relative_path(classifier, str(project.root))
    extra_rules = gating.pop("extra_rules")  # hashed below with their code; when empty left out entirely, so a
    policy = {  # project without plugin rules keeps the fingerprints it had
        "gating": gating,
        "pii_policy": spec.pii_policy,
        "forbidden_license_tags": sorted(project.spec.forbidden_license_tags),
        "classifier": _model_dir_hash(spec.gating.safety.classifier_path),
    }
    if extra_rules:
        policy["extra_rules"] = [plugin_fingerprint(p) for p in extra_rules]
    return spec_hash(policy)


def _model_dir_hash(path: str | None) -> str | None:
    """A retrained classifier in the same directory changes decisions, so its files are part of the policy."""
    if path is None or "://" in path or not os.path.isdir(path):
        return None
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
    return _files_hash(hashlib.sha256(), path, files)


def review_fingerprint(project: Project, source_id: str) -> str:
    """The review sheets recorded for a source (``reviews/<source>/*.csv``), by content."""
    sheets = [str(p) for p in project.review_sheets(source_id)]
    return _files_hash(hashlib.sha256(source_id.encode()), str(project.root), sheets)


# The per-source specs, by the observable asset that carries each fingerprint (specs and the sensor read this).
PER_SOURCE_FINGERPRINTS = {
    "source_spec": source_fingerprint,
    "gating_policy": gating_fingerprint,
    "review_sheets": review_fingerprint,
}
