"""Every use of a Dagster internal module lives here, so an upgrade touches one file.

- the stale-status resolver the UI uses to say "unsynced" (``mixtrain status``), optionally fed spec versions
  observed in this process instead of the latest recorded observations;
- (de)serialising the automation cursor that ``mixtrain run`` keeps between invocations;
- the tag under which Dagster stores a materialization's or observation's data version;
- turning an observable source asset into the external ``AssetsDefinition`` Dagster builds from it anyway, and
  copying a ``Definitions`` with other assets (:mod:`mixtrain.conventions` maps kinds, owners and tags over them).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from dagster import AssetKey, AssetsDefinition, DagsterInstance, DataVersion, Definitions, SourceAsset
from dagster._core.definitions.data_version import DATA_VERSION_TAG

__all__ = [
    "DATA_VERSION_TAG",
    "AssetStatus",
    "as_assets_definition",
    "deserialize_cursor",
    "serialize_cursor",
    "stale_statuses",
    "with_assets",
]


def as_assets_definition(source_asset: SourceAsset) -> AssetsDefinition:
    """The external asset Dagster itself makes of an observable source asset when it builds the asset graph:
    the same observe function, partitions and tags, but with specs that ``map_asset_specs`` can edit."""
    from dagster._core.definitions.external_asset import create_external_asset_from_source_asset

    return create_external_asset_from_source_asset(source_asset)


def with_assets(defs: Definitions, assets: list) -> Definitions:
    """``defs`` with its assets replaced (jobs, sensors, schedules, checks and resources kept)."""
    from dagster._record import replace

    return replace(defs, assets=assets)


@dataclass(frozen=True)
class AssetStatus:
    key: str
    partition: str | None
    status: str  # MISSING | STALE | FRESH
    causes: tuple[str, ...]


def _resolver_class(observed: Mapping[tuple[AssetKey, str | None], DataVersion]):
    """Dagster's resolver, reading ``observed`` where it would read a spec's latest recorded observation.

    The answer is the one an observation run followed by the plain resolver gives: an unpartitioned spec's
    current version is its observed one; a partitioned spec's partition counts as updated when the observed
    version differs from the one recorded at or before the input a materialization read (Dagster compares the
    records after that input with the one at it; a fresh observation would be the newest record after it)."""
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, extract_data_version_from_entry

    class ObservedSpecsResolver(CachingStaleStatusResolver):
        def _get_current_data_version(self, *, key):
            found = observed.get((key.asset_key, key.partition_key))
            return found if found is not None else super()._get_current_data_version(key=key)

        def _is_dep_updated(self, provenance, dep_key) -> bool:
            current = observed.get((dep_key.asset_key, dep_key.partition_key))
            if current is None or dep_key.partition_key is None:
                return super()._is_dep_updated(provenance, dep_key)
            cursor = provenance.input_storage_ids[dep_key.asset_key]
            previous = self._instance.get_latest_data_version_record(
                dep_key.asset_key, True, dep_key.partition_key, before_cursor=cursor + 1 if cursor else None
            )
            before = extract_data_version_from_entry(previous.event_log_entry) if previous else None
            return self._data_versions_differ(before, current)

    return ObservedSpecsResolver


def stale_statuses(
    defs: Definitions,
    instance: DagsterInstance,
    partitions: dict[str, list[str]],
    observed: Mapping[tuple[AssetKey, str | None], DataVersion] | None = None,
    keys: Collection[AssetKey] | None = None,
) -> list[AssetStatus]:
    """Status of every materializable asset (per partition for partitioned ones), as the UI computes it; only of
    ``keys`` when given (the resolver works lazily, so asking about a few assets costs only what they need).

    ``observed`` (from :func:`mixtrain.observe.observe_in_process`) stands in for the specs' latest recorded
    observations, so a question about freshness needs no observation run."""
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._time import get_current_datetime

    graph = defs.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver_class = _resolver_class(observed) if observed else CachingStaleStatusResolver
    resolver = resolver_class(instance, graph, view)
    out = []
    wanted = graph.materializable_asset_keys if keys is None else set(keys) & graph.materializable_asset_keys
    for key in sorted(wanted, key=lambda k: k.to_user_string()):
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
