"""Per-source stages: raw documents as captured, then the gated corpus with its decision log and quarantine.

Both are partitioned by source, so a new or changed source is read and gated alone.
"""

from datetime import datetime, timezone

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    multi_asset,
)

from mixassets.engine.gating_stream import ParquetGateSink, gate_stream, parquet_batches
from mixassets.engine.readers import read_source
from mixassets.engine.review import OVERRIDE_SCHEMA, merge_overrides, read_verdicts_csv
from mixassets.engine.review_stream import ReviewingSink
from mixassets.engine.rights import coverage
from mixassets.engine.rules import RULES_VERSION
from mixtrain.automation import changed_out
from mixtrain.partitions import source_partitions
from mixtrain.resources import ProjectResource
from mixtrain.schema import DECISION_SCHEMA, DOCUMENT_SCHEMA, QUARANTINE_SCHEMA
from mixtrain.storage import StagedTable, asset_path, read_table, stage_batches, staged_path
from mixtrain.versioning import table_output


def _mtime(path: str) -> datetime:
    """A file's modification time is its capture time: re-reading an unchanged file captures nothing new."""
    fs, p = fsspec.core.url_to_fs(path)
    info = fs.info(p)
    ts = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(ts), tz=timezone.utc)


@multi_asset(
    outs={
        "raw_documents": changed_out("raw-2", "Every record of the source, with a stable doc_id and its locator."),
        "raw_rejects": changed_out("raw-2", "Records that could not be read (bad UTF-8, malformed JSON), kept."),
    },
    deps=["source_spec"],
    group_name="corpus",
    partitions_def=source_partitions,
)
def raw_documents(context: AssetExecutionContext, project: ProjectResource):
    proj = project.load()
    source_id = context.partition_key
    if source_id not in proj.sources:
        raise ValueError(f"source '{source_id}' has a partition but no spec in {proj.root / 'sources'}")
    spec = proj.sources[source_id]
    paths = proj.source_paths(source_id)
    if not paths:
        raise FileNotFoundError(f"{proj.source_files[source_id]}: field 'path': no files match {spec.path!r}")
    # File by file into a staged parquet file: memory holds one input file's documents, not the whole source.
    rejects = [QUARANTINE_SCHEMA.empty_table()]

    def documents():
        for path in paths:
            docs, bad = read_source(spec, [path], base=str(proj.root), capture_time=_mtime(path))
            rejects.append(bad)
            yield docs

    target = asset_path(proj.storage_root, "raw_documents", source_id)
    staged = stage_batches(target, context.run.run_id, DOCUMENT_SCHEMA, documents())
    unreadable = pa.concat_tables(rejects)
    yield table_output(
        staged,
        name="raw_documents",
        metadata={"files": len(paths), "documents": staged.rows, "unreadable": unreadable.num_rows},
    )
    yield table_output(unreadable, name="raw_rejects")


@multi_asset(
    outs={
        "review_overrides": changed_out(
            "review-1", "Reviewer verdicts on this source's documents (latest per document)."
        )
    },
    deps=["review_sheets"],
    group_name="corpus",
    partitions_def=source_partitions,
)
def review_overrides(context: AssetExecutionContext, project: ProjectResource):
    """Versioned human decisions: every sheet applied to the source, merged so the latest verdict wins."""
    proj = project.load()
    merged = OVERRIDE_SCHEMA.empty_table()
    sheets = proj.review_sheets(context.partition_key)
    for sheet in sheets:
        merged = merge_overrides(merged, read_verdicts_csv(str(sheet)))
    verdicts = merged.column("verdict").to_pylist()
    yield table_output(
        merged,
        name="review_overrides",
        metadata={"sheets": len(sheets), "accept": verdicts.count("accept"), "reject": verdicts.count("reject")},
    )


GATE_BATCH_ROWS = 4_096  # rows per gating batch: memory is bounded by this, not by the size of the source
GATED_OUTPUTS = ("gated_documents", "quarantine", "decision_log")  # the order ParquetGateSink takes them in


def _read_columns(staged: StagedTable, columns: list[str]) -> pa.Table:
    return pq.read_table(staged.path, columns=columns)


