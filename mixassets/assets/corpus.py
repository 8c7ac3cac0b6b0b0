"""Per-source stages: raw documents as captured, then the gated corpus with its decision log and quarantine.

Both are partitioned by source, so a new or changed source is read and gated alone.
"""

from datetime import datetime, timezone

import fsspec
import pyarrow as pa
from dagster import (
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    multi_asset,
)
from upath import UPath

from mixassets.checks import check_result
from mixassets.engine.gating_source import gate_source
from mixassets.engine.gating_stream import GateSink, TableGateSink
from mixassets.engine.readers import iter_source
from mixassets.engine.review import OVERRIDE_SCHEMA, merge_overrides, read_verdicts_csv
from mixassets.engine.rules import RULES_VERSION
from mixassets.engine.vault import VAULT_KEY, access_note, seal_read_failures, write_vault
from mixtrain.automation import changed_out
from mixtrain.compute import ComputeResource
from mixtrain.partitions import source_partitions
from mixtrain.progress import RowMeter
from mixtrain.resources import ProjectResource
from mixtrain.schema import DOCUMENT_SCHEMA, QUARANTINE_SCHEMA, VAULT_SCHEMA
from mixtrain.storage import JSON_EXT, asset_path, json_bytes, write_atomic
from mixtrain.tables import StoredTable, TableWriter, open_table
from mixtrain.versioning import current_data_version, table_output


def _mtime(path: str) -> datetime:
    """A file's modification time is its capture time: re-reading an unchanged file captures nothing new."""
    fs, p = fsspec.core.url_to_fs(path)
    info = fs.info(p)
    ts = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(ts), tz=timezone.utc)


# The ingested copy of a source holds whatever the source holds, in clear (a reviewer's accept reinstates a held
# document from it): whoever may read it must be allowed to read the source. The vault is narrower still.
SENSITIVITY_TAG = "mixtrain/sensitivity"


@multi_asset(
    outs={
        "raw_documents": changed_out(
            "raw-2",
            "Every record of the source, with a stable doc_id and its locator. As sensitive as the source: clear text.",
            tags={SENSITIVITY_TAG: "source"},
        ),
        "raw_rejects": changed_out(
            "raw-3",
            "Records that could not be read (bad UTF-8, malformed JSON), redacted; their bytes are in the vault.",
            tags={SENSITIVITY_TAG: "redacted"},
        ),
        "vault_raw_rejects": changed_out(
            "vault-1",
            "The clear lines and bytes of the records that could not be read, owner-only (vault/ prefix).",
            key=AssetKey(VAULT_KEY),
            tags={SENSITIVITY_TAG: "vault"},
        ),
    },
    deps=["source_spec"],
    group_name="corpus",
    partitions_def=source_partitions,
)
def raw_documents(context: AssetExecutionContext, project: ProjectResource):
    """Reads the source; each unreadable record is split into its redacted raw_rejects row and its clear vault
    row (:mod:`~mixassets.engine.vault`) as soon as it is read, so clear bytes are only ever written to the vault."""
    proj = project.load()
    source_id = context.partition_key
    if source_id not in proj.sources:
        raise ValueError(f"source '{source_id}' has a partition but no spec in {proj.root / 'sources'}")
    spec = proj.sources[source_id]
    paths = proj.source_paths(source_id)
    if not paths:
        raise FileNotFoundError(f"{proj.source_files[source_id]}: field 'path': no files match {spec.path!r}")
    # Batch by batch into the table's parts: memory holds one batch of records, not a file or the source.
    rejects = [QUARANTINE_SCHEMA.empty_table()]
    sealed = [VAULT_SCHEMA.empty_table()]

    def documents():
        for path in paths:
            for docs, bad in iter_source(spec, [path], base=str(proj.root), capture_time=_mtime(path)):
                view, clear = seal_read_failures(bad)
                rejects.append(view)
                sealed.append(clear)
                yield docs

    root = proj.storage_root
    target = asset_path(root, "raw_documents", source_id)
    written = TableWriter(target, DOCUMENT_SCHEMA).write_all(documents())
    unreadable = pa.concat_tables(rejects)
    vault = write_vault(root, source_id, pa.concat_tables(sealed))
    yield table_output(
        written,
        name="raw_documents",
        metadata={"files": len(paths), "documents": written.rows, "unreadable": unreadable.num_rows},
    )
    yield table_output(unreadable, name="raw_rejects")
    yield table_output(vault, name="vault_raw_rejects", metadata={"access": access_note(root)})


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
# The rules' version, and the shape of what the gate writes: ".v" when held text and reasons became redacted views
# (the clear bytes live in the vault), ".s" when the decision log gained its ``score`` column; a project gated
# before regates.
GATE_VERSION = f"gate-{RULES_VERSION}.v.s"
GATED_OUTPUTS = ("gated_documents", "quarantine", "decision_log")  # the order TableGateSink takes them in


