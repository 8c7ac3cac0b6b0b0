"""The mixture: a seeded sample of the screened corpus, and its manifest — the data identity of a model."""

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
from upath import UPath

from mixassets.automation import rerun_when_changed
from mixassets.engine.licenses import license_tags, policy_allows
from mixassets.engine.mixture import sample_mixture
from mixassets.engine.mixture_diff import drift
from mixassets.engine.rules import RULES_VERSION
from mixassets.engine.tokens import count_tokens, load_tokenizer
from mixassets.resources import ProjectResource
from mixassets.storage import JSON_EXT, EncodedTable, asset_path, json_bytes, read_json, read_table, write_atomic
from mixassets.versioning import current_data_version, hash_of, json_output, table_output

MIXTURE_INPUTS = ("screened_corpus", "base_model", "mixture_spec")
HISTORY = "mixture_manifest_history"  # every manifest ever written, by id: what `mixtrain mixture diff` compares


def manifest_history_path(root: str, manifest_id: str) -> UPath:
    return UPath(root) / HISTORY / f"{manifest_id}{JSON_EXT}"


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
    },
    ins={
        "screened_corpus": AssetIn(),
        "base_model": AssetIn(key=AssetKey("base_model"), input_manager_key="json_io_manager"),
    },
    deps=["mixture_spec", "source_manifest"],
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
def mixture(context: AssetExecutionContext, project: ProjectResource, screened_corpus: pa.Table, base_model: dict):
    proj = project.load()
    spec = proj.spec.mixture
    tokenizer = load_tokenizer(spec.tokenizer or base_model["path"])
    tokens = count_tokens(screened_corpus, tokenizer)
    allowed = [policy_allows(lic, spec.release_policy) for lic in screened_corpus.column("license").to_pylist()]
    table, stats = sample_mixture(screened_corpus, tokens, spec, allowed=allowed)
    encoded = EncodedTable.of(table)  # encoded once: the shard checksum is the written file's checksum
    tags = sorted({t for lic in set(table.column("license").to_pylist()) for t in (license_tags(lic) or ())})
    manifest = {
        "mixture_id": spec.id,
        "spec": spec.model_dump(mode="json"),
        "spec_hash": hash_of(spec.model_dump(mode="json")),
        "seed": spec.seed,
        "release_policy": spec.release_policy,
        "tokenizer": spec.tokenizer or base_model["path"],
        "inputs": {k: current_data_version(context.instance, k) for k in MIXTURE_INPUTS},
        "composition": stats,
        "license_tags_present": tags,
        "shards": [
            {"path": str(asset_path(proj.storage_root, "mixture")), "sha256": encoded.checksum, "rows": table.num_rows}
        ],
    }
    sources = read_table(asset_path(proj.storage_root, "source_manifest"))
    manifest["input_partitions"] = dict(
        zip(sources.column("source_id").to_pylist(), sources.column("gated_data_version").to_pylist(), strict=True)
    )
    manifest["rules_version"] = RULES_VERSION
    manifest["doc_ids_digest"] = stats.get("doc_ids_digest")
    manifest["phases"] = sorted(stats.get("phases", {}))
    manifest["manifest_id"] = hash_of({k: manifest[k] for k in ("spec_hash", "inputs", "shards")})
    previous_path = asset_path(proj.storage_root, "mixture_manifest", ext=JSON_EXT)
    previous = read_json(previous_path) if previous_path.exists() else None
    if previous is not None and previous.get("manifest_id") != manifest["manifest_id"]:
        manifest["previous_manifest_id"] = previous.get("manifest_id")
    elif previous is not None:
        manifest["previous_manifest_id"] = previous.get("previous_manifest_id")
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
