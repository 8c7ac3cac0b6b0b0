"""Where trained models live: one directory per version, the version's manifest kept in model_history, the
mixture handed to a training job as a local file, and the lineage a model asset shows in the UI."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mixtrain.identity import spec_hash
from mixtrain.markdown import markdown_table
from mixtrain.project import Project
from mixtrain.provenance import model_history_path
from mixtrain.storage import json_bytes, model_dir, write_atomic


def local_model_dir(proj: Project, key: str | list[str]) -> Path:
    return model_dir(proj.storage_root, key, proj.root / ".mixtrain-cache")


def model_version(*parts: object) -> str:
    """A trained model's version: a hash of everything that made it, so a rebuild on other data or another recipe
    lands in a new directory and the superseded model (and its manifest, revocation labels included) stays."""
    return spec_hash({"parts": [str(p) for p in parts]})[:16]


def lineage_markdown(mixture_manifest: dict) -> str:
    """Which sources (documents, tokens, license tags) the model saw, as recorded by the mixture manifest it used."""
    sources = mixture_manifest.get("composition", {}).get("sources", {})
    rows = [{"source": sid, "docs": s.get("docs"), "tokens": s.get("tokens")} for sid, s in sorted(sources.items())]
    tags = ", ".join(mixture_manifest.get("license_tags_present", [])) or "-"
    head = f"mixture `{mixture_manifest.get('mixture_id')}` manifest `{mixture_manifest['manifest_id']}`; tags: {tags}"
    return head + "\n\n" + markdown_table([r for r in rows if r["docs"]], ["source", "docs", "tokens"])


# Recipe fields that change how a run executes, never what it learns: they do not make a new model version.
EXECUTION_FIELDS = ("launcher", "gradient_checkpointing", "checkpoint_every", "keep_checkpoints")


def local_mixture(proj: Project, mixture: pa.Table, mixture_manifest: dict) -> str:
    """A local Parquet path of the mixture for the training job: the stored shard when the storage is local,
    else a copy in the local cache (the job may run in another process, which reads files, not objects)."""
    shards = mixture_manifest.get("shards") or []
    if len(shards) == 1 and Path(shards[0]["path"]).is_file():
        return shards[0]["path"]
    path = local_model_dir(proj, ["mixture_cache", f"{mixture_manifest['manifest_id']}.parquet"])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(mixture, str(path) + ".tmp")
    Path(str(path) + ".tmp").replace(path)
    return str(path)


def keep_version(proj: Project, asset: str, out: dict) -> None:
    write_atomic(model_history_path(proj.storage_root, asset, out["version"]), json_bytes(out))