@multi_asset(
    outs={
        "gated_documents": changed_out(GATE_VERSION, "Documents that passed every gate."),
        "decision_log": changed_out(GATE_VERSION, "One row per rule that fired on a document."),
        "quarantine": changed_out(GATE_VERSION, "Held-back documents (quarantined or rejected) with their reason."),
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
def gated_documents(
    context: AssetExecutionContext, project: ProjectResource, compute: ComputeResource, review_overrides: pa.Table
):
    """Rules decide first; reviewer verdicts then override them (agreement is measured against the rules).

    The raw partition is streamed in batches and the outputs are written part by part, so memory does not
    grow with the source; the raw tables are read from storage here (checked against the versions Dagster
    recorded) rather than loaded by the IO manager. On Ray the workers gate the raw parts (same outputs, see
    :mod:`~mixassets.engine.distributed.gate`) and the driver, which then holds the gated
    tables, streams them through the same review, tally and conservation check. The gate summary is written
    beside the gated partition (:func:`gate_summary_path`) for the gating report."""
    proj = project.load()
    sid = context.partition_key
    root = proj.storage_root
    sink = TableGateSink(*(asset_path(root, name, sid) for name in GATED_OUTPUTS))

    def upstream(key: str) -> StoredTable:
        return open_table(asset_path(root, key, sid), current_data_version(context.instance, key, sid))

    raw = upstream("raw_documents")
    spec, tags = proj.sources[sid], proj.spec.forbidden_license_tags
    gate = None
    if compute.is_ray and raw.rows:
        from mixassets.engine.distributed.gate import gate_ray

        def gate(sink: GateSink) -> dict[str, int | float]:
            out = gate_ray(raw.part_refs, spec, forbidden_tags=tags, num_partitions=compute.partitions())
            out.write_to(sink, GATE_BATCH_ROWS)
            return out.counts

    result = gate_source(
        raw,
        upstream("raw_rejects").read(),
        spec,
        review_overrides,
        outputs=sink,
        forbidden_tags=tags,
        batch_rows=GATE_BATCH_ROWS,
        gate=gate,
        progress=RowMeter(context.log.info, "gated", total=raw.rows).advance,
    )
    summary, conservation = result.summary, result.conservation
    accepted, quarantine, decisions = sink.pending
    yield table_output(accepted, name="gated_documents", metadata=summary.metrics)
    write_atomic(gate_summary_path(root, sid), json_bytes(summary.to_json()))
    yield table_output(decisions, name="decision_log")
    held = {k: conservation.counts[k] for k in ("quarantined", "rejected")}
    yield table_output(quarantine, name="quarantine", metadata=held)
    yield check_result("conservation", "gated_documents", conservation, AssetCheckSeverity.ERROR)


def gate_summary_path(root: str, source_id: str) -> UPath:
    """Where the :class:`~mixassets.engine.gating_source.GateSummary` of a gated partition is kept."""
    return asset_path(root, "gated_documents", source_id, ext=JSON_EXT)
