"""Storage contract v2: a table is a directory of parquet parts committed by a manifest written last.

Why: a stage that writes one big parquet file must hold or stage the whole table, and a reader must trust
whatever file is at the path. Here a writer streams parts of bounded size straight into the table's directory
under names that carry their content hash (``part-00003-<sha12>.parquet``), so a half-written table is only a
set of unlisted files. The commit is the single-object write of ``_manifest.json`` (atomic on local disks, S3
and GCS), which lists every part with its rows, bytes and sha256 plus the schema. The data version Dagster
records is the sha256 of the manifest bytes, so a reader that knows the recorded version verifies the manifest
it finds, then each part's bytes as it reads them.

Readers read only the listed parts: pyarrow datasets, DuckDB and polars read :attr:`StoredTable.part_uris`.
The manifest holds no clock or run id, so the same rows written the same way give the same version.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from upath import UPath

from mixtrain.durable import finish_temp, is_local, make_dirs, named_error, put_object, temp_name
from mixtrain.faults import kill_point
from mixtrain.identity import bytes_sha256, file_sha256, json_bytes
from mixtrain.schema import PARQUET_OPTIONS

FORMAT = "mixtrain.table/2"
MANIFEST_NAME = "_manifest.json"
PART_PREFIX = "part-"
# Rows per part: a part is the unit a reader verifies and a Ray task reads; ~2 KB documents make parts of
# ~130 MB of text (≈40 MB zstd), small enough to verify in one read, large enough to keep the part count low.
ROWS_PER_PART = 65_536
# Rows per row group, fixed so that a part's bytes (hence the data version) do not depend on how a stage
# batched its rows; also the most a writer buffers (~16 MB of ~2 KB documents).
ROW_GROUP_ROWS = 8_192


class TableError(RuntimeError):
    """A table at a location cannot be read as the contract says (missing, legacy, corrupt, not the version
    Dagster recorded). The message names the location and what to do."""


class MissingTableError(TableError, FileNotFoundError):
    """Nothing is committed at the location (no manifest): a caller may treat it as "not built yet"."""


class LegacyTableError(TableError):
    """The location holds a table of the v1 contract (one parquet file), which this version does not read."""


def _local(path: UPath) -> str:
    return path.path


def _schema_fields(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


@dataclass(frozen=True)
class Part:
    name: str
    rows: int
    bytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "bytes": self.bytes, "sha256": self.sha256}


def _part_name(index: int, sha256: str) -> str:
    return f"{PART_PREFIX}{index:05d}-{sha256[:12]}.parquet"


def manifest_bytes(schema: pa.Schema, parts: Sequence[Part], metadata: Mapping[str, Any] | None = None) -> bytes:
    """The commit record of a table; deterministic (sorted keys, no clock), so its hash is the data version."""
    return json_bytes(
        {
            "format": FORMAT,
            "rows": sum(p.rows for p in parts),
            "schema": _schema_fields(schema),
            "parts": [p.to_json() for p in parts],
            "metadata": dict(metadata or {}),
        }
    )


def version_of(manifest: bytes) -> str:
    return bytes_sha256(manifest)[:16]


@dataclass(frozen=True)
class PendingTable:
    """A table whose parts exist (on storage, or in memory for small tables) but whose manifest is not yet
    written: the stage knows its data version before the IO manager commits it."""

    schema: pa.Schema
    parts: tuple[Part, ...]
    manifest: bytes
    location: UPath | None = None  # where the parts were written; None while they are in memory
    payloads: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return version_of(self.manifest)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    @classmethod
    def of(
        cls,
        table: pa.Table,
        *,
        options: Mapping[str, Any] = PARQUET_OPTIONS,
        rows_per_part: int = ROWS_PER_PART,
        metadata: Mapping[str, Any] | None = None,
    ) -> PendingTable:
        """A small in-memory table encoded into parts in memory (written by :meth:`commit`)."""
        parts, payloads = [], {}
        offsets = range(0, max(table.num_rows, 1), rows_per_part)
        for index, start in enumerate(offsets):
            buf = io.BytesIO()
            with pq.ParquetWriter(buf, table.schema, **options) as writer:
                write_row_groups(writer, table.slice(start, rows_per_part))
            data = buf.getvalue()
            sha = hashlib.sha256(data).hexdigest()
            part = Part(_part_name(index, sha), min(rows_per_part, table.num_rows - start), len(data), sha)
            parts.append(part)
            payloads[part.name] = data
        return cls(table.schema, tuple(parts), manifest_bytes(table.schema, parts, metadata), None, payloads)

    def commit(self, location: UPath) -> StoredTable:
        """Write the parts still in memory, then the manifest (the commit), then remove the parts of the
        version this one replaces."""
        if self.location is not None and self.location.path.rstrip("/") != location.path.rstrip("/"):
            raise TableError(f"parts were written under {self.location} but the table is committed at {location}")
        previous = _previous_parts(location)
        location.mkdir(parents=True, exist_ok=True)
        for name, data in self.payloads.items():
            put_object(location / name, data)
            kill_point("table.part", str(location))
        _check_parts_present(location, self.parts)  # never commit a manifest that lists a missing part
        put_object(location / MANIFEST_NAME, self.manifest)
        kill_point("table.commit", str(location))
        stored = StoredTable(location, json.loads(self.manifest), self.version)
        listed = {p.name for p in self.parts}
        for name in previous - listed:  # the replaced version's parts; never an in-flight writer's unlisted ones
            (location / name).unlink(missing_ok=True)
        return stored


def write_row_groups(writer: pq.ParquetWriter, table: pa.Table) -> None:
    """``table`` as row groups of :data:`ROW_GROUP_ROWS` rows, each made one chunk first: the writer's encoding
    choices (dictionary or plain) follow the chunks it is given, so a part's bytes, hence the data version,
    would otherwise depend on how the stage happened to batch its rows."""
    for start in range(0, table.num_rows, ROW_GROUP_ROWS):
        writer.write_table(table.slice(start, ROW_GROUP_ROWS).combine_chunks())


def _check_parts_present(location: UPath, parts: Sequence[Part]) -> None:
    """Every part the manifest will list is there with its size: a part removed by another writer's sweep or
    abort (same content, same name) fails this commit instead of leaving a manifest that cannot be read."""
    for part in parts:
        path = location / part.name
        try:
            size = path.fs.size(path.path)
        except FileNotFoundError:
            size = None
        if size != part.bytes:
            raise TableError(
                f"{path}: part to commit is missing or changed ({size} bytes, expected {part.bytes}); another run "
                f"replaced this table while it was written: run again"
            )


def _previous_parts(location: UPath) -> set[str]:
    try:
        old = json.loads((location / MANIFEST_NAME).read_bytes())
        return {p["name"] for p in old.get("parts", [])}
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return set()


class TableWriter:
    """Streams batches into parts of ``rows_per_part`` rows under ``location``; :meth:`finish` returns the
    :class:`PendingTable` the IO manager commits. Part boundaries fall every ``rows_per_part`` rows whatever the
    batch sizes. Used as a context manager, an error removes the parts written so far."""

    def __init__(
        self,
        location: UPath | str | os.PathLike[str],
        schema: pa.Schema,
        *,
        rows_per_part: int = ROWS_PER_PART,
        options: Mapping[str, Any] = PARQUET_OPTIONS,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.location = location if isinstance(location, UPath) else UPath(str(location))
        self.schema = schema
        self.rows_per_part = rows_per_part
        self.options = dict(options)
        self.metadata = dict(metadata or {})
        self._parts: list[Part] = []
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._rows_in_part = 0
        self._buffer: list[pa.Table] = []  # rows of the part not yet written: less than one row group
        self._created: set[str] = set()  # parts this writer put there (an abort removes only these)
        self._buffered = 0
        self._finished = False
        if is_local(self.location):
            make_dirs(Path(_local(self.location)))

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()

    def _open_part(self) -> None:
        if is_local(self.location):
            folder = Path(_local(self.location))
        else:
            folder = Path(tempfile.gettempdir()) / "mixtrain-parts"
            folder.mkdir(parents=True, exist_ok=True)
        self._tmp = folder / temp_name(f"{PART_PREFIX}{len(self._parts):05d}")
        try:
            self._writer = pq.ParquetWriter(str(self._tmp), self.schema, **self.options)
        except OSError as e:
            self._tmp.unlink(missing_ok=True)
            raise named_error(e, self._tmp) from e
        self._rows_in_part = 0

    def _flush(self, everything: bool) -> None:
        """Write whole row groups from the buffer (and the remainder too when ``everything``)."""
        if not self._buffer:
            return
        assert self._writer is not None
        rows = pa.concat_tables(self._buffer)
        whole = rows.num_rows if everything else rows.num_rows - rows.num_rows % ROW_GROUP_ROWS
        if whole:
            write_row_groups(self._writer, rows.slice(0, whole))
        rest = rows.slice(whole)
        self._buffer, self._buffered = ([rest], rest.num_rows) if rest.num_rows else ([], 0)

    def _close_part(self) -> None:
        assert self._writer is not None and self._tmp is not None
        tmp = self._tmp
        try:
            self._flush(everything=True)
            self._writer.close()
        except OSError as e:
            raise named_error(e, tmp) from e
        self._writer = None
        self._tmp = None
        sha = file_sha256(str(tmp))
        part = Part(_part_name(len(self._parts), sha), self._rows_in_part, tmp.stat().st_size, sha)
        target = self.location / part.name
        try:
            if target.exists() and target.fs.size(target.path) == part.bytes:
                pass  # content-addressed: the same bytes are already there (a rerun, or another writer's)
            elif is_local(self.location):
                finish_temp(tmp, Path(_local(target)))
                self._created.add(part.name)
            else:
                try:
                    target.fs.put_file(str(tmp), target.path)
                except OSError as e:
                    raise named_error(e, target) from e
                self._created.add(part.name)
        finally:
            tmp.unlink(missing_ok=True)
        self._parts.append(part)
        kill_point("table.part", str(self.location))

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        if self._finished:
            raise TableError(f"{self.location}: write after finish()")
        table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        if not table.schema.equals(self.schema):
            table = table.select(self.schema.names).cast(self.schema)
        start = 0
        while start < table.num_rows:
            if self._writer is None:
                self._open_part()
            take = min(self.rows_per_part - self._rows_in_part, table.num_rows - start)
            self._buffer.append(table.slice(start, take))
            self._buffered += take
            if self._buffered >= ROW_GROUP_ROWS:
                try:
                    self._flush(everything=False)
                except OSError as e:
                    raise named_error(e, self._tmp or self.location) from e
            self._rows_in_part += take
            start += take
            if self._rows_in_part >= self.rows_per_part:
                self._close_part()

    def write_all(self, batches: Iterable[pa.Table | pa.RecordBatch]) -> PendingTable:
        with self:
            for batch in batches:
                self.write(batch)
            return self.finish()

    def finish(self) -> PendingTable:
        if self._writer is None and not self._parts:
            self._open_part()  # an empty table still has one part: it carries the schema
        if self._writer is not None:
            self._close_part()
        self._finished = True
        parts = tuple(self._parts)
        return PendingTable(self.schema, parts, manifest_bytes(self.schema, parts, self.metadata), self.location)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
        self._buffer, self._buffered = [], 0
        keep = _previous_parts(self.location)  # a part identical to a committed one is not ours to remove
        for part in self._parts:
            if part.name in self._created and part.name not in keep:
                (self.location / part.name).unlink(missing_ok=True)
        self._parts.clear()
        self._finished = True


@dataclass(frozen=True)
class StoredTable:
    """A committed table: what its manifest lists, read part by part with each part's sha256 checked."""

    location: UPath
    manifest: Mapping[str, Any]
    version: str

    @property
    def rows(self) -> int:
        return int(self.manifest["rows"])

    @property
    def parts(self) -> list[Part]:
        return [Part(**p) for p in self.manifest["parts"]]

    @property
    def part_paths(self) -> list[UPath]:
        return [self.location / p.name for p in self.parts]

    @property
    def part_uris(self) -> list[str]:
        """Locations for other engines (pyarrow/Ray/DuckDB/polars): plain paths locally, URLs elsewhere."""
        return [_local(p) if is_local(p) else str(p) for p in self.part_paths]

    @property
    def part_refs(self) -> list[tuple[str, str, int]]:
        """``(uri, sha256, rows)`` of each part: what a distributed reader needs to check a part before use."""
        return [(uri, p.sha256, p.rows) for uri, p in zip(self.part_uris, self.parts, strict=True)]

    @property
    def schema(self) -> pa.Schema:
        with self.part_paths[0].open("rb") as f:
            return pq.read_schema(f)

    def _checked(self, part: Part) -> pa.NativeFile | str:
        """A source for one part after its bytes matched the manifest: a local path (hashed by streaming,
        then read again from the page cache) or the part's bytes held in memory (one part at a time)."""
        path = self.location / part.name
        try:
            if is_local(path):
                sha = file_sha256(_local(path))
                source: pa.NativeFile | str = _local(path)
            else:
                data = path.read_bytes()
                sha = hashlib.sha256(data).hexdigest()
                source = pa.BufferReader(data)
        except FileNotFoundError as exc:
            raise TableError(
                f"{path}: part listed in the manifest is missing (the table was replaced or damaged while it was "
                f"read); rematerialize the asset"
            ) from exc
        if sha != part.sha256:
            raise TableError(f"{path}: sha256 {sha[:12]} does not match the manifest ({part.sha256[:12]}): corrupt")
        return source

    def read(
        self,
        columns: Sequence[str] | None = None,
        filter: Any = None,
        *,
        memory_map: bool = False,
    ) -> pa.Table:
        """The whole table (or the columns / rows asked for). ``memory_map`` decodes local parts straight from
        the page cache: worth it for uncompressed columns read again and again."""
        tables = []
        for part in self.parts:
            source = self._checked(part)
            mm = memory_map and isinstance(source, str)
            tables.append(pq.read_table(source, columns=columns, filters=filter, memory_map=mm))
        schema = tables[0].schema
        return pa.concat_tables([t.cast(schema) if not t.schema.equals(schema) else t for t in tables])

    def batches(
        self,
        columns: Sequence[str] | None = None,
        batch_size: int = 16_384,
        *,
        parts: Iterable[int] | None = None,
        buffer_size: int = 0,
    ) -> Iterator[pa.RecordBatch]:
        """Record batches in table order, holding one row group at a time (no pre-buffering, no read threads:
        both keep memory that a long pass would accumulate).

        ``parts`` (indexes into :attr:`parts`, ascending) reads only those parts, for a pass that needs a few
        rows. ``buffer_size`` > 0 reads each column chunk through a buffer of that many bytes rather than whole
        (pyarrow's read buffering), so memory holds about one batch instead of one row group's column chunks:
        what a pass over long texts wants, since a row group has a fixed number of rows whatever their size."""
        listed = self.parts
        for index in range(len(listed)) if parts is None else parts:
            source = self._checked(listed[index])
            pf = pq.ParquetFile(source, pre_buffer=False, buffer_size=buffer_size)
            try:
                yield from pf.iter_batches(batch_size=batch_size, columns=columns, use_threads=False)
            finally:
                pf.close()

    def dataset(self) -> ds.Dataset:
        """A pyarrow dataset over exactly the listed parts (no verification: for engines that scan)."""
        if is_local(self.location):
            return ds.dataset(self.part_uris, format="parquet")
        fs = self.location.fs
        return ds.dataset([p.path for p in self.part_paths], format="parquet", filesystem=_arrow_fs(fs))

    def verify(self) -> None:
        for part in self.parts:
            self._checked(part)


