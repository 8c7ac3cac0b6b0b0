"""The mixture: a seeded sample of the screened corpus, and its manifest — the data identity of a model."""

import tempfile
from pathlib import Path

import pyarrow as pa
from dagster import (
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    multi_asset,
)

from mixassets.assets.curation import gated_versions
from mixassets.checks import check_result
from mixassets.engine.mixture_build import corpus_index, mixture_schema, plan_mixture, write_mixture
from mixassets.engine.mixture_diff import mixture_drift
from mixassets.engine.mixture_manifest import build_manifest
from mixassets.engine.rules import RULES_VERSION
from mixassets.engine.tokens import load_tokenizer
from mixtrain.automation import rerun_when_changed
from mixtrain.compute import ComputeResource
from mixtrain.identity import relative_path, resolve_relative
from mixtrain.provenance import manifest_history_path
from mixtrain.provenance import mixture_manifest as stored_mixture_manifest
from mixtrain.resources import ProjectResource
from mixtrain.storage import asset_path, json_bytes, write_atomic
from mixtrain.tables import ROW_GROUP_ROWS, StoredTable, TableWriter
from mixtrain.versioning import current_data_version, json_output, table_output

MIXTURE_INPUTS = ("screened_corpus", "base_model", "mixture_spec")
CORPUS_BATCH_ROWS = ROW_GROUP_ROWS  # rows of the corpus in memory at a time, texts included


@multi_asset(
    outs={
        "mixture": AssetOut(
            code_version="mixture-2",
            description="Training documents sampled by weight and cap within the token budget.",
            automation_condition=rerun_when_changed(),
        ),
        "mixture_manifest": AssetOut(
            code_version="mixture-2",
            io_manager_key="json_io_manager",
            description="Spec and hash, input data versions, per-source composition, seed, shard checksums.",
            automation_condition=rerun_when_changed(),
        ),
        "heldout_text": AssetOut(
            code_version="heldout-1",
            description="Documents per source set aside before sampling (mixture.heldout_docs), never trained on: "
            "the perplexity suite's text per domain.",
            automation_condition=rerun_when_changed(),
        ),
    },
    ins={
        "screened_corpus": AssetIn(),
        "base_model": AssetIn(key=AssetKey("base_model"), input_manager_key="json_io_manager"),
        "source_manifest": AssetIn(),
    },
    deps=["mixture_spec"],
    check_specs=[
        AssetCheckSpec(
            "mixture_drift",
            asset="mixture",
            description="Warns when a source's token share moved more than mixture.drift_tolerance since the last "
            "mixture (same code, different model usually means the mixture drifted).",
        )
    ],
    group_name="mixture",
)
def mixture(
    context: AssetExecutionContext,
    project: ProjectResource,
    compute: ComputeResource,
    screened_corpus: StoredTable,
    base_model: dict,
    source_manifest: pa.Table,
):
    """Streamed: the corpus is read twice, one row group at a time (token counts and a text-free index, then the
    chosen rows); sampling happens on the index, and the rows are written in the mixture's order as they come.
    On Ray the token counts are made by the workers; sampling and the join stay here."""
    proj = project.load()
    spec = proj.spec.mixture
    # The base model's record names its directory relative to the storage root (see base_model).
    tokenizer_path = spec.tokenizer or resolve_relative(base_model["path"], proj.storage_root)
    corpus = screened_corpus.schema
    batches = screened_corpus.batches
    if compute.is_ray:  # token counts on the workers, over the corpus's parts
        from mixassets.engine.distributed.screen import corpus_index_ray

        paths = screened_corpus.part_refs
        index, tokens = corpus_index_ray(paths, corpus, tokenizer_path, num_partitions=compute.partitions())
    else:
        index, tokens = corpus_index(batches(batch_size=CORPUS_BATCH_ROWS), corpus, load_tokenizer(tokenizer_path))
    plan = plan_mixture(index, tokens, spec)
    writer = TableWriter(asset_path(proj.storage_root, "mixture"), mixture_schema(corpus, plan))
    with writer, tempfile.TemporaryDirectory(prefix="mixture-gather-") as spill:
        heldout = write_mixture(batches(batch_size=CORPUS_BATCH_ROWS), corpus, plan, writer.write, spill=Path(spill))
        written = writer.finish()  # the manifest records the parts that were written
    previous = stored_mixture_manifest(proj.storage_root)
    manifest = build_manifest(
        spec,
        plan.sample,
        plan.composition,
        tokenizer=spec.tokenizer or relative_path(tokenizer_path, proj.storage_root),
        inputs={k: current_data_version(context.instance, k) for k in MIXTURE_INPUTS},
        input_partitions=gated_versions(source_manifest),
        rules_version=RULES_VERSION,
        # Shard names relative to the storage root: they are part of the manifest id, which a copied or moved
        # project must keep (a new id means a new version of every model trained on it).
        shards=[
            {"path": _shard_name(proj.storage_root, p.name), "sha256": p.sha256, "rows": p.rows} for p in written.parts
        ],
        previous=previous,
        heldout=plan.heldout_record,
    )
    write_atomic(manifest_history_path(proj.storage_root, manifest["manifest_id"]), json_bytes(manifest))
    yield table_output(written, plan.metadata(), name="mixture")
    yield json_output(
        manifest, manifest["manifest_id"], {"manifest_id": manifest["manifest_id"]}, name="mixture_manifest"
    )
    yield table_output(heldout, plan.heldout_metadata(), name="heldout_text")
    moved = mixture_drift(previous, manifest, spec.drift_tolerance)
    yield check_result("mixture_drift", "mixture", moved, AssetCheckSeverity.WARN)


def _shard_name(storage_root: str, part: str) -> str:
    """A mixture part as the manifest names it: relative to the storage root, which readers resolve it against
    (``resolve_relative``)."""
    return relative_path(str(asset_path(storage_root, ["mixture", part])), storage_root)
