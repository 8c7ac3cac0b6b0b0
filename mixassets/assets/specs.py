"""Observable specs: what the user owns (source files and YAML), seen by content hash.

They head the graph so that a change to a source's files or to the mixture section makes exactly the
downstream assets stale, and nothing else: the gating stage never sees a mixture weight.
"""

from dagster import DataVersion, DataVersionsByPartition, observable_source_asset

from mixassets.curation_config import dedupe_fingerprint, screen_fingerprint
from mixassets.fingerprint import PER_SOURCE_FINGERPRINTS
from mixassets.partitions import SOURCES_PARTITION, source_partitions
from mixassets.project import spec_hash
from mixassets.resources import ProjectResource
from mixassets.revocations import revocations_fingerprint


def _per_source_spec(name: str, description: str):
    """An observable whose data version per source partition is that source's fingerprint for ``name``."""
    fingerprint = PER_SOURCE_FINGERPRINTS[name]

    @observable_source_asset(name=name, partitions_def=source_partitions, group_name="sources", description=description)
    def _observe(context, project: ProjectResource) -> DataVersionsByPartition:
        proj = project.load()
        known = set(context.instance.get_dynamic_partitions(SOURCES_PARTITION))
        return DataVersionsByPartition(
            {sid: DataVersion(fingerprint(proj, sid)) for sid in proj.source_ids() if sid in known}
        )

    return _observe


source_spec = _per_source_spec("source_spec", "A source's spec YAML and the files it names, fingerprinted by content.")
gating_policy = _per_source_spec(
    "gating_policy", "A source's gating config and PII policy (and the project's forbidden rights tags)."
)
review_sheets = _per_source_spec(
    "review_sheets", "Review sheets applied to a source (reviews/<source>/*.csv), by content."
)


@observable_source_asset(group_name="mixture", description="The mixture section of mixtrain.yaml.")
def mixture_spec(project: ProjectResource) -> DataVersion:
    return DataVersion(spec_hash(project.load().spec.mixture))


@observable_source_asset(
    group_name="curation",
    description="The dedupe section of mixtrain.yaml, with the trust tiers and code sources it ranks and shingles by.",
)
def dedupe_spec(project: ProjectResource) -> DataVersion:
    return DataVersion(dedupe_fingerprint(project.load()))


@observable_source_asset(group_name="curation", description="The screen section of mixtrain.yaml.")
def screen_spec(project: ProjectResource) -> DataVersion:
    return DataVersion(screen_fingerprint(project.load()))


@observable_source_asset(
    group_name="curation",
    description="Revoked sources (revocations/<source>.yaml: who, when, why); the corpus fan-in leaves them out.",
)
def revocations(project: ProjectResource) -> DataVersion:
    return DataVersion(revocations_fingerprint(project.load()))
