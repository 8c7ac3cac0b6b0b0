"""Partitions of the data side: one dynamic partition per source, so adding a source adds a partition and
nothing already gated recomputes."""

from dagster import DynamicPartitionsDefinition

SOURCES_PARTITION = "sources"
source_partitions = DynamicPartitionsDefinition(name=SOURCES_PARTITION)
