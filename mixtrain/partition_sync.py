"""Partition staleness where Dagster's UI cannot show it: a ``partitions_in_sync`` check per partitioned asset.

The UI's "unsynced" tag comes from the same stale resolver as ``mixtrain status``, but it asks about an asset as a
whole, and for a partitioned asset without a partition key the resolver answers FRESH by construction. So a
``task_adapter`` partition whose spec changed is green in the lineage view while ``mixtrain status`` lists it. This
module asks the resolver per partition and reports the answer as an asset check (WARN, never blocking): the
spec observation sensor records it whenever the answer changes, and running the check from the UI asks again.
"""

# No `from __future__ import annotations`: Dagster reads the check function's context annotation at definition.
from collections.abc import Collection, Iterator, Mapping

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    DagsterInstance,
    DataVersion,
    Definitions,
    DynamicPartitionsDefinition,
    MetadataValue,
    multi_asset_check,
)

from mixtrain.dagster_internals import stale_statuses
from mixtrain.markdown import markdown_table

CHECK_NAME = "partitions_in_sync"

# asset key -> [(partition, status, causes)] of its partitions that are not FRESH
Behind = dict[str, list[tuple[str, str, str]]]


def partitioned_keys(defs: Definitions) -> list[AssetKey]:
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.materializable_asset_keys if graph.get(k).partitions_def is not None]
    return sorted(keys, key=lambda k: k.to_user_string())


def behind(
    defs: Definitions,
    instance: DagsterInstance,
    observed: Mapping[tuple[AssetKey, str | None], DataVersion] | None = None,
    keys: Collection[AssetKey] | None = None,
) -> Behind:
    """The partitions of every partitioned asset (of ``keys`` when given) that are missing or stale, by the
    resolver ``mixtrain status`` uses (``observed``: spec versions seen in this process, not yet recorded)."""
    graph = defs.resolve_asset_graph()
    asked = [k for k in partitioned_keys(defs) if keys is None or k in keys]
    partitions: dict[str, list[str]] = {}
    for key in asked:
        pdef = graph.get(key).partitions_def
        if isinstance(pdef, DynamicPartitionsDefinition) and pdef.name:
            partitions[pdef.name] = list(instance.get_dynamic_partitions(pdef.name))
    out: Behind = {k.to_user_string(): [] for k in asked}
    for status in stale_statuses(defs, instance, partitions, observed, keys=asked):
        if status.key in out and status.partition is not None and status.status != "FRESH":
            out[status.key].append((status.partition, status.status, "; ".join(status.causes)))
    return out


def _metadata(rows: list[tuple[str, str, str]]) -> dict[str, MetadataValue]:
    table = [{"partition": p, "status": s, "why": why or "-"} for p, s, why in rows]
    return {
        "partitions_behind": MetadataValue.int(len(rows)),
        "partitions": MetadataValue.md(
            markdown_table(table, ["partition", "status", "why"]) if rows else "every partition is up to date"
        ),
    }


def evaluations(found: Behind) -> list[AssetCheckEvaluation]:
    """The check's answers as events a sensor can record without a run."""
    return [
        AssetCheckEvaluation(
            asset_key=AssetKey.from_user_string(key),
            check_name=CHECK_NAME,
            passed=not rows,
            severity=AssetCheckSeverity.WARN,
            metadata=_metadata(rows),
        )
        for key, rows in sorted(found.items())
    ]


def partition_sync_checks(defs: Definitions) -> AssetChecksDefinition | None:
    """The ``partitions_in_sync`` check on every partitioned asset of ``defs`` (None when there is none)."""
    keys = partitioned_keys(defs)
    if not keys:
        return None
    specs = [
        AssetCheckSpec(
            CHECK_NAME,
            asset=key,
            description="Partitions that are missing or stale, as `mixtrain status` lists them (the UI's "
            "unsynced tag does not cover partitions). Recorded by spec_observation_sensor when it changes.",
        )
        for key in keys
    ]

    # Subsettable: a run that materializes one of these assets runs its check too (Dagster adds an asset's checks
    # to its runs), and then only that asset's partitions are asked about, after it was written.
    @multi_asset_check(specs=specs, name="partitions_in_sync_checks", can_subset=True)
    def _partitions_in_sync(context: AssetCheckExecutionContext) -> Iterator[AssetCheckResult]:
        selected = {check.asset_key for check in context.selected_asset_check_keys}
        for key, rows in sorted(behind(defs, context.instance, keys=selected).items()):
            yield AssetCheckResult(
                asset_key=AssetKey.from_user_string(key),  # a prefixed key ("vault/raw_rejects") has two parts
                check_name=CHECK_NAME,
                passed=not rows,
                severity=AssetCheckSeverity.WARN,
                metadata=_metadata(rows),
            )

    return _partitions_in_sync
