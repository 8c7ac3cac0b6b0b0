"""The project's specs observed in this process, recording nothing: what ``mixtrain status`` compares against.

``mixtrain run`` observes through the ``refresh_specs`` jobs, so the fingerprints it acts on are in the event
log and the UI shows why an asset rebuilt. ``status`` only asks a question: launching those jobs made it slow
(two runs, each with its own process-level setup) and left two runs in the UI per call. Here the same observe
functions are called directly, with the code location's resources, and their answers are returned instead of
stored; :func:`mixtrain.dagster_internals.stale_statuses` then reads them in place of the latest observations.
"""

from __future__ import annotations

from dagster import (
    AssetKey,
    AssetObservation,
    AssetsDefinition,
    DagsterInstance,
    DataVersion,
    Definitions,
    SourceAsset,
    build_op_context,
)

from mixtrain.dagster_internals import DATA_VERSION_TAG, as_assets_definition

# (spec asset, partition or None) -> the data version an observation would record now.
ObservedVersions = dict[tuple[AssetKey, str | None], DataVersion]


def _observable(asset: object) -> AssetsDefinition | None:
    """The executable observation of a spec, whichever form the code location holds it in: a package declares
    an ``observable_source_asset``; :mod:`mixtrain.conventions` hands Dagster the external asset made of it."""
    if isinstance(asset, SourceAsset):
        return as_assets_definition(asset) if asset.observe_fn is not None else None
    if isinstance(asset, AssetsDefinition) and asset.is_observable and asset.is_executable:
        return asset
    return None


def observe_in_process(defs: Definitions, instance: DagsterInstance) -> ObservedVersions:
    """Every observable spec's current data version, per partition for partitioned ones, without a run.

    Each observation is invoked directly, with a context built in memory (``build_op_context``) that holds the
    code location's resources and can read the instance (the per-source specs ask which source partitions
    exist); the observations it logs are collected from that context, and nothing is recorded."""
    observed: ObservedVersions = {}
    resources = defs.resources or {}
    for asset in defs.assets or []:
        observable = _observable(asset)
        if observable is None:
            continue
        name = observable.key.to_user_string()
        needed = set(observable.required_resource_keys) - {"io_manager"}
        missing = sorted(needed - set(resources))
        if missing:
            raise ValueError(f"observing {name} needs resources {missing} the code location lacks")
        context = build_op_context(resources={k: resources[k] for k in needed}, instance=instance)
        observable(context)
        for event in context.get_events():
            if not isinstance(event, AssetObservation) or event.asset_key != observable.key:
                raise TypeError(f"observing {name} logged {type(event).__name__}, not an observation of {name}")
            version = event.tags.get(DATA_VERSION_TAG)
            if version is not None:
                observed[(observable.key, event.partition)] = DataVersion(version)
    return observed
