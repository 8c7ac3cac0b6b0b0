"""Cross-source stages: the explicit fan-in of per-source partitions, near-duplicate removal, and the
contamination screen against every eval set in the registry."""

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, AssetKey, asset, multi_asset
from upath import UPath

from mixassets.assets.engine_configs import dedupe_config, screen_config
from mixassets.engine.contamination_stream import SCREEN_BATCH_ROWS, screen_stream
from mixassets.engine.dedupe import (
    SKETCH_PARQUET_OPTIONS,
    dedupe_incremental,
    unchanged_sources,
    with_sketched_versions,
)
from mixtrain.automation import changed_out, rerun_when_changed
from mixtrain.compute import ComputeResource
from mixtrain.partitions import SOURCES_PARTITION
from mixtrain.progress import RowMeter
from mixtrain.resources import ProjectResource
from mixtrain.revocations import load_revocations
from mixtrain.storage import asset_path
from mixtrain.tables import PendingTable, StoredTable, TableError, TableWriter, open_table
from mixtrain.versioning import current_data_version, table_output

SOURCE_MANIFEST_SCHEMA = pa.schema(
    [
        ("source_id", pa.string()),
        ("gated_data_version", pa.string()),
        ("gated_path", pa.string()),
    ]
)


@asset(
    code_version="manifest-3",
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
        # Relative to the storage root: the manifest stays true when the root moves (or is mounted elsewhere).
        rows.append({"source_id": sid, "gated_data_version": version, "gated_path": f"gated_documents/{sid}"})
    if missing:
        raise RuntimeError(f"sources not gated yet (materialize gated_documents for them first): {missing}")
    table = pa.Table.from_pylist(rows, schema=SOURCE_MANIFEST_SCHEMA)
    metadata = {"sources": table.num_rows, "revoked": ", ".join(sorted(revoked))}
    return table_output(table, metadata)


def _previous(path: UPath) -> pa.Table | None:
    """An earlier run's sketches or verified pairs: a cache only (the engine checks it matches, and the result
    equals a full build either way), so a missing or unreadable table just means a full build. Read
    memory-mapped: the sketches' uncompressed hash columns then decode straight from the page cache, where a
    refresh would otherwise allocate and touch buffers for every reused row."""
    try:
        return open_table(path).read(memory_map=True)
    except (TableError, OSError, pa.ArrowInvalid):
        return None


@multi_asset(
    outs={
        "deduplicated_corpus": changed_out(
            "dedupe-3", "The gated corpus of all sources without exact and near duplicates."
        ),
        "dedupe_clusters": changed_out(
            "dedupe-3", "Each duplicate: its cluster, keeper, match type, estimated and exact Jaccard, action."
        ),
        "dedupe_index": changed_out(
            "dedupe-3",
            "MinHash sketches and LSH band hashes per document (columnar, < 1 KB/doc): a new source is sketched "
            "alone and queried against them.",
        ),
        "dedupe_pairs": changed_out(
            "dedupe-3", "Every candidate pair verified by exact Jaccard, reused by the next incremental run."
        ),
    },
    ins={"source_manifest": AssetIn()},
    deps=["dedupe_spec"],
    group_name="curation",
)
def deduplicated_corpus(
    context: AssetExecutionContext, project: ProjectResource, compute: ComputeResource, source_manifest: pa.Table
):
    """Locally a refresh reuses the previous sketches and verified pairs; on Ray it is a full build (same
    result). Either way only ids and sketches are held here, and the kept rows stream from the gated parts."""
    proj = project.load()
    corpus = _gated_corpus(proj.storage_root, source_manifest)
    config, trust, code = dedupe_config(proj)
    versions = gated_versions(source_manifest)
    if compute.is_ray:  # a full build: nothing of the previous run is read
        from mixassets.engine.distributed.dedupe import dedupe_corpus_ray

        parts = compute.partitions()
        result = dedupe_corpus_ray(corpus, config=config, trust=trust, code_sources=code, num_partitions=parts)
        unchanged: set[str] = set()
    else:
        previous = _previous(asset_path(proj.storage_root, "dedupe_index"))
        unchanged = unchanged_sources(previous, versions)
        result = dedupe_incremental(
            corpus,
            previous_sketches=previous,
            previous_pairs=_previous(asset_path(proj.storage_root, "dedupe_pairs")),
            config=config,
            trust=trust,
            code_sources=code,
            unchanged_sources=unchanged,
        )
    # The gated versions the sketches were made from: next time, sources still at these versions skip hashing.
    sketches = with_sketched_versions(result.sketches, versions)
    # The kept rows are read back from the gated partitions batch by batch and streamed into parts.
    kept = TableWriter(asset_path(proj.storage_root, "deduplicated_corpus"), result.corpus.schema)
    yield table_output(
        kept.write_all(result.kept_batches()),
        name="deduplicated_corpus",
        metadata={**result.metadata(), "sources_unchanged": len(unchanged)},
    )
    yield table_output(result.clusters, name="dedupe_clusters", metadata=result.dropped_per_source())
    yield table_output(
        PendingTable.of(sketches, options=SKETCH_PARQUET_OPTIONS),  # hash columns plain: the next refresh reads fast
        name="dedupe_index",
        metadata={"documents": sketches.num_rows, "bytes_per_doc": _bytes_per_row(sketches)},
    )
    yield table_output(result.verified_pairs, name="dedupe_pairs", metadata={"note": result.stats.note or ""})


def gated_versions(source_manifest: pa.Table) -> dict[str, str]:
    """``{source_id: gated data version}`` of the sources that make up the corpus."""
    ids, versions = source_manifest["source_id"].to_pylist(), source_manifest["gated_data_version"].to_pylist()
    return dict(zip(ids, versions, strict=True))


def _gated_corpus(root: str, source_manifest: pa.Table) -> list[StoredTable]:
    """Every gated partition the manifest names, opened (not read: the dedupe engine streams them) and checked
    against the data version the manifest records."""
    parts = []
    for row in source_manifest.to_pylist():
        location = UPath(root) / row["gated_path"]
        try:  # the manifest is the contract: a partition at another version is not the one it names
            parts.append(open_table(location, row["gated_data_version"], recorded_by="source_manifest"))
        except TableError as exc:
            raise RuntimeError(f"gated_documents[{row['source_id']}]: {exc}") from exc
    if not parts or sum(p.rows for p in parts) == 0:
        raise RuntimeError("the gated corpus is empty: nothing passed gating in any source")
    return parts


def _bytes_per_row(table: pa.Table) -> float:
    return round(table.nbytes / table.num_rows, 1) if table.num_rows else 0.0


@multi_asset(
    outs={
        "screened_corpus": changed_out("screen-3", "The deduplicated corpus without documents that leak eval items."),
        "contamination_findings": changed_out(
            "screen-3", "Every eval item overlap: set, item, field, holdout/target, method, span, text, score."
        ),
        "contaminated_documents": changed_out("screen-3", "Documents quarantined by the screen (kept for review)."),
        "contamination_report": changed_out(
            "screen-3", "Per eval set: items leaked (holdout / target), from which sources, by how many documents."
        ),
        "leaked_items": changed_out("screen-3", "Per leaked item: how it leaked, into which documents and sources."),
    },
    ins={"deduplicated_corpus": AssetIn(), "eval_registry": AssetIn(key=AssetKey("eval_registry"))},
    deps=["screen_spec"],
    group_name="curation",
)
def screened_corpus(
    context: AssetExecutionContext,
    project: ProjectResource,
    compute: ComputeResource,
    deduplicated_corpus: StoredTable,
    eval_registry: pa.Table,
):
    """Streamed: one row group of the corpus in memory at a time, clean and quarantined rows written as they
    are screened; only the findings are held. On Ray the workers screen the corpus's parts and the stream here
    only splits it by the positions they found."""
    proj = project.load()
    schema = deduplicated_corpus.schema
    clean = TableWriter(asset_path(proj.storage_root, "screened_corpus"), schema)
    dirty = TableWriter(asset_path(proj.storage_root, "contaminated_documents"), schema)
    meter = RowMeter(context.log.info, "screened", total=deduplicated_corpus.rows)
    batches = meter.metered(deduplicated_corpus.batches(batch_size=SCREEN_BATCH_ROWS))
    config, sinks = screen_config(proj), {"clean": clean.write, "contaminated": dirty.write}
    with clean, dirty:
        if compute.is_ray:
            from mixassets.engine.distributed.screen import screen_stream_ray

            paths, parts = deduplicated_corpus.part_refs, compute.partitions()
            summary = screen_stream_ray(paths, batches, eval_registry, config, **sinks, num_partitions=parts)
        else:
            summary = screen_stream(batches, eval_registry, config, **sinks)
        clean_table, dirty_table = clean.finish(), dirty.finish()
    yield table_output(clean_table, name="screened_corpus", metadata=summary.clean_metadata())
    yield table_output(summary.findings, name="contamination_findings", metadata=summary.findings_metadata())
    yield table_output(dirty_table, name="contaminated_documents")
    yield table_output(summary.report, name="contamination_report", metadata=summary.report_metadata())
    yield table_output(summary.leaks, name="leaked_items", metadata={"items": summary.leaks.num_rows})
