"""Cross-source stages: the explicit fan-in of per-source partitions, near-duplicate removal, and the
contamination screen against every eval set in the registry."""

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, AssetIn, AssetKey, asset, multi_asset
from upath import UPath

from mixassets.automation import changed_out, rerun_when_changed
from mixassets.engine.contamination import screen, unscreenable_fields
from mixassets.engine.dedupe import dedupe
from mixassets.partitions import SOURCES_PARTITION
from mixassets.resources import ProjectResource
from mixassets.revocations import load_revocations
from mixassets.storage import asset_path, sha256_bytes
from mixassets.versioning import current_data_version, hash_of, table_output

SOURCE_MANIFEST_SCHEMA = pa.schema(
    [
        ("source_id", pa.string()),
        ("gated_data_version", pa.string()),
        ("gated_path", pa.string()),
        ("license", pa.string()),
        ("domain", pa.string()),
        ("trust_tier", pa.int64()),
    ]
)


@asset(
    code_version="manifest-1",
    automation_condition=rerun_when_changed(),
    description="Which gated partitions make up the corpus, by data version. Its own data version hashes theirs, "
    "so per-source fan-in is explicit and staleness does not depend on Dagster's partition limits.",
    deps=["gated_documents", "revocations"],
    group_name="curation",
)
def source_manifest(context: AssetExecutionContext, project: ProjectResource):
    proj = project.load()
    partitions = set(context.instance.get_dynamic_partitions(SOURCES_PARTITION))
    revoked = load_revocations(proj)
    rows, missing = [], []
    for sid in proj.source_ids():
        if sid in revoked:
            continue
        version = current_data_version(context.instance, "gated_documents", sid) if sid in partitions else None
        if version is None:
            missing.append(sid)
            continue
        spec = proj.sources[sid]
        path = asset_path(proj.storage_root, "gated_documents", sid)
        rows.append((sid, version, str(path), spec.license, spec.domain, spec.trust_tier))
    if missing:
        raise RuntimeError(f"sources not gated yet (materialize gated_documents for them first): {missing}")
    table = pa.Table.from_pylist(
        [dict(zip(SOURCE_MANIFEST_SCHEMA.names, r, strict=True)) for r in rows], schema=SOURCE_MANIFEST_SCHEMA
    )
    metadata = {"sources": table.num_rows, "versions_hash": hash_of(rows), "revoked": ", ".join(sorted(revoked))}
    return table_output(table, metadata)


@multi_asset(
    outs={
        "deduplicated_corpus": changed_out(
            "dedupe-1", "The gated corpus of all sources without exact and near duplicates."
        ),
        "dedupe_clusters": changed_out("dedupe-1", "Each dropped document, the keeper it duplicated, and the Jaccard."),
    },
    ins={"source_manifest": AssetIn()},
    deps=["curation_spec"],
    group_name="curation",
)
def deduplicated_corpus(context: AssetExecutionContext, project: ProjectResource, source_manifest: pa.Table):
    proj = project.load()
    parts = []
    for row in source_manifest.to_pylist():
        data = UPath(row["gated_path"]).read_bytes()
        if sha256_bytes(data)[:16] != row["gated_data_version"]:  # the manifest is the contract: verify it
            raise RuntimeError(
                f"gated_documents[{row['source_id']}] at {row['gated_path']} is not the version in source_manifest "
                f"({row['gated_data_version']}); rematerialize source_manifest"
            )
        parts.append(pq.read_table(pa.BufferReader(data)))
    corpus = pa.concat_tables(parts) if parts else None
    if corpus is None or corpus.num_rows == 0:
        raise RuntimeError("the gated corpus is empty: nothing passed gating in any source")
    cfg = proj.spec.dedupe
    ranks = {sid: s.trust_tier for sid, s in proj.sources.items()}
    kept, clusters = dedupe(corpus, threshold=cfg.threshold, num_perm=cfg.num_perm, ngram=cfg.ngram, source_rank=ranks)
    match = clusters.column("match_type").to_pylist()
    yield table_output(
        kept,
        name="deduplicated_corpus",
        metadata={
            "documents_in": corpus.num_rows,
            "documents_kept": kept.num_rows,
            "exact_duplicates": match.count("exact"),
            "near_duplicates": match.count("near"),
            "dedupe_rate": round(1 - kept.num_rows / corpus.num_rows, 4),
        },
    )
    yield table_output(clusters, name="dedupe_clusters")


@multi_asset(
    outs={
        "screened_corpus": changed_out("screen-1", "The deduplicated corpus without documents that leak eval items."),
        "contamination_findings": changed_out("screen-1", "Every eval item overlap: set, item, field, text, score."),
        "contaminated_documents": changed_out("screen-1", "Documents quarantined by the screen (kept for review)."),
    },
    ins={"deduplicated_corpus": AssetIn(), "eval_registry": AssetIn(key=AssetKey("eval_registry"))},
    deps=["curation_spec"],
    group_name="curation",
)
def screened_corpus(
    context: AssetExecutionContext, project: ProjectResource, deduplicated_corpus: pa.Table, eval_registry: pa.Table
):
    n = project.load().spec.screen.ngram
    clean, dirty, findings = screen(deduplicated_corpus, eval_registry, n=n)
    per_set: dict[str, int] = {}
    for s in findings.column("eval_set").to_pylist():
        per_set[s] = per_set.get(s, 0) + 1
    yield table_output(
        clean,
        name="screened_corpus",
        metadata={
            "documents_in": deduplicated_corpus.num_rows,
            "documents_clean": clean.num_rows,
            "contaminated": dirty.num_rows,
        },
    )
    yield table_output(
        findings,
        name="contamination_findings",
        metadata={
            "findings": findings.num_rows,
            "items_leaked": len(set(findings.column("item_id").to_pylist())),
            "unscreenable_fields": len(unscreenable_fields(eval_registry, n)),
            **{f"findings/{k}": v for k, v in per_set.items()},
        },
    )
    yield table_output(dirty, name="contaminated_documents")
