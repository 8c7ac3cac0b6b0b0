"""Resumable training checkpoints: enough state that a resumed run continues bit-for-bit where it stopped.

A resumed run must make exactly the updates the uninterrupted one would have made, so a checkpoint holds the
trainable parameters (only the LoRA weights for a peft model: the frozen base is re-read from its own
directory), the optimizer's moments, the scheduler's position, every RNG the step consumes (Python, NumPy,
torch CPU and accelerator — dropout draws from them), and the per-step history so far. The batch stream is a
function of the step index, so the data position needs no state of its own.

Layout: ``<checkpoint_dir>/step-00000004/`` with ``trainable.safetensors``, ``state.pt`` (optimizer, scheduler,
RNG; loaded with ``weights_only=True``, so a checkpoint can hold nothing but tensors and plain values) and
``checkpoint.json`` (step, config fingerprint and the inputs behind it, history, a sha256 per file). Each is
written to a scratch directory and renamed into place, so a directory named ``step-*`` is always complete; a
crash mid-write leaves only a dot-prefixed scratch directory, which is ignored and cleaned up next time.

API:
    list_checkpoints(dir) -> [Checkpoint]        complete checkpoints, oldest first
    latest_checkpoint(dir) -> Checkpoint | None
    save_checkpoint(dir, step, *, model, optimizer, scheduler, fingerprint, fingerprint_inputs, history, keep)
    load_checkpoint(ckpt, *, model, optimizer, scheduler) -> history   (also restores the RNGs)
    check_compatible(ckpt, fingerprint, fingerprint_inputs)            raises CheckpointMismatchError
    clear_checkpoints(dir)
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixtrain.identity import file_sha256
from training_assets.engine.base_model import atomic_directory

META_FILE = "checkpoint.json"
WEIGHTS_FILE = "trainable.safetensors"
STATE_FILE = "state.pt"
FORMAT_VERSION = 1
_NAME = re.compile(r"^step-(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (damaged, or written for another model); the message names it."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint directory belongs to a run with a different configuration."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int

    def meta(self) -> dict[str, Any]:
        try:
            with open(self.path / META_FILE, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{self.path / META_FILE}: unreadable checkpoint metadata ({e})") from e


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Checkpoint]:
    root = Path(directory)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        m = _NAME.match(entry.name)
        if m and entry.is_dir() and (entry / META_FILE).is_file():
            found.append(Checkpoint(entry, int(m.group(1))))
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(directory: str | os.PathLike[str]) -> Checkpoint | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def clear_checkpoints(directory: str | os.PathLike[str]) -> None:
    """Remove every checkpoint and leftover scratch directory (a fresh start in a used directory)."""
    root = Path(directory)
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.is_dir() and (_NAME.match(entry.name) or entry.name.startswith(".step-")):
            shutil.rmtree(entry)


def capture_rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from, in types ``torch.load(weights_only=True)`` accepts."""
    import numpy as np
    import torch

    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": [int(x) for x in np_state["state"]["key"]],
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": np.asarray(n["key"], dtype=np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    # Resuming on other hardware (a CPU checkpoint on a GPU box, fewer GPUs) cannot restore those streams;
    # the run still resumes, just not bit-exactly, which is all that hardware change allows anyway.
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


def trainable_named_parameters(model: Any) -> list[tuple[str, Any]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def save_checkpoint(
    directory: str | os.PathLike[str],
    step: int,
    *,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    fingerprint: str,
    fingerprint_inputs: Mapping[str, Any],
    history: Mapping[str, Any],
    keep: int,
) -> Path:
    """Write the checkpoint for ``step`` atomically, then drop all but the newest ``keep``."""
    import torch
    from safetensors.torch import save_file

    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    target = Path(directory) / checkpoint_name(step)
    with atomic_directory(target) as tmp:
        weights = {name: p.detach().to("cpu", copy=True).contiguous() for name, p in trainable_named_parameters(model)}
        save_file(weights, str(tmp / WEIGHTS_FILE))
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": capture_rng_state()},
            tmp / STATE_FILE,
        )
        meta = {
            "format": FORMAT_VERSION,
            "step": step,
            "fingerprint": fingerprint,
            "fingerprint_inputs": fingerprint_inputs,
            "history": history,
            "files": {name: file_sha256(tmp / name) for name in (WEIGHTS_FILE, STATE_FILE)},
        }
        with open(tmp / META_FILE, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1, sort_keys=True, allow_nan=False)
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old.path, ignore_errors=True)
    return target


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(old.keys() | new.keys()):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                out.append(f"{sub}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
            else:
                out.extend(_differences(old[key], new[key], sub))
        return out
    return [] if old == new else [f"{path or '<config>'}: {old!r} -> {new!r}"]


def check_compatible(ckpt: Checkpoint, fingerprint: str, fingerprint_inputs: Mapping[str, Any]) -> None:
    """Refuse to continue a run from a checkpoint written under a different configuration."""
    meta = ckpt.meta()
    if meta.get("fingerprint") == fingerprint:
        return
    diffs = _differences(meta.get("fingerprint_inputs", {}), json.loads(json.dumps(fingerprint_inputs)))
    shown = "; ".join(diffs[:8]) + (f"; ... {len(diffs) - 8} more" if len(diffs) > 8 else "")
    raise CheckpointMismatchError(
        f"{ckpt.path}: checkpoint was written by a run with a different configuration "
        f"({shown or 'fingerprint differs'}). Resuming it would mix two runs; use another checkpoint directory, "
        "or start fresh with resume=False (which deletes these checkpoints)."
    )


def load_checkpoint(ckpt: Checkpoint, *, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Restore parameters, optimizer, scheduler and RNGs from ``ckpt``; return its history."""
    import torch
    from safetensors.torch import load_file

    meta = ckpt.meta()
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{ckpt.path}: checkpoint format {meta.get('format')!r}, expected {FORMAT_VERSION}")
    for name, digest in meta["files"].items():
        path = ckpt.path / name
        if not path.is_file() or file_sha256(path) != digest:
            raise CheckpointError(f"{path}: missing or damaged (sha256 does not match {META_FILE})")

    saved = load_file(str(ckpt.path / WEIGHTS_FILE))
    params = dict(trainable_named_parameters(model))
    if saved.keys() != params.keys():
        missing, unexpected = sorted(params.keys() - saved.keys()), sorted(saved.keys() - params.keys())
        raise CheckpointError(
            f"{ckpt.path / WEIGHTS_FILE}: trainable parameters do not match the model "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    with torch.no_grad():
        for name, p in params.items():
            if saved[name].shape != p.shape:
                raise CheckpointError(
                    f"{ckpt.path / WEIGHTS_FILE}: '{name}' has shape {tuple(saved[name].shape)}, "
                    f"the model {tuple(p.shape)}"
                )
            p.copy_(saved[name])

    state = torch.load(ckpt.path / STATE_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng_state(state["rng"])
    return meta["history"]
