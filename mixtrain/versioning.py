"""Outputs that carry a content-hash data version, so Dagster's staleness follows content, not run times."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from dagster import AssetKey, DagsterInstance, DataVersion, Output

from mixtrain.dagster_internals import DATA_VERSION_TAG
from mixtrain.storage import EncodedTable, StagedTable


def table_output(
    table: pa.Table | EncodedTable | StagedTable, metadata: Mapping[str, Any] | None = None, *, name: str = "result"
) -> Output:
    """``name`` is the output (asset) name inside a multi-asset; plain assets keep the default. The table is
    encoded once (or was staged as a file): its checksum is the data version and the IO manager writes those
    same bytes."""
    encoded = table if isinstance(table, EncodedTable | StagedTable) else EncodedTable.of(table)
    rows = encoded.rows if isinstance(encoded, StagedTable) else encoded.table.num_rows
    md = {"rows": rows, "checksum": encoded.checksum, **(metadata or {})}
    return Output(encoded, output_name=name, data_version=DataVersion(encoded.checksum[:16]), metadata=md)


def json_output(obj: Any, version: str, metadata: Mapping[str, Any] | None = None, *, name: str = "result") -> Output:
    return Output(obj, output_name=name, data_version=DataVersion(version[:16]), metadata=dict(metadata or {}))


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
