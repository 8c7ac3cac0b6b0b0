"""Resources: the user's project and the IO managers that put assets under its storage root."""

from __future__ import annotations

import json
from typing import Any, Literal

import pyarrow as pa
from dagster import ConfigurableIOManagerFactory, ConfigurableResource, InputContext, OutputContext, UPathIOManager
from upath import UPath

from mixtrain.compute import compute_resource
from mixtrain.project import Project, load_project
from mixtrain.storage import JSON_EXT, TABLE_EXT, json_bytes, write_atomic
from mixtrain.tables import PendingTable, StoredTable, open_table
from mixtrain.versioning import JSON_VERSION, TABLE_VERSION, json_version, recorded_version, table_metadata


class ProjectResource(ConfigurableResource):
    """The pipeline project directory; assets read their specs from it at run time."""

    project_dir: str

    def load(self) -> Project:
        return load_project(self.project_dir)


class _TableIOManager(UPathIOManager):
    """Tables under the v2 contract (:mod:`mixtrain.tables`). An input is checked against the data version
    Dagster recorded for it; an input annotated :class:`~mixtrain.tables.StoredTable` is handed over unread
    (the stage streams it), any other is read whole."""

    extension = TABLE_EXT

    def dump_to_path(self, context: OutputContext, obj: pa.Table | PendingTable | StoredTable, path: UPath) -> None:
        if isinstance(obj, StoredTable):
            if obj.location.path.rstrip("/") != path.path.rstrip("/"):
                raise TypeError(f"{context.asset_key.to_user_string()}: table committed at {obj.location}, not {path}")
            stored = obj
        elif isinstance(obj, PendingTable):
            stored = obj.commit(path)
        elif isinstance(obj, pa.Table):
            stored = PendingTable.of(obj).commit(path)
        else:
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a pyarrow.Table, got {type(obj)}")
        schema = obj.schema if isinstance(obj, PendingTable | pa.Table) else stored.schema
        context.add_output_metadata({TABLE_VERSION: stored.version, **table_metadata(stored.rows, schema)})

    def load_from_path(self, context: InputContext, path: UPath) -> pa.Table | StoredTable:
        stored = open_table(path, expected_version=_recorded_version(context, path))
        if getattr(context.dagster_type, "typing_type", None) is StoredTable:
            return stored
        return stored.read()


class StoredVersionError(RuntimeError):
    """A stored object differs from what Dagster recorded for it."""


def _recorded_version(context: InputContext, path: UPath, meta: str = TABLE_VERSION) -> str | None:
    """The data version Dagster recorded for the upstream asset (partition) at ``path``; None outside a run
    (a test's bare input context), where there is nothing to check against."""
    try:
        instance = context.instance
    except Exception:
        return None
    if not context.has_asset_key:
        return None
    partition = path.name if context.has_asset_partitions else None
    return recorded_version(instance, context.asset_key, partition, meta)


class _JsonIOManager(UPathIOManager):
    extension = JSON_EXT

    def dump_to_path(self, context: OutputContext, obj: Any, path: UPath) -> None:
        data = json_bytes(obj)
        write_atomic(path, data)
        context.add_output_metadata({JSON_VERSION: json_version(json.loads(data))})

    def load_from_path(self, context: InputContext, path: UPath) -> Any:
        obj = json.loads(path.read_bytes())
        expected = _recorded_version(context, path, JSON_VERSION)
        if expected is not None and json_version(obj) != expected:
            raise StoredVersionError(
                f"{context.asset_key.to_user_string()}: {path} is not the object Dagster recorded (version "
                f"{json_version(obj)}, recorded {expected}); a run died between writing and recording it, or it "
                f"was replaced by hand: `mixtrain run` rebuilds it"
            )
        return obj


class StorageIOManager(ConfigurableIOManagerFactory):
    """Tables as parquet, manifests as JSON, under ``<storage_root>/<asset key path>[/<partition>]``."""

    storage_root: str
    format: Literal["parquet", "json"] = "parquet"

    def create_io_manager(self, context: Any) -> UPathIOManager:
        cls = _TableIOManager if self.format == "parquet" else _JsonIOManager
        return cls(base_path=UPath(self.storage_root))


def project_resources(project_dir: str | None = None) -> dict[str, Any]:
    """Resources for a project; the project dir comes from the argument or ``$MIXTRAIN_PROJECT``."""
    project = load_project(project_dir)
    return {
        "project": ProjectResource(project_dir=str(project.root)),
        "io_manager": StorageIOManager(storage_root=project.storage_root, format="parquet"),
        "compute": compute_resource(project.spec.compute),
        "json_io_manager": StorageIOManager(storage_root=project.storage_root, format="json"),
    }
