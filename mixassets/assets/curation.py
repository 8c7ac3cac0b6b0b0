"""Cross-source stages: the explicit fan-in of per-source partitions, near-duplicate removal, and the
contamination screen against every eval set in the registry."""

import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, AssetIn, AssetKey, asset, multi_asset
from upath import UPath

from mixassets.assets.engine_configs import dedupe_config, screen_config
from mixassets.engine.contamination import (
    build_index,
    contamination_report,
    item_leaks,
    screen,
)
from mixassets.engine.dedupe import SKETCH_PARQUET_OPTIONS, dedupe_incremental
from mixtrain.automation import changed_out, rerun_when_changed
from mixtrain.identity import bytes_sha256
from mixtrain.partitions import SOURCES_PARTITION
from mixtrain.resources import ProjectResource
from mixtrain.revocations import load_revocations
from mixtrain.storage import EncodedTable, asset_path, read_table, stage_batches
from mixtrain.versioning import current_data_version, table_output

SOURCE_MANIFEST_SCHEMA = pa.schema(
    [
        ("source_id", pa.string()),
        ("gated_data_version", pa.string()),
        ("gated_path", pa.string()),
    ]
)


@asset(
    code_version="manifest-2",
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
        path = asset_path(proj.storage_root, "gated_documents", sid)
        rows.append({"source_id": sid, "gated_data_version": version, "gated_path": str(path)})
    if missing:
        raise RuntimeError(f"sources not gated yet (materialize gated_documents for them first): {missing}")
    table = pa.Table.from_pylist(rows, schema=SOURCE_MANIFEST_SCHEMA)
    metadata = {"sources": table.num_rows, "revoked": ", ".join(sorted(revoked))}
    return table_output(table, metadata)


_SKETCHED_VERSIONS = b"mixtrain.dedupe.gated_versions"


def _previous(path: UPath) -> pa.Table | None:
    """An earlier run's sketches or verified pairs: a cache only (the engine checks it matches, and the result
    equals a full build either way), so a missing or unreadable file just means a full build. Read
    memory-mapped: the sketches' uncompressed hash columns then decode straight from the page cache, where a
    refresh would otherwise allocate and touch buffers for every reused row."""
    try:
        return read_table(path, memory_map=True) if path.exists() else None
    except (OSError, pa.ArrowInvalid):
        return None


@multi_asset(
    outs={
        "deduplicated_corpus": changed_out(
            "dedupe-2", "The gated corpus of all sources without exact and near duplicates."
        ),
        "dedupe_clusters": changed_out(
            "dedupe-2", "Each duplicate: its cluster, keeper, match type, estimated and exact Jaccard, action."
        ),
        "dedupe_index": changed_out(
            "dedupe-2",
            "MinHash sketches and LSH band hashes per document (columnar, < 1 KB/doc): a new source is sketched "
            "alone and queried against them.",
        ),
        "dedupe_pairs": changed_out(
            "dedupe-2", "Every candidate pair verified by exact Jaccard, reused by the next incremental run."
        ),
    },
    ins={"source_manifest": AssetIn()},
    deps=["dedupe_spec"],
    group_name="curation",
)
def deduplicated_corpus(context: AssetExecutionContext, project: ProjectResource, source_manifest: pa.Table):
    proj = project.load()
    parts = []
    for row in source_manifest.to_pylist():
        data = UPath(row["gated_path"]).read_bytes()
        if bytes_sha256(data)[:16] != row["gated_data_version"]:  # the manifest is the contract: verify it
            raise RuntimeError(
                f"gated_documents[{row['source_id']}] at {row['gated_path']} is not the version in source_manifest "
                f"({row['gated_data_version']}); rematerialize source_manifest"
            )
        parts.append(pq.read_table(pa.BufferReader(data)))
    corpus = pa.concat_tables(parts) if parts else None
    if corpus is None or corpus.num_rows == 0:
        raise RuntimeError("the gated corpus is empty: nothing passed gating in any source")
    config, trust, code = dedupe_config(proj)
    previous = _previous(asset_path(proj.storage_root, "dedupe_index"))
    versions = {r["source_id"]: r["gated_data_version"] for r in source_manifest.to_pylist()}
    result = dedupe_incremental(
        corpus,
        previous_sketches=previous,
        previous_pairs=_previous(asset_path(proj.storage_root, "dedupe_pairs")),
        config=config,
        trust=trust,
        code_sources=code,
        unchanged_sources=(unchanged := _unchanged_sources(previous, versions)),
    )
    # The gated versions the sketches were made from: next time, sources still at these versions skip hashing.
    meta = {**(result.sketches.schema.metadata or {}), _SKETCHED_VERSIONS: json.dumps(versions, sort_keys=True)}
    sketches = result.sketches.replace_schema_metadata(meta)
    clusters, stats, kept = result.clusters, result.stats, result.kept_count
    match = clusters.column("match_type").to_pylist()
    actions = clusters.column("action").to_pylist()
    kept_path = asset_path(proj.storage_root, "deduplicated_corpus")
    yield table_output(
        stage_batches(kept_path, context.run.run_id, corpus.schema, result.kept_batches()),
        name="deduplicated_corpus",
        metadata={
            "documents_in": corpus.num_rows,
            "documents_kept": kept,
            "exact_duplicates": match.count("exact"),
            "near_duplicates": match.count("near"),
            "kept_under_cluster_cap": actions.count("kept_capped"),
            "dedupe_rate": round(1 - kept / corpus.num_rows, 4),
            "sketched": stats.sketched,
            "sketches_reused": stats.sketches_reused,
            "pairs_verified": stats.pairs_verified,
            "pairs_reused": stats.pairs_reused,
            "incremental": stats.incremental,
            "sources_unchanged": len(unchanged),
        },
    )
    yield table_output(clusters, name="dedupe_clusters", metadata=_per_source_drops(clusters))
    yield table_output(
        EncodedTable.of(sketches, SKETCH_PARQUET_OPTIONS),  # hash columns plain: the next refresh reads fast
        name="dedupe_index",
        metadata={"documents": sketches.num_rows, "bytes_per_doc": _bytes_per_row(sketches)},
    )
    yield table_output(result.verified_pairs, name="dedupe_pairs", metadata={"note": stats.note or ""})


def _unchanged_sources(previous: pa.Table | None, versions: dict[str, str]) -> set[str]:
    """Sources whose gated partition is byte-identical (same data version) to the one the previous sketches saw."""
    raw = ((previous.schema.metadata or {}) if previous is not None else {}).get(_SKETCHED_VERSIONS)
    seen = json.loads(raw) if raw else {}
    return {sid for sid, version in versions.items() if seen.get(sid) == version}


def _per_source_drops(clusters: pa.Table) -> dict[str, int]:
    dropped = clusters.filter(pc.equal(clusters["action"], "dropped"))
    counts = pc.value_counts(dropped.column("source_id")).to_pylist() if dropped.num_rows else []
    return {f"dropped/{c['values']}": int(c["counts"]) for c in counts}


def _bytes_per_row(table: pa.Table) -> float:
    return round(table.nbytes / table.num_rows, 1) if table.num_rows else 0.0


@multi_asset(
    outs={
        "screened_corpus": changed_out("screen-2", "The deduplicated corpus without documents that leak eval items."),
        "contamination_findings": changed_out(
            "screen-2", "Every eval item overlap: set, item, field, holdout/target, method, span, text, score."
        ),
        "contaminated_documents": changed_out("screen-2", "Documents quarantined by the screen (kept for review)."),
        "contamination_report": changed_out(
            "screen-2", "Per eval set: items leaked (holdout / target), from which sources, by how many documents."
        ),
        "leaked_items": changed_out("screen-2", "Per leaked item: how it leaked, into which documents and sources."),
    },
    ins={"deduplicated_corpus": AssetIn(), "eval_registry": AssetIn(key=AssetKey("eval_registry"))},
    deps=["screen_spec"],
    group_name="curation",
)
def screened_corpus(
    context: AssetExecutionContext, project: ProjectResource, deduplicated_corpus: pa.Table, eval_registry: pa.Table
):
    config = screen_config(project.load())
    index = build_index(eval_registry, config=config)  # built once for the screen and its report
    clean, dirty, findings = screen(deduplicated_corpus, eval_registry, config=config, index=index)
    report = contamination_report(findings, eval_registry, config=config, unscreenable=index.unscreenable)
    leaks = item_leaks(findings)
    yield table_output(
        clean,
        name="screened_corpus",
        metadata={
            "documents_in": deduplicated_corpus.num_rows,
            "documents_clean": clean.num_rows,
            "contaminated": dirty.num_rows,
        },
    )
    methods = pc.value_counts(findings.column("match_type")).to_pylist() if findings.num_rows else []
    yield table_output(
        findings,
        name="contamination_findings",
        metadata={
            "findings": findings.num_rows,
            "unscreenable_fields": int(pc.sum(report.column("fields_unscreenable")).as_py() or 0),
            **{f"findings/{m['values']}": int(m["counts"]) for m in methods},
        },
    )
    yield table_output(dirty, name="contaminated_documents")
    per_set: dict[str, int | float] = {}
    for row in report.to_pylist():
        for key in ("items_leaked", "holdout_leaked", "target_leaked", "documents_hit", "leaked_share"):
            per_set[f"{row['eval_set']}/{key}"] = row[key]
    yield table_output(report, name="contamination_report", metadata=per_set)
    yield table_output(leaks, name="leaked_items", metadata={"items": leaks.num_rows})
