"""The run manifest: everything needed to re-create a training run, and to tell whether a rerun changed anything.

A manifest mixes two kinds of facts. Most are *determined by the inputs* — the resolved config, seeds, data and
base-model identity, package versions, and (on a given device) the loss and learning-rate curves and the output
weights hash. A few are *facts about this execution* — wall time, throughput, the hardware, where the run resumed
from, the project's git state. The second kind lives only under the keys in ``VOLATILE_KEYS``, so
``stable_fingerprint`` can drop them and two runs with unchanged inputs (one of them interrupted and resumed, even)
get the same fingerprint, which is what lets an orchestrator treat such a rerun as a no-op.

The git commit is volatile on purpose: any unrelated commit (docs, another stage) would otherwise force retraining;
changes to the training code itself are signalled by the asset's code version.

The identity helpers it records with (canonical JSON, package versions, git state, hardware) are
:mod:`mixtrain.identity`'s, shared with every other record the project writes.

API:
    stable_fingerprint(manifest) -> str     fingerprint of the manifest without VOLATILE_KEYS
    build_run_manifest(...) -> dict          the standard layout, filled from a loop.LoopResult
    publish_run(out_dir, model, tokenizer, config, manifest)
                                             weights + tokenizer + training_config.json + run_manifest.json,
                                             all or nothing; sets manifest["output_weights_sha256"]
    write_run_manifest(path, manifest)       pretty, sorted JSON
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixtrain.identity import canonical_json, fingerprint, git_state, hardware, package_versions, weights_sha256
from training_assets.engine.base_model import atomic_directory
from training_assets.engine.curves import write_curves

if TYPE_CHECKING:
    from training_assets.engine.config import TrainConfig
    from training_assets.engine.loop import LoopResult

RUN_MANIFEST_FILE = "run_manifest.json"

# Facts about this execution rather than consequences of the inputs; excluded from stable_fingerprint.
VOLATILE_KEYS = frozenset({"hardware", "wall_time_s", "tokens_per_s", "execution", "git"})


def stable_fingerprint(manifest: Mapping[str, Any]) -> str:
    """Hash of the manifest's input-determined part: equal for reruns (or resumed runs) of unchanged inputs."""
    return fingerprint({k: v for k, v in manifest.items() if k not in VOLATILE_KEYS})


def _json_ready(name: str, value: Any) -> Any:
    """Round-trip through JSON now, so a value that cannot be recorded fails here, naming the field."""
    try:
        return json.loads(canonical_json(value))
    except (TypeError, ValueError) as e:
        raise ValueError(f"run manifest field '{name}' is not JSON-serialisable: {e}") from e


def build_run_manifest(
    result: LoopResult,
    *,
    config: Mapping[str, Any],
    seeds: Mapping[str, int],
    data_manifest_id: str,
    base_model: Mapping[str, Any],
    effective_batch_size: int,
    data_shards: Sequence[Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    execution: Mapping[str, Any] | None = None,
    project_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The standard manifest layout for a finished ``run_loop``.

    ``config`` entries (e.g. ``recipe``, ``options``, ``optimizer``) become top-level keys, as do ``extra``
    entries (stable facts such as example counts); ``execution`` holds run-specific settings (device requested,
    checkpoint directory, resume flag) and is volatile. ``data_shards`` is recorded as given, typically
    ``[{"path": ..., "sha256": ...}]``.
    """
    stable: dict[str, Any] = {
        **{k: _json_ready(k, v) for k, v in config.items()},
        "seeds": dict(seeds),
        "data_manifest_id": data_manifest_id,
        "data_shards": _json_ready("data_shards", list(data_shards or [])),
        "base_model": _json_ready("base_model", dict(base_model)),
        "packages": package_versions(),
        "config_fingerprint": result.fingerprint,
        "effective_batch_size": effective_batch_size,
        "steps": result.steps,
        **result.curves(),
        **{k: _json_ready(k, v) for k, v in (extra or {}).items()},
    }
    clash = VOLATILE_KEYS & stable.keys()
    if clash:
        raise ValueError(f"run manifest: keys {sorted(clash)} are reserved for execution facts")
    volatile = {
        "hardware": hardware(result.device, result.dtype),
        "wall_time_s": result.wall_time_s,
        "tokens_per_s": result.tokens_per_s,
        "git": git_state(project_dir),
        "execution": {
            **_json_ready("execution", dict(execution or {})),
            "world_size": result.world_size,
            "resumed_from_step": result.resumed_from_step,
            "session_wall_time_s": result.session_wall_time_s,
            "last_checkpoint": result.last_checkpoint,
        },
    }
    return {**stable, **volatile}


def publish_run(
    out_dir: str | os.PathLike[str], model: Any, tokenizer: Any, config: TrainConfig, manifest: dict[str, Any]
) -> None:
    """Write the trained model, its tokenizer, its config, its loss curve (:mod:`.curves`) and its run manifest to
    ``out_dir``, all or nothing.

    The weights hash is computed from the files just written and recorded as ``output_weights_sha256``.
    """
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        config.save(tmp)
        manifest["output_weights_sha256"] = weights_sha256(tmp)
        write_curves(tmp, manifest)  # trainer_state.json + loss_curve.svg, from the manifest's per-step curves
        write_run_manifest(tmp / RUN_MANIFEST_FILE, manifest)


def read_run_manifest(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest a finished run published in ``out_dir`` (what the other ranks and launchers return)."""
    path = Path(out_dir) / RUN_MANIFEST_FILE
    if not path.is_file():
        raise RuntimeError(f"training finished without writing {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def write_run_manifest(path: str | os.PathLike[str], manifest: Mapping[str, Any]) -> None:
    text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