@multi_asset(
    outs={
        "gated_documents": changed_out(f"gate-{RULES_VERSION}", "Documents that passed every gate."),
        "decision_log": changed_out(f"gate-{RULES_VERSION}", "One row per rule that fired on a document."),
        "quarantine": changed_out(
            f"gate-{RULES_VERSION}", "Held-back documents (quarantined or rejected) with their reason."
        ),
    },
    ins={"review_overrides": AssetIn()},
    deps=["raw_documents", "raw_rejects", "gating_policy"],
    check_specs=[
        AssetCheckSpec(
            "conservation",
            asset="gated_documents",
            blocking=True,
            description="ingested = accepted + quarantined + rejected: no document is silently lost.",
        )
    ],
    group_name="corpus",
    partitions_def=source_partitions,
)
def gated_documents(context: AssetExecutionContext, project: ProjectResource, review_overrides: pa.Table):
    """Rules decide first; reviewer verdicts then override them (agreement is measured against the rules).

    The raw partition is streamed in batches and the outputs are staged batch by batch, so memory does not
    grow with the source; the raw tables are read from storage here rather than loaded by the IO manager."""
    proj = project.load()
    sid = context.partition_key
    spec = proj.sources[sid]
    raw_path = asset_path(proj.storage_root, "raw_documents", sid)
    rejects = read_table(asset_path(proj.storage_root, "raw_rejects", sid))
    targets = {name: asset_path(proj.storage_root, name, sid) for name in GATED_OUTPUTS}
    staged = {name: staged_path(path, context.run.run_id) for name, path in targets.items()}

    batches = parquet_batches(raw_path, GATE_BATCH_ROWS)
    with ParquetGateSink(*(staged[n] for n in GATED_OUTPUTS)) as files:
        sink = ReviewingSink(files, review_overrides)
        sink.write(DOCUMENT_SCHEMA.empty_table(), rejects, DECISION_SCHEMA.empty_table())  # unreadable: held
        gate_counts = gate_stream(batches, spec, forbidden_tags=proj.spec.forbidden_license_tags, sink=sink)
        with raw_path.open("rb") as f:
            raw_reviewed = pq.read_table(f, filters=pc.field("doc_id").isin(sink.reviewed_ids))
        review_stats, agreement = sink.finish(raw_reviewed)
    outputs = {name: StagedTable.of(path) for name, path in staged.items()}

    accepted_meta = _read_columns(outputs["gated_documents"], ["doc_id", "license", "attribution"])
    held_meta = _read_columns(outputs["quarantine"], ["doc_id", "disposition"])
    dispositions = held_meta.column("disposition").to_pylist()
    with raw_path.open("rb") as f:
        raw_ids = pq.read_table(f, columns=["doc_id"]).column("doc_id")
    counts = {
        "ingested": len(raw_ids) + rejects.num_rows,
        "accepted": accepted_meta.num_rows,
        "quarantined": dispositions.count("quarantined"),
        "rejected": dispositions.count("rejected"),
    }
    metadata: dict[str, float | int] = {k: v for k, v in gate_counts.items() if k not in counts}
    metadata.update(counts)
    for k in ("accepted", "quarantined", "rejected"):  # over everything ingested, after review overrides
        metadata[f"{k}_rate"] = round(counts[k] / counts["ingested"], 6) if counts["ingested"] else 0.0
    metadata.update(coverage(accepted_meta))
    metadata["unreadable"] = rejects.num_rows
    metadata["accepted_by_review"] = review_stats["accepted_by_review"]
    metadata["rejected_by_review"] = review_stats["rejected_by_review"]
    for row in agreement.to_pylist():
        metadata[f"review/{row['rule_id']}/reviewed"] = row["reviewed"]
        metadata[f"review/{row['rule_id']}/agreed"] = row["agreed"]
    yield table_output(outputs["gated_documents"], name="gated_documents", metadata=metadata)
    yield table_output(outputs["decision_log"], name="decision_log")
    yield table_output(
        outputs["quarantine"],
        name="quarantine",
        metadata={"quarantined": counts["quarantined"], "rejected": counts["rejected"]},
    )
    accounted = counts["accepted"] + counts["quarantined"] + counts["rejected"]
    # Compared in Arrow (hash sets of the id columns), not as Python sets of every doc_id.
    ids_in = pa.chunked_array([*raw_ids.chunks, *rejects.column("doc_id").chunks], pa.string())
    ids_out = pa.chunked_array(
        [*accepted_meta.column("doc_id").chunks, *held_meta.column("doc_id").chunks], pa.string()
    )
    missing = _count_absent(ids_in, ids_out)
    unexpected = _count_absent(ids_out, ids_in)
    yield AssetCheckResult(
        check_name="conservation",
        asset_key="gated_documents",
        passed=accounted == counts["ingested"] and missing == 0 and unexpected == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={**counts, "accounted": accounted, "missing_ids": missing, "unexpected_ids": unexpected},
    )


def _count_absent(ids: pa.ChunkedArray, others: pa.ChunkedArray) -> int:
    """How many of ``ids`` are not among ``others``."""
    if len(ids) == 0:
        return 0
    return int(pc.sum(pc.invert(pc.is_in(ids, value_set=others.combine_chunks()))).as_py() or 0)
