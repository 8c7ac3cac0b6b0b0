"""Observable specs: what the user owns (source files and YAML), seen by content hash.

They head the graph so that a change to a source's files or to the mixture section makes exactly the
downstream assets stale, and nothing else: the gating stage never sees a mixture weight.
"""

from dagster import DataVersion, DataVersionsByPartition, MetadataValue, ObserveResult, observable_source_asset

from mixassets.assets.engine_configs import dedupe_fingerprint, screen_fingerprint
from mixtrain.fingerprint import PER_SOURCE_FINGERPRINTS
from mixtrain.identity import spec_hash
from mixtrain.markdown import markdown_table
from mixtrain.partitions import SOURCES_PARTITION, source_partitions
from mixtrain.provenance import impact
from mixtrain.resources import ProjectResource
from mixtrain.revocations import load_revocations, revocations_fingerprint


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
def revocations(project: ProjectResource) -> ObserveResult:
    proj = project.load()
    revoked = load_revocations(proj)
    # What each revoked source reached, from the same query as `mixtrain impact`, so the UI shows the answer the
    # CLI gives: its mixtures (live or superseded) and the models trained on them.
    rows = []
    for sid, rev in sorted(revoked.items()):
        reach = impact(proj.storage_root, sid)
        rows.append(
            {
                "source": sid,
                "revoked_by": rev.revoked_by,
                "revoked_at": f"{rev.revoked_at:%Y-%m-%d %H:%M}Z",
                "reason": rev.reason,
                "mixtures": ", ".join(m["manifest_id"] for m in reach["mixtures"]) or None,
                "models": ", ".join(f"{m['asset']}@{m['version'] or '-'}" for m in reach["models"]) or None,
            }
        )
    columns = ["source", "revoked_by", "revoked_at", "reason", "mixtures", "models"]
    return ObserveResult(
        data_version=DataVersion(revocations_fingerprint(proj)),
        metadata={
            "revoked_sources": MetadataValue.int(len(revoked)),
            "impact": MetadataValue.md(markdown_table(rows, columns) if rows else "no source is revoked"),
        },
    )
