"""Where trained models live and how a training asset records one: one directory per version, the model record
kept in model_history, the mixture handed to a training job as a local file, and the lineage a model asset shows
in the UI. Every trained-model asset ends in :func:`train_and_record`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, AssetIn, MetadataValue, Output, asset

from mixtrain.automation import rerun_when_changed
from mixtrain.identity import relative_path, resolve_relative, spec_hash
from mixtrain.markdown import markdown_table
from mixtrain.model_store import publish_model
from mixtrain.project import Project
from mixtrain.provenance import model_history_path
from mixtrain.storage import json_bytes, model_dir, write_atomic
from mixtrain.versioning import json_output
from training_assets.engine.config import DistillConfig
from training_assets.engine.curves import log_history, sampled
from training_assets.engine.jobs import TrainJob
from training_assets.records import BasePin, ModelRecord
from training_assets.resources import TrainingLauncher

JSON_IO = "json_io_manager"


def training_asset(**kwargs: Any) -> Any:
    """``@asset`` of the training group: the output is a JSON record, rerun when what made it changed."""
    return asset(io_manager_key=JSON_IO, automation_condition=rerun_when_changed(), group_name="training", **kwargs)


def model_inputs(*records: str) -> dict[str, AssetIn]:
    """A training asset's inputs: the mixture table, its manifest and the named records (``base_model``, ...)."""
    return {
        "mixture": AssetIn(),
        **{name: AssetIn(input_manager_key=JSON_IO) for name in ("mixture_manifest", *records)},
    }


# Recipe fields that change how a run executes, never what it learns: they do not make a new model version.
RECIPE_EXECUTION_FIELDS = (
    "launcher",
    "torchrun",
    "k8s",
    "gradient_checkpointing",
    "checkpoint_every",
    "keep_checkpoints",
    "compile",
)
# Recipe fields a model version already covers another way: which base weights a revision loads is in the base's
# weights hash, a part of every version.
RECIPE_COVERED_FIELDS = ("base_model_revision",)


def model_cache(proj: Project) -> Path:
    """Where models of a remote storage root are built and read locally (transformers reads local files only)."""
    return proj.root / ".mixtrain-cache"


def local_model_dir(proj: Project, key: str | list[str]) -> Path:
    return model_dir(proj.storage_root, key, model_cache(proj))


def base_pin(base_model: dict[str, Any]) -> BasePin:
    """What an adapter record (and so a release of it) pins of the base it was trained on."""
    return {
        "key": ["base_model"],
        "version": base_model.get("version"),
        "location": base_model["location"],
        "weights_sha256": base_model["weights_sha256"],
        "tokenizer_sha256": base_model.get("tokenizer_sha256"),
    }


def model_version(*parts: object) -> str:
    """A trained model's version: a hash of everything that made it, so a rebuild on other data or another recipe
    lands in a new directory and the superseded model (and its record, revocation labels included) stays."""
    return spec_hash({"parts": [str(p) for p in parts]})[:16]


def recipe_hash(recipe: dict[str, Any], data_filter: dict[str, Any] | None = None) -> str:
    """The part of a model version a training recipe contributes: its fields that change what is learnt."""
    learnt = {k: v for k, v in recipe.items() if k not in (*RECIPE_EXECUTION_FIELDS, *RECIPE_COVERED_FIELDS)}
    return spec_hash(learnt if data_filter is None else {"recipe": learnt, "data_filter": data_filter})


def phase_order(mixture_manifest: dict) -> list[str] | None:
    """The curriculum order training follows, as the manifest records it (``phase_order`` is part of the
    manifest id, so a reordered curriculum is a new model version). Manifests written before the field existed
    name the order only in their ``spec``."""
    order = mixture_manifest.get("phase_order")
    if order is None:
        order = [p["name"] for p in (mixture_manifest.get("spec") or {}).get("phases") or []]
    return list(order) or None


def lineage_markdown(mixture_manifest: dict) -> str:
    """Which sources (documents, tokens, license tags) the model saw, as recorded by the mixture manifest it used."""
    sources = mixture_manifest.get("composition", {}).get("sources", {})
    rows = [{"source": sid, "docs": s.get("docs"), "tokens": s.get("tokens")} for sid, s in sorted(sources.items())]
    tags = ", ".join(mixture_manifest.get("license_tags_present", [])) or "-"
    head = f"mixture `{mixture_manifest.get('mixture_id')}` manifest `{mixture_manifest['manifest_id']}`; tags: {tags}"
    return head + "\n\n" + markdown_table([r for r in rows if r["docs"]], ["source", "docs", "tokens"])


