"""A small code location standing in for the project's in the status and sensor tests: an unpartitioned spec and
a spec partitioned like the sources (observable source assets whose versions a test sets in ``VERSIONS``), each
with a child asset. The tests add the partitioned child themselves (one needs a two-part key)."""

from __future__ import annotations

from dagster import DataVersion, DataVersionsByPartition, DynamicPartitionsDefinition, asset, observable_source_asset

PARTS = DynamicPartitionsDefinition(name="srcs")
VERSIONS: dict = {}  # "spec": version; "parts": {partition: version}


@observable_source_asset
def spec() -> DataVersion:
    return DataVersion(VERSIONS["spec"])


@observable_source_asset(partitions_def=PARTS)
def part_spec(context) -> DataVersionsByPartition:
    known = set(context.instance.get_dynamic_partitions("srcs"))
    return DataVersionsByPartition({k: DataVersion(v) for k, v in VERSIONS["parts"].items() if k in known})


@asset(deps=[spec], code_version="1")
def child() -> int:
    return 1
