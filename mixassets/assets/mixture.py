"""The mixture: a seeded sample of the screened corpus, and its manifest — the data identity of a model."""

from collections import Counter

import numpy as np
import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    multi_asset,
)

from mixassets.engine.heldout import heldout_mask, heldout_table
from mixassets.engine.licenses import policy_allows
from mixassets.engine.mixture import doc_ids_digest, sample_mixture
from mixassets.engine.mixture_diff import drift
from mixassets.engine.mixture_manifest import build_manifest
from mixassets.engine.rules import RULES_VERSION
from mixassets.engine.tokens import count_tokens, load_tokenizer
from mixtrain.automation import rerun_when_changed
from mixtrain.provenance import manifest_history_path
from mixtrain.provenance import mixture_manifest as stored_mixture_manifest
from mixtrain.resources import ProjectResource
from mixtrain.storage import EncodedTable, asset_path, json_bytes, write_atomic
from mixtrain.versioning import current_data_version, json_output, table_output

MIXTURE_INPUTS = ("screened_corpus", "base_model", "mixture_spec")


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
    screened_corpus: pa.Table,
    base_model: dict,
    source_manifest: pa.Table,
):
    proj = project.load()
    spec = proj.spec.mixture
    tokenizer_path = spec.tokenizer or base_model["path"]
    tokens = count_tokens(screened_corpus, load_tokenizer(tokenizer_path))
    allowed = [policy_allows(lic, spec.release_policy) for lic in screened_corpus.column("license").to_pylist()]
    held = heldout_mask(screened_corpus, spec.heldout_docs, spec.seed, allowed=allowed)
    heldout = heldout_table(screened_corpus, held, spec.seed)
    rest = ~held
    table, stats = sample_mixture(
        screened_corpus.filter(pa.array(rest)),
        np.asarray(tokens)[rest].tolist(),
        spec,
        allowed=np.asarray(allowed, dtype=bool)[rest].tolist(),
    )
    heldout_record = {
        "docs": dict(sorted(Counter(heldout.column("source_id").to_pylist()).items())),
        "doc_ids_digest": doc_ids_digest(heldout.column("doc_id").to_pylist()),
    }
    encoded = EncodedTable.of(table)  # encoded once: the shard checksum is the written file's checksum
    previous = stored_mixture_manifest(proj.storage_root)
    manifest = build_manifest(
        spec,
        table,
        stats,
        tokenizer=tokenizer_path,
        inputs={k: current_data_version(context.instance, k) for k in MIXTURE_INPUTS},
        input_partitions=dict(
            zip(
                source_manifest.column("source_id").to_pylist(),
                source_manifest.column("gated_data_version").to_pylist(),
                strict=True,
            )
        ),
        rules_version=RULES_VERSION,
        shard_path=str(asset_path(proj.storage_root, "mixture")),
        shard_sha256=encoded.checksum,
        previous=previous,
        heldout=heldout_record,
    )
    write_atomic(manifest_history_path(proj.storage_root, manifest["manifest_id"]), json_bytes(manifest))
    per_source = stats.get("sources", {})
    metadata = {
        "documents": table.num_rows,
        "tokens": int(sum(table.column("tokens").to_pylist())),
        **{f"share/{s}": round(float(v.get("effective_weight", 0.0)), 4) for s, v in per_source.items()},
        **{f"tokens/{s}": int(v.get("tokens", 0)) for s, v in per_source.items()},
        **{f"excluded_by_policy/{s}": int(v.get("excluded_by_policy", 0)) for s, v in per_source.items()},
    }
    yield table_output(encoded, metadata, name="mixture")
    yield json_output(
        manifest, manifest["manifest_id"], {"manifest_id": manifest["manifest_id"]}, name="mixture_manifest"
    )
    yield table_output(
        EncodedTable.of(heldout),
        {"documents": heldout.num_rows, **{f"docs/{s}": n for s, n in heldout_record["docs"].items()}},
        name="heldout_text",
    )
    moved = drift(previous, manifest, spec.drift_tolerance) if previous is not None else []
    yield AssetCheckResult(
        check_name="mixture_drift",
        asset_key="mixture",
        passed=not moved,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "tolerance": spec.drift_tolerance,
            "compared_with": (previous or {}).get("manifest_id", "none (first mixture)"),
            **{f"moved/{sid}": f"{old:.3f} -> {new:.3f}" for sid, old, new in moved},
        },
    )
