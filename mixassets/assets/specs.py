"""Observable specs: what the user owns (source files and YAML), seen by content hash.

They head the graph so that a change to a source's files or to the mixture section makes exactly the
downstream assets stale, and nothing else: the gating stage never sees a mixture weight.
"""

from dagster import DataVersion, DataVersionsByPartition, observable_source_asset

from mixassets.fingerprint import source_fingerprint
from mixassets.partitions import SOURCES_PARTITION, source_partitions
from mixassets.project import spec_hash
from mixassets.resources import ProjectResource


@observable_source_asset(
    partitions_def=source_partitions,
    group_name="sources",
    description="A source's spec YAML and the files it names, fingerprinted by content.",
)
def source_spec(context, project: ProjectResource) -> DataVersionsByPartition:
    proj = project.load()
    known = set(context.instance.get_dynamic_partitions(SOURCES_PARTITION))
    return DataVersionsByPartition(
        {sid: DataVersion(source_fingerprint(proj, sid)) for sid in proj.source_ids() if sid in known}
    )


@observable_source_asset(group_name="mixture", description="The mixture section of mixtrain.yaml.")
def mixture_spec(project: ProjectResource) -> DataVersion:
    return DataVersion(spec_hash(project.load().spec.mixture))


@observable_source_asset(group_name="curation", description="The dedupe and screen sections of mixtrain.yaml.")
def curation_spec(project: ProjectResource) -> DataVersion:
    spec = project.load().spec
    return DataVersion(spec_hash({"dedupe": spec.dedupe.model_dump(), "screen": spec.screen.model_dump()}))
