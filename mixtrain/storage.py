"""Where assets live: ``<storage root>/<asset key path>[/<partition>]`` as a table directory
(:mod:`mixtrain.tables`), a JSON object or a model directory.

Every write is atomic (a sibling temp file renamed over the name locally, one PUT on an object store) so a
crashed run never leaves a half-written object that a later run would read as valid.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from upath import UPath

from mixtrain.durable import put_object
from mixtrain.faults import kill_point
from mixtrain.identity import file_sha256, json_bytes
from mixtrain.schema import PARQUET_OPTIONS
from mixtrain.tables import is_local

__all__ = ["PARQUET_OPTIONS", "file_sha256", "json_bytes"]

TABLE_EXT = ""  # a table is a directory (mixtrain.tables), not a file
JSON_EXT = ".json"


def write_atomic(path: UPath, data: bytes) -> None:
    """Write bytes so readers see either the old object or the complete new one: a fsynced temp file renamed
    over the name on local disks (removed if anything fails), one PUT on an object store (which is atomic)."""
    put_object(path, data)
    kill_point("object.write", str(path))


def read_json(path: UPath) -> Any:
    with path.open("rb") as f:
        return json.load(f)


def asset_path(root: str, key_path: list[str] | str, partition: str | None = None, ext: str = TABLE_EXT) -> UPath:
    """The storage location of an asset (partition); the same rule the IO managers follow."""
    parts = [key_path] if isinstance(key_path, str) else list(key_path)
    p = UPath(root).joinpath(*parts)
    if partition is not None:
        p = p / partition
    return p.with_name(p.name + ext)


_is_local = is_local


def model_dir(root: str, key_path: list[str] | str, cache_root: str | os.PathLike[str]) -> Path:
    """Local directory for a model asset: under the storage root when it is local, else a local cache
    (transformers and peft read and write local directories only). Publishing it, versioned and behind a
    pointer, is :func:`mixtrain.model_store.publish_model`."""
    parts = [key_path] if isinstance(key_path, str) else list(key_path)
    base = UPath(root)
    if _is_local(base):
        return Path(base.path).joinpath(*parts)
    return Path(cache_root).joinpath(*parts)
