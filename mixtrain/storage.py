"""Where assets live: ``<storage root>/<asset key path>[/<partition>]`` as parquet, JSON or a model directory.

Every write is atomic (write a sibling temp object, then move it over the final name) so a crashed run never
leaves a half-written table that a later run would read as valid. Parquet bytes are produced by one function,
so the checksum a stage records as its data version is the checksum of the file on disk.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from mixtrain.identity import bytes_sha256, file_sha256, json_bytes
from mixtrain.schema import PARQUET_OPTIONS

__all__ = ["PARQUET_OPTIONS", "file_sha256", "json_bytes"]

TABLE_EXT = ".parquet"
JSON_EXT = ".json"


def table_bytes(table: pa.Table, options: Mapping[str, Any] = PARQUET_OPTIONS) -> bytes:
    """Parquet bytes of a table, written the same way every time (same inputs → same bytes). ``options``
    is for a table whose columns want another encoding (the dedupe sketches' random hashes)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, **options)
    return buf.getvalue()


def table_checksum(table: pa.Table) -> str:
    return bytes_sha256(table_bytes(table))


@dataclass(frozen=True)
class EncodedTable:
    """A table with its parquet bytes and their checksum, so a stage encodes once: the checksum becomes the
    data version and the IO manager writes the very same bytes."""

    table: pa.Table
    data: bytes
    checksum: str

    @classmethod
    def of(cls, table: pa.Table, options: Mapping[str, Any] = PARQUET_OPTIONS) -> EncodedTable:
        data = table_bytes(table, options)
        return cls(table, data, bytes_sha256(data))


@dataclass(frozen=True)
class StagedTable:
    """A parquet file a stage has already written in full to a local staging path (too large to hold in memory
    as one table). The IO manager moves it over the asset's path, so the write stays atomic, and its checksum
    (of the file's bytes) is the data version, as for an :class:`EncodedTable`."""

    path: Path
    rows: int
    checksum: str

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> StagedTable:
        path = Path(path)
        return cls(path, pq.ParquetFile(path).metadata.num_rows, file_sha256(str(path)))


def staged_path(target: UPath, run_id: str) -> Path:
    """Where a run stages the file for ``target``: beside it when local (so the final move is a rename on one
    filesystem), else in a local temporary directory (the move is then an upload followed by a remote rename)."""
    if _is_local(target):
        folder = Path(target.path).parent / ".staging"
    else:
        folder = Path(tempfile.gettempdir()) / "mixtrain-staging"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{target.parent.name}.{target.name}.{run_id[:8]}"


def stage_batches(target: UPath, run_id: str, schema: pa.Schema, parts: Iterable[pa.Table]) -> StagedTable:
    """Write ``parts`` one after another into the staged file for ``target``, so memory holds one part rather
    than the whole table; a failure part-way removes the partial file."""
    staged = staged_path(target, run_id)
    try:
        with pq.ParquetWriter(staged, schema, **PARQUET_OPTIONS) as writer:
            for part in parts:
                writer.write_table(part)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return StagedTable.of(staged)


def publish_staged(staged: StagedTable, path: UPath) -> None:
    """Move a staged file over ``path`` atomically (see :func:`write_atomic`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_local(path):
        os.replace(staged.path, path.path)
        return
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.fs.put_file(str(staged.path), tmp.path)
    tmp.fs.mv(tmp.path, path.path)
    staged.path.unlink(missing_ok=True)


def write_atomic(path: UPath, data: bytes) -> None:
    """Write bytes so readers see either the old object or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with tmp.open("wb") as f:
        f.write(data)
    if _is_local(path):
        os.replace(tmp.path, path.path)
    else:
        tmp.fs.mv(tmp.path, path.path)


def read_table(path: UPath, *, memory_map: bool = False) -> pa.Table:
    """``memory_map`` (local files only; ignored elsewhere) decodes straight from the page cache instead of
    reading the file into buffers first: worth it for uncompressed columns read again and again."""
    if memory_map and _is_local(path):
        return pq.read_table(path.path, memory_map=True)
    with path.open("rb") as f:
        return pq.read_table(f)


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


def _is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def model_dir(root: str, key_path: list[str] | str, cache_root: str | os.PathLike[str]) -> Path:
    """Local directory for a model asset: under the storage root when it is local, else a local cache
    (transformers and peft read and write local directories only)."""
    parts = [key_path] if isinstance(key_path, str) else list(key_path)
    base = UPath(root)
    if _is_local(base):
        return Path(base.path).joinpath(*parts)
    return Path(cache_root).joinpath(*parts)


def publish_model_dir(local: Path, root: str, key_path: list[str] | str) -> str:
    """Copy a finished local model directory to a remote storage root; returns where it now lives."""
    parts = [key_path] if isinstance(key_path, str) else list(key_path)
    base = UPath(root)
    if _is_local(base):
        return str(local)
    dest = base.joinpath(*parts)
    dest.fs.put(str(local), dest.path, recursive=True)
    return str(dest)
