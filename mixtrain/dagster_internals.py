"""Every use of a Dagster internal module lives here, so an upgrade touches one file.

- the stale-status resolver the UI uses to say "unsynced" (``mixtrain status``);
- (de)serialising the automation cursor that ``mixtrain run`` keeps between invocations;
- the tag under which Dagster stores a materialization's or observation's data version.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import DagsterInstance, Definitions
from dagster._core.definitions.data_version import DATA_VERSION_TAG

__all__ = ["DATA_VERSION_TAG", "AssetStatus", "deserialize_cursor", "serialize_cursor", "stale_statuses"]


@dataclass(frozen=True)
class AssetStatus:
    key: str
    partition: str | None
    status: str  # MISSING | STALE | FRESH
    causes: tuple[str, ...]


def stale_statuses(defs: Definitions, instance: DagsterInstance, partitions: dict[str, list[str]]) -> list[AssetStatus]:
    """Status of every materializable asset (per partition for partitioned ones), as the UI computes it."""
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._time import get_current_datetime

    graph = defs.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance, graph, view)
    out = []
    for key in sorted(graph.materializable_asset_keys, key=lambda k: k.to_user_string()):
        node = graph.get(key)
        keys: list[str | None] = [None]
        if node.partitions_def is not None:
            name = getattr(node.partitions_def, "name", None)
            keys = list(partitions.get(name or "", []))
        for pk in keys:
            status = resolver.get_status(key, pk)
            causes = tuple(
                f"{c.reason}: {c.dependency.asset_key.to_user_string() if c.dependency else ''}"
                + (f"[{c.dependency.partition_key}]" if c.dependency and c.dependency.partition_key else "")
                for c in resolver.get_stale_causes(key, pk)
            )
            out.append(AssetStatus(key.to_user_string(), pk, status.value, causes))
    return out


def serialize_cursor(cursor: object) -> str:
    from dagster._serdes import serialize_value

    return serialize_value(cursor)


def deserialize_cursor(text: str) -> object:
    from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor
    from dagster._serdes import deserialize_value

    return deserialize_value(text, AssetDaemonCursor)
