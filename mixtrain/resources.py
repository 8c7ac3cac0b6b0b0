"""Resources: the user's project and the IO managers that put assets under its storage root."""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa
from dagster import ConfigurableIOManagerFactory, ConfigurableResource, InputContext, OutputContext, UPathIOManager
from upath import UPath

from mixtrain.project import Project, load_project
from mixtrain.storage import (
    JSON_EXT,
    TABLE_EXT,
    EncodedTable,
    StagedTable,
    json_bytes,
    publish_staged,
    read_json,
    read_table,
    table_bytes,
    write_atomic,
)


class ProjectResource(ConfigurableResource):
    """The pipeline project directory; assets read their specs from it at run time."""

    project_dir: str

    def load(self) -> Project:
        return load_project(self.project_dir)


class _TableIOManager(UPathIOManager):
    extension = TABLE_EXT

    def dump_to_path(self, context: OutputContext, obj: pa.Table | EncodedTable | StagedTable, path: UPath) -> None:
        if isinstance(obj, StagedTable):
            publish_staged(obj, path)
        elif isinstance(obj, EncodedTable):
            write_atomic(path, obj.data)
        elif isinstance(obj, pa.Table):
            write_atomic(path, table_bytes(obj))
        else:
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a pyarrow.Table, got {type(obj)}")

    def load_from_path(self, context: InputContext, path: UPath) -> pa.Table:
        return read_table(path)


class _JsonIOManager(UPathIOManager):
    extension = JSON_EXT

    def dump_to_path(self, context: OutputContext, obj: Any, path: UPath) -> None:
        write_atomic(path, json_bytes(obj))

    def load_from_path(self, context: InputContext, path: UPath) -> Any:
        return read_json(path)


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
        "json_io_manager": StorageIOManager(storage_root=project.storage_root, format="json"),
    }
