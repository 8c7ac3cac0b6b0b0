"""The mixture: a seeded sample of the screened corpus, and its manifest — the data identity of a model."""

import pyarrow as pa
from dagster import AssetExecutionContext, AssetIn, AssetKey, AssetOut, multi_asset

from mixassets.automation import rerun_when_changed
from mixassets.engine.licenses import license_tags, policy_allows
from mixassets.engine.mixture import sample_mixture
from mixassets.engine.tokens import count_tokens, load_tokenizer
from mixassets.resources import ProjectResource
from mixassets.storage import EncodedTable, asset_path
from mixassets.versioning import current_data_version, hash_of, json_output, table_output

MIXTURE_INPUTS = ("screened_corpus", "base_model", "mixture_spec")


@multi_asset(
    outs={
        "mixture": AssetOut(
            code_version="mixture-1",
            description="Training documents sampled by weight and cap within the token budget.",
            automation_condition=rerun_when_changed(),
        ),
        "mixture_manifest": AssetOut(
            code_version="mixture-1",
            io_manager_key="json_io_manager",
            description="Spec and hash, input data versions, per-source composition, seed, shard checksums.",
            automation_condition=rerun_when_changed(),
        ),
    },
    ins={
        "screened_corpus": AssetIn(),
        "base_model": AssetIn(key=AssetKey("base_model"), input_manager_key="json_io_manager"),
    },
    deps=["mixture_spec"],
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
    manifest["manifest_id"] = hash_of({k: manifest[k] for k in ("spec_hash", "inputs", "shards")})
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