def _write_parquet(proj: Project, rows: pa.Table, name: str) -> dict[str, Any]:
    """``rows`` as a local Parquet file in the mixture cache (the job reads files), with the checksum of the
    bytes written."""
    sink = pa.BufferOutputStream()
    pq.write_table(rows, sink)
    data = sink.getvalue().to_pybytes()
    path = local_model_dir(proj, ["mixture_cache", name])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    # Named relative to the storage root, as the mixture manifest names its shards: training run manifests
    # record these, and a checkpoint must match them in a moved project too.
    name = relative_path(str(path), proj.storage_root)
    return {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "rows": rows.num_rows}


def local_mixture(proj: Project, mixture: pa.Table, mixture_manifest: dict) -> str:
    """A local Parquet path of the mixture for the training job: the stored shard when the storage is local,
    else a copy in the local cache (the job may run in another process, which reads files, not objects)."""
    shards = [resolve_relative(s["path"], proj.storage_root) for s in mixture_manifest.get("shards") or []]
    if len(shards) == 1 and Path(shards[0]).is_file():
        return shards[0]
    return resolve_relative(
        _write_parquet(proj, mixture, f"{mixture_manifest['manifest_id']}.parquet")["path"], proj.storage_root
    )


def mixture_slice(proj: Project, rows: pa.Table, name: str) -> dict[str, Any]:
    """Part of the mixture (a task adapter's rows) as a local shard ``{"path", "sha256", "rows"}``."""
    return _write_parquet(proj, rows, name)


def keep_version(proj: Project, asset: str, record: ModelRecord) -> None:
    write_atomic(model_history_path(proj.storage_root, asset, record["version"]), json_bytes(record))


def loss_curve_markdown(run: dict[str, Any]) -> str:
    """The loss curve as the asset page shows it: a dozen steps spread over the run (the full log history and
    an SVG plot are ``trainer_state.json`` and ``loss_curve.svg`` next to the weights)."""
    rows = [
        {
            "step": e["step"],
            "loss": e["loss"],
            "lr": f"{e.get('learning_rate', 0.0):.2e}",
            "tokens": e.get("num_tokens"),
        }
        for e in sampled(log_history(run))
    ]
    tokens_per_s = run.get("tokens_per_s")
    tail = f"\n\nWhole run: {float(tokens_per_s):.0f} tokens/s." if tokens_per_s else ""
    return markdown_table(rows, ["step", "loss", "lr", "tokens"]) + tail


def run_metadata(run: dict[str, Any], job: TrainJob, version: str, mixture_manifest: dict) -> dict[str, Any]:
    """What a trained-model asset shows in the UI."""
    losses = run["loss"]
    metadata: dict[str, Any] = {
        # single steps are noisy (mixed sources per batch): report the mean of the first and last five
        "loss_start": sum(losses[:5]) / len(losses[:5]),
        "loss_end": sum(losses[-5:]) / len(losses[-5:]),
        "steps": len(losses),
        "tokens_per_s": float(run.get("tokens_per_s") or 0.0),
        "wall_time_s": float(run.get("wall_time_s") or 0.0),
        "effective_batch_size": int(run.get("effective_batch_size", 0)),
        "trainable_params": int(run.get("trainable_params", 0)),
        "data_manifest_id": mixture_manifest["manifest_id"],
        "version": version,
        "lineage": MetadataValue.md(lineage_markdown(mixture_manifest)),
        "loss_curve": MetadataValue.md(loss_curve_markdown(run)),
    }
    if isinstance(job.config, DistillConfig):
        metadata["kd_ratio"] = float(job.config.kd_ratio)
        metadata["kd_loss"] = str(run.get("distillation", {}).get("loss", job.config.loss))
    return metadata


def train_and_record(
    context: AssetExecutionContext,
    proj: Project,
    launcher: TrainingLauncher,
    job: TrainJob,
    key: list[str],
    version: str,
    mixture_manifest: dict,
    *,
    label: str | None = None,
    **fields: Any,
) -> Output:
    """Run ``job`` (its ``out_dir`` is ``key``/``version``), publish the model as that version of ``key`` (the
    live one, see :mod:`mixtrain.model_store`), keep its record in the model history under ``label`` (default:
    the asset key) and return the record as the asset's output; ``fields`` are the record's own entries
    (``base_model_path``, ``base``, ``teacher``, ...)."""
    run = launcher.launch(context, job, proj.spec.training)
    published = publish_model(job.out_dir, proj.storage_root, key, model_cache(proj), version=version)
    # The record names the model's directories relative to the storage root (see base_model): a moved project
    # finds them where it now is.
    path, location = (relative_path(p, proj.storage_root) for p in (published["local_path"], published["location"]))
    record: ModelRecord = {
        "version": version,
        "path": path,
        "location": location,
        "key": list(key),
        "tokenizer_sha256": published["tokenizer_sha256"],
        **fields,
        "run_manifest": run,
    }
    keep_version(proj, label or key[0], record)
    # The data version is the weights hash the engine computed when it wrote them.
    return json_output(record, run["output_weights_sha256"], run_metadata(run, job, version, mixture_manifest))