def _arrow_fs(fs: Any) -> Any:
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return PyFileSystem(FSSpecHandler(fs))


def open_table(
    location: UPath | str | os.PathLike[str], expected_version: str | None = None, *, recorded_by: str = "Dagster"
) -> StoredTable:
    """The committed table at ``location``; with ``expected_version`` (the data version Dagster recorded, or
    ``recorded_by`` another record), a manifest that does not hash to it is an error rather than a silent read
    of other data."""
    location = location if isinstance(location, UPath) else UPath(str(location))
    try:
        data = (location / MANIFEST_NAME).read_bytes()
    except FileNotFoundError:
        from mixtrain.legacy_storage import legacy_file, legacy_message

        if legacy_file(location).exists():
            raise LegacyTableError(legacy_message(location)) from None
        raise MissingTableError(f"{location}: no committed table here ({MANIFEST_NAME} is missing)") from None
    version = version_of(data)
    if expected_version is not None and version != expected_version[:16]:
        raise TableError(
            f"{location}: storage holds version {version}, but {recorded_by} recorded {expected_version[:16]} (another "
            f"run replaced the table, or it was edited by hand); rematerialize "
            f"{'the asset' if recorded_by == 'Dagster' else recorded_by}"
        )
    try:
        manifest = json.loads(data)
        if manifest.get("format") != FORMAT or not manifest.get("parts"):
            raise ValueError(f"format {manifest.get('format')!r}")
    except ValueError as exc:
        raise TableError(f"{location / MANIFEST_NAME}: not a {FORMAT} manifest ({exc})") from exc
    return StoredTable(location, manifest, version)
