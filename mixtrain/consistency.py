"""Stored objects whose content is not what Dagster recorded for them.

A run killed between committing a table and Dagster recording the materialization (or a table replaced by
hand) leaves the event log naming one version while storage holds another. Dagster's staleness cannot see it:
its inputs and code did not change. Loading such an input fails loudly (the IO manager checks); this module
finds every such asset up front, so ``mixtrain status`` can say INCONSISTENT and ``mixtrain run`` can rebuild it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from dagster import AssetKey, DagsterInstance, Definitions
from upath import UPath

from mixtrain.storage import JSON_EXT, TABLE_EXT, asset_path
from mixtrain.tables import MANIFEST_NAME, version_of
from mixtrain.versioning import JSON_VERSION, TABLE_VERSION, json_version, recorded_version

TABLE_IO = "io_manager"
JSON_IO = "json_io_manager"


@dataclass(frozen=True)
class Inconsistency:
    key: AssetKey
    partition: str | None
    recorded: str
    stored: str | None  # None: nothing stored where the recorded materialization put it

    def describe(self) -> str:
        name = self.key.to_user_string() + (f"[{self.partition}]" if self.partition else "")
        found = f"holds version {self.stored}" if self.stored else "holds nothing"
        return f"{name}: storage {found}, Dagster recorded {self.recorded}"


def stored_table_version(path: UPath) -> str | None:
    try:
        return version_of((path / MANIFEST_NAME).read_bytes())
    except FileNotFoundError:
        return None


def stored_json_version(path: UPath) -> str | None:
    try:
        return json_version(json.loads(path.read_bytes()))
    except FileNotFoundError:
        return None
    except ValueError:
        return "unreadable"


def inconsistencies(
    defs: Definitions, instance: DagsterInstance, storage_root: str, partitions: Mapping[str, list[str]]
) -> list[Inconsistency]:
    """Every stored asset (partition) whose stored version differs from the one its latest materialization
    recorded; assets never materialized, or recorded before versions were, are not judged."""
    graph = defs.resolve_asset_graph()
    found = []
    for assets_def in defs.assets or []:
        for key in getattr(assets_def, "keys", ()):
            io = assets_def.get_io_manager_key_for_asset_key(key)
            if io not in (TABLE_IO, JSON_IO):
                continue
            definition = graph.get(key).partitions_def
            keys: list[str | None] = [None]
            if definition is not None:
                keys = list(partitions.get(getattr(definition, "name", None) or "", []))
            meta = TABLE_VERSION if io == TABLE_IO else JSON_VERSION
            for pk in keys:
                recorded = recorded_version(instance, key, pk, meta)
                if recorded is None:
                    continue
                if io == TABLE_IO:
                    stored = stored_table_version(asset_path(storage_root, key.path, pk, TABLE_EXT))
                else:
                    stored = stored_json_version(asset_path(storage_root, key.path, pk, JSON_EXT))
                if stored != recorded:
                    found.append(Inconsistency(key, pk, recorded, stored))
    return found
