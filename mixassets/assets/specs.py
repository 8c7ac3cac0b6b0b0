"""Observable specs: what the user owns (source files and YAML), seen by content hash.

They head the graph so that a change to a source's files or to the mixture section makes exactly the
downstream assets stale, and nothing else: the gating stage never sees a mixture weight.
"""

from dagster import DataVersion, DataVersionsByPartition, observable_source_asset

from mixassets.assets.curation import dedupe_config
from mixassets.fingerprint import gating_fingerprint, review_fingerprint, source_fingerprint
from mixassets.partitions import SOURCES_PARTITION, source_partitions
from mixassets.project import Project, spec_hash
from mixassets.resources import ProjectResource
from mixassets.revocations import revocations_fingerprint


@observable_source_asset(
    partitions_def=source_partitions,
    group_name="sources",
    description="A source's spec YAML and the files it names, fingerprinted by content.",
)
def source_spec(context, project: ProjectResource) -> DataVersionsByPartition:
    return _per_source(context, project.load(), source_fingerprint)


def _per_source(context, proj: Project, fingerprint) -> DataVersionsByPartition:
    known = set(context.instance.get_dynamic_partitions(SOURCES_PARTITION))
    return DataVersionsByPartition(
        {sid: DataVersion(fingerprint(proj, sid)) for sid in proj.source_ids() if sid in known}
    )


@observable_source_asset(
    partitions_def=source_partitions,
    group_name="sources",
    description="A source's gating config and PII policy (and the project's forbidden rights tags).",
)
def gating_policy(context, project: ProjectResource) -> DataVersionsByPartition:
    return _per_source(context, project.load(), gating_fingerprint)


@observable_source_asset(
    partitions_def=source_partitions,
    group_name="sources",
    description="Review sheets applied to a source (reviews/<source>/*.csv), by content.",
)
def review_sheets(context, project: ProjectResource) -> DataVersionsByPartition:
    return _per_source(context, project.load(), review_fingerprint)


@observable_source_asset(group_name="mixture", description="The mixture section of mixtrain.yaml.")
def mixture_spec(project: ProjectResource) -> DataVersion:
    return DataVersion(spec_hash(project.load().spec.mixture))


@observable_source_asset(group_name="curation", description="The dedupe and screen sections of mixtrain.yaml.")
def curation_spec(project: ProjectResource) -> DataVersion:
    proj = project.load()
    spec = proj.spec
    # The keeper rule ranks by trust tier, and code sources are shingled differently: both shape the dedupe.
    _, trust, code = dedupe_config(proj)
    return DataVersion(
        spec_hash(
            {
                "dedupe": spec.dedupe.model_dump(),
                "screen": spec.screen.model_dump(),
                "trust_tiers": trust,
                "code_sources": sorted(code),
            }
        )
    )


@observable_source_asset(
    group_name="curation",
    description="Revoked sources (revocations/<source>.yaml: who, when, why); the corpus fan-in leaves them out.",
)
def revocations(project: ProjectResource) -> DataVersion:
    return DataVersion(revocations_fingerprint(project.load()))
