"""Dynamic partitions: one per source, so adding a source adds a partition and nothing already gated
recomputes; one per configured adapter (``adapters:``), so adding a tenant's adapter trains only that one."""

from dagster import DynamicPartitionsDefinition

from mixtrain.project import Project

SOURCES_PARTITION = "sources"
source_partitions = DynamicPartitionsDefinition(name=SOURCES_PARTITION)

ADAPTERS_PARTITION = "adapters"
adapter_partitions = DynamicPartitionsDefinition(name=ADAPTERS_PARTITION)


def partition_keys(project: Project) -> dict[str, list[str]]:
    """The keys the project wants in every dynamic partitions definition, by the definition's name."""
    return {SOURCES_PARTITION: project.source_ids(), ADAPTERS_PARTITION: project.adapter_ids()}
