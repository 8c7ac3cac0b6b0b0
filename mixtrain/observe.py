"""The project's specs observed in this process, recording nothing: what ``mixtrain status`` compares against.

``mixtrain run`` observes through the ``refresh_specs`` jobs, so the fingerprints it acts on are in the event
log and the UI shows why an asset rebuilt. ``status`` only asks a question: launching those jobs made it slow
(two runs, each with its own process-level setup) and left two runs in the UI per call. Here the same observe
functions are called directly, with the code location's resources, and their answers are returned instead of
stored; :func:`mixtrain.dagster_internals.stale_statuses` then reads them in place of the latest observations.
"""

from __future__ import annotations

import inspect

from dagster import (
    AssetKey,
    DagsterInstance,
    DataVersion,
    DataVersionsByPartition,
    Definitions,
    ObserveResult,
    SourceAsset,
    build_op_context,
    build_resources,
)

# (spec asset, partition or None) -> the data version an observation would record now.
ObservedVersions = dict[tuple[AssetKey, str | None], DataVersion]


def observe_in_process(defs: Definitions, instance: DagsterInstance) -> ObservedVersions:
    """Every observable spec's current data version, per partition for partitioned ones, without a run.

    The context handed to an observe function is built in memory (``build_op_context``): it can read the
    instance (the per-source specs ask which source partitions exist) but nothing it does is recorded."""
    observed: ObservedVersions = {}
    resources = defs.resources or {}
    for asset in defs.assets or []:
        if not isinstance(asset, SourceAsset) or asset.observe_fn is None:
            continue
        params = list(inspect.signature(asset.observe_fn).parameters)
        needed = set(params) & set(asset.required_resource_keys)  # io_manager is required, never a parameter
        missing = sorted(needed - set(resources))
        if missing:
            raise ValueError(
                f"observing {asset.key.to_user_string()} needs resources {missing} the code location lacks"
            )
        with build_resources({k: resources[k] for k in needed}, instance=instance) as built:
            kwargs = {k: getattr(built, k) for k in needed}
            takes_context = bool(params) and params[0] not in needed
            context = (build_op_context(instance=instance),) if takes_context else ()
            value = asset.observe_fn(*context, **kwargs)
        if isinstance(value, ObserveResult):
            value = value.data_version
        if isinstance(value, DataVersion):
            observed[(asset.key, None)] = value
        elif isinstance(value, DataVersionsByPartition):
            for partition, version in value.data_versions_by_partition.items():
                observed[(asset.key, partition)] = version
        elif value is not None:
            raise TypeError(f"observing {asset.key.to_user_string()} returned {type(value).__name__}")
    return observed
