"""Outputs that carry a content-hash data version, so Dagster's staleness follows content, not run times."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DataVersion,
    Output,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
)

from mixtrain.dagster_internals import DATA_VERSION_TAG
from mixtrain.identity import bytes_sha256, json_bytes
from mixtrain.metadata import rounded
from mixtrain.tables import PendingTable, StoredTable


def table_output(
    table: pa.Table | PendingTable | StoredTable,
    metadata: Mapping[str, Any] | None = None,
    *,
    name: str = "result",
) -> Output:
    """``name`` is the output (asset) name inside a multi-asset; plain assets keep the default. The data version
    is the hash of the table's manifest, known before the IO manager commits it (a ``pa.Table`` is encoded into
    parts in memory first; a stage that streamed its parts hands over the :class:`PendingTable`). The IO manager
    adds ``dagster/row_count`` and ``dagster/column_schema`` to every table it commits (:func:`table_metadata`)."""
    pending = PendingTable.of(table) if isinstance(table, pa.Table) else table
    md = rounded({"parts": len(pending.parts), **(metadata or {})})  # row count, column schema: the IO manager's
    return Output(pending, output_name=name, data_version=DataVersion(pending.version), metadata=md)


def table_metadata(rows: int, schema: pa.Schema) -> dict[str, Any]:
    """What the UI shows for any table asset: its row count (plotted over materializations) and columns."""
    return {"dagster/row_count": rows, "dagster/column_schema": column_schema(schema)}


def column_schema(schema: pa.Schema) -> TableSchema:
    """The arrow schema as Dagster's column schema (shown on the asset page): arrow types as names, a
    not-null field as a ``nullable=False`` constraint, and a field's ``doc`` metadata as its description."""
    columns = []
    for f in schema:
        doc = (f.metadata or {}).get(b"doc")
        columns.append(
            TableColumn(
                name=f.name,
                type=str(f.type),
                description=doc.decode() if doc else None,
                constraints=TableColumnConstraints(nullable=f.nullable),
            )
        )
    return TableSchema(columns=columns)


def json_output(obj: Any, version: str, metadata: Mapping[str, Any] | None = None, *, name: str = "result") -> Output:
    """A JSON-stored output; floats in ``metadata`` are rounded for the UI (:mod:`mixtrain.metadata`)."""
    return Output(obj, output_name=name, data_version=DataVersion(version[:16]), metadata=rounded(metadata or {}))


def current_data_version(instance: DagsterInstance, key: str | AssetKey, partition: str | None = None) -> str | None:
    """The data version of the latest materialization (or observation) of an asset partition."""
    asset_key = key if isinstance(key, AssetKey) else AssetKey(key)
    for is_source in (False, True):
        rec = instance.get_latest_data_version_record(asset_key, is_source=is_source, partition_key=partition)
        if rec is not None:
            event = rec.asset_materialization or rec.asset_observation
            version = (event.tags or {}).get(DATA_VERSION_TAG) if event is not None else None
            if version is not None:
                return version
    return None


TABLE_VERSION = "table_version"  # output metadata: the manifest hash of the table the IO manager committed
JSON_VERSION = "json_version"  # output metadata: the hash of the JSON bytes the IO manager wrote


# Keys added to a stored JSON object after it was materialized (a revocation labels the models it reached):
# annotations about the object, not part of it, so they do not change its version.
ANNOTATION_KEYS = ("trained_on_revoked",)


def json_version(obj: Any) -> str:
    """Version of a JSON-stored asset's content (its canonical bytes, annotations left out)."""
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k not in ANNOTATION_KEYS}
    return bytes_sha256(json_bytes(obj))[:16]


def recorded_version(
    instance: DagsterInstance, key: AssetKey, partition: str | None = None, meta: str = TABLE_VERSION
) -> str | None:
    """The version of what the latest materialization of an asset (partition) stored, as the IO manager
    recorded it under ``meta`` (whatever data version the asset reported); None when none was recorded."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition is not None else None), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get(meta)
    return getattr(value, "value", value) if value is not None else None


def recorded_table_version(instance: DagsterInstance, key: AssetKey, partition: str | None = None) -> str | None:
    return recorded_version(instance, key, partition, TABLE_VERSION)
