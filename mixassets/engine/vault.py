"""The quarantine vault: the one place the clear bytes of a record that could not be read are kept.

A line that fails to parse is still a record of the source, and it may be exactly the line that leaks a key or an
address (a half-written export, a log line pasted into a dataset). Everything people read, copy and keep about such
a record (raw_rejects, the quarantine, decision logs, review sheets, provenance) shows it redacted
(:mod:`mixassets.engine.redaction`) and describes its bytes by length and sha256; the clear line and bytes go here,
one row per raw_rejects row with the same doc_id, so whoever is allowed to look can still find what the locator
points at without re-reading the source.

Access. On a local storage root the vault directories are created ``0o700`` before anything is written into them
and every file in them is set ``0o600``: only the account that runs the pipeline can list or read them. An object
store has no modes: its bucket policy must restrict the ``vault/`` prefix of the storage root (see README). Documents
held by the gate (rather than by the reader) are not copied here: their clear text is the ingested copy of the
source, ``raw_documents``, which is as sensitive as the source and marked so.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow as pa
from upath import UPath

from mixassets.engine.redaction import preview_bytes, redact_view, redact_views
from mixtrain.schema import QUARANTINE_SCHEMA, READ_FAILURE_SCHEMA, VAULT_SCHEMA
from mixtrain.tables import PendingTable, StoredTable, is_local

VAULT_PREFIX = "vault"  # top-level folder of the storage root that only its owner may read
VAULT_KEY = [VAULT_PREFIX, "raw_rejects"]  # asset key path of the clear twin of raw_rejects
DIR_MODE = 0o700
FILE_MODE = 0o600


def seal_read_failures(bad: pa.Table) -> tuple[pa.Table, pa.Table]:
    """A reader's unreadable records (``READ_FAILURE_SCHEMA``, clear) as the raw_rejects view
    (``QUARANTINE_SCHEMA``: redacted text or preview, byte length and sha256, redacted reason) and the vault rows
    (``VAULT_SCHEMA``, clear), row for row."""
    bad = bad.select(READ_FAILURE_SCHEMA.names).cast(READ_FAILURE_SCHEMA)
    texts: list[str | None] = bad.column("text").to_pylist()
    raws: list[bytes | None] = bad.column("raw").to_pylist()
    reasons: list[str] = bad.column("reason").to_pylist()
    digests = [None if r is None else hashlib.sha256(r).hexdigest() for r in raws]
    shown = [redact_view(t) if t is not None else preview_bytes(r) for t, r in zip(texts, raws, strict=True)]
    common = {n: bad.column(n) for n in ("doc_id", "source_id", "locator", "disposition", "rule_id")}
    view = pa.table(
        {
            **common,
            "reason": pa.array(redact_views(reasons), pa.string()),
            "text": pa.array(shown, pa.string()),
            "raw_bytes": pa.array([None if r is None else len(r) for r in raws], pa.int64()),
            "raw_sha256": pa.array(digests, pa.string()),
        },
        schema=QUARANTINE_SCHEMA,
    )
    sealed = pa.table(
        {
            **{n: common[n] for n in ("doc_id", "source_id", "locator", "rule_id")},
            "reason": bad.column("reason"),
            "text": bad.column("text"),
            "raw": bad.column("raw"),
            "raw_sha256": pa.array(digests, pa.string()),
        },
        schema=VAULT_SCHEMA,
    )
    return view, sealed


def vault_location(root: str, source_id: str) -> UPath:
    """Where a source's vault rows are committed: ``<root>/vault/raw_rejects/<source_id>`` (the IO manager's rule
    for the asset key :data:`VAULT_KEY`)."""
    return UPath(root).joinpath(*VAULT_KEY, source_id)


def _owner_only_dirs(root: str, location: UPath) -> None:
    """Create ``vault/`` and every folder below it down to ``location`` as ``0o700`` (and tighten them if they
    exist), so a file is never readable by others even for the moment before its own mode is set."""
    top = Path(UPath(root).path) / VAULT_PREFIX
    target = Path(location.path)
    top.parent.mkdir(parents=True, exist_ok=True)
    for folder in [top, *reversed([p for p in target.parents if top in p.parents]), target]:
        folder.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(folder, DIR_MODE)


def restrict(root: str) -> None:
    """Set every folder under the local vault to ``0o700`` and every file to ``0o600`` (a no-op off local disk)."""
    base = UPath(root)
    if not is_local(base):
        return
    top = Path(base.path) / VAULT_PREFIX
    if not top.exists():
        return
    os.chmod(top, DIR_MODE)
    for folder, dirs, files in os.walk(top):
        for d in dirs:
            os.chmod(os.path.join(folder, d), DIR_MODE)
        for f in files:
            os.chmod(os.path.join(folder, f), FILE_MODE)


def write_vault(root: str, source_id: str, sealed: pa.Table) -> StoredTable:
    """Commit a source's vault rows (``VAULT_SCHEMA``) owner-only and return the committed table, which the IO
    manager then only records. Encoded in memory, not streamed through local temporary parts, so on an object
    store no clear byte touches a shared temporary folder; the rows are the source's unreadable records only."""
    location = vault_location(root, source_id)
    if is_local(location):
        _owner_only_dirs(root, location)
    stored = PendingTable.of(sealed.select(VAULT_SCHEMA.names).cast(VAULT_SCHEMA)).commit(location)
    restrict(root)
    return stored


def access_note(root: str) -> str:
    """What protects the vault of this storage root, for the asset's metadata."""
    if is_local(UPath(root)):
        return f"owner only: folders {DIR_MODE:#o}, files {FILE_MODE:#o}"
    return f"object store: the bucket policy must restrict the '{VAULT_PREFIX}/' prefix of {root}"
