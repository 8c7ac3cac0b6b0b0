"""Storage written by mixtrain's first table contract (one ``<asset>[/<partition>].parquet`` file per table).

Why a module: the v2 contract (:mod:`mixtrain.tables`) never reads such files; this is where they are
recognised, so that a run refuses an old storage root up front (``runner.check_storage``) and a single read
says what it found, instead of failing later with "no manifest".
"""

from __future__ import annotations

from collections.abc import Iterable

from upath import UPath

from mixtrain.tables import MANIFEST_NAME, PART_PREFIX


def legacy_file(location: UPath) -> UPath:
    """Where the v1 contract kept the same table: one parquet file beside the directory."""
    return location.with_name(location.name + ".parquet")


def legacy_message(location: UPath) -> str:
    return (
        f"{legacy_file(location)} was written by mixtrain's storage contract v1 (one parquet file per table); "
        f"this version stores tables as directories committed by {MANIFEST_NAME}. Rebuild: move the storage "
        f"root aside (or delete it) and rerun; `mixtrain run` materializes everything again."
    )


def find_legacy_tables(root: str, names: Iterable[str], limit: int = 5) -> list[str]:
    """v1 table files of the table assets ``names`` under a storage root: ``<name>.parquet``, or a partition's
    ``<name>/<partition>.parquet`` (a v2 partition is a directory)."""
    base = UPath(root)
    found: list[str] = []
    for name in sorted(names):
        candidates = [base / f"{name}.parquet"]
        folder = base / name
        if folder.is_dir():
            candidates += sorted(p for p in folder.iterdir() if p.suffix == ".parquet" and not p.name.startswith("."))
        found += [str(p) for p in candidates if p.is_file() and not p.name.startswith(PART_PREFIX)]
        if len(found) >= limit:
            break
    return found[:limit]
