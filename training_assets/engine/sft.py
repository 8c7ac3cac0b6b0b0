"""LoRA supervised fine-tuning, written as one readable loop.

The loop is deliberately hand-rolled rather than ``transformers.Trainer``: every number that ends up
in ``run_manifest.json`` (the learning rate each step actually used, the token-weighted loss, the
effective batch) is computed right here, where a reader can check it, and nothing depends on a
trainer's callbacks or on its defaults shifting between releases.

Reproducibility: all RNGs are seeded from the recipe, the data order comes from its own seeded
generator, and on CPU two runs with the same inputs give bit-identical adapters.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from training_assets.engine.base_model import atomic_directory, weights_sha256
from training_assets.engine.examples import IGNORE_INDEX, tokenize_records

MANIFEST_FILE = "run_manifest.json"
# Optimiser settings the recipe does not expose; recorded in the manifest so a run can be re-created.
OPTIMIZER = {"name": "AdamW", "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "max_grad_norm": 1.0}


def _seed_everything(seed: int) -> dict[str, int]:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return {"python_random": seed, "numpy": seed, "torch": seed, "data_order": seed}


def _batches(n_examples: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless stream of example-index batches: a fresh seeded shuffle per epoch, epochs run together."""
    rng = random.Random(seed)
    pending: list[int] = []
    while True:
        while len(pending) < batch_size:
            order = list(range(n_examples))
            rng.shuffle(order)
            pending.extend(order)
        yield pending[:batch_size]
        pending = pending[batch_size:]


def _collate(examples: list[dict[str, list[int]]], pad_id: int, device: Any) -> dict[str, Any]:
    """Right-pad to the longest example; padding gets attention 0 and label IGNORE_INDEX."""
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def _hardware(device: str, dtype: str) -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    return {
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "dtype": dtype,
    }


def _packages() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": platform.python_version(),
    }


def train_lora(
    base_dir: str,
    records: list[dict[str, Any]],
    recipe: dict[str, Any],
    out_dir: str,
    *,
    data_manifest_id: str,
    base_weights_sha256: str | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``base_dir`` with LoRA on ``records``; write adapter (or merged model) + manifest to ``out_dir``.

    ``base_weights_sha256`` is the base model's ``weights_sha256`` when the caller already has it (the base model
    manifest records it); only without it is ``base_dir`` hashed here, which means reading every weight file again.
    """
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

    from mixassets.project import TrainingRecipe

    # -- configuration: validate and fill defaults so the manifest records every value that was used --
    cfg = TrainingRecipe.model_validate(recipe).model_dump(mode="json")
    lora = cfg["lora"]
    seeds = _seed_everything(cfg["seed"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    autocast = (
        torch.autocast(device_type=device, dtype=torch.bfloat16) if cfg["dtype"] == "bf16" else contextlib.nullcontext()
    )

    # -- model: fp32 master weights; bf16 only inside autocast, so optimizer updates are not rounded away --
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_config = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=list(lora["target_modules"]),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, peft_config)
    model.to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]

    # -- data --
    examples, example_stats = tokenize_records(records, tokenizer, cfg["max_seq_len"])
    if not examples:
        raise ValueError(
            f"no trainable examples: {len(records)} records gave {example_stats} "
            "(every example was empty of assistant/text tokens after truncation?)"
        )
    batches = _batches(len(examples), cfg["batch_size"], cfg["seed"])

    # -- optimisation --
    optimizer = torch.optim.AdamW(
        trainable,
        lr=cfg["lr"],
        betas=tuple(OPTIMIZER["betas"]),
        eps=OPTIMIZER["eps"],
        weight_decay=OPTIMIZER["weight_decay"],
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg["warmup_steps"], cfg["steps"])

    losses: list[float] = []
    lrs: list[float] = []
    step_tokens: list[int] = []
    t0 = time.perf_counter()
    for step in range(cfg["steps"]):
        micro = [
            _collate([examples[i] for i in next(batches)], tokenizer.pad_token_id, device)
            for _ in range(cfg["grad_accum"])
        ]
        # Normalise by the label tokens of the whole optimizer step, so the gradient equals that of one
        # big batch whatever the grad_accum split and however unevenly tokens fall into micro-batches.
        n_label = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro)
        lr = optimizer.param_groups[0]["lr"]
        loss_sum = 0.0
        for b in micro:
            with autocast:
                logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            loss = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.size(-1)),
                b["labels"][:, 1:].reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            (loss / n_label).backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(trainable, OPTIMIZER["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        tokens = sum(int(b["attention_mask"].sum()) for b in micro)
        losses.append(loss_sum / n_label)
        lrs.append(lr)
        step_tokens.append(tokens)
        if on_step is not None:
            on_step(
                {
                    "step": step + 1,
                    "steps": cfg["steps"],
                    "loss": losses[-1],
                    "lr": lr,
                    "tokens": tokens,
                    "label_tokens": n_label,
                    "elapsed_s": time.perf_counter() - t0,
                }
            )
    wall = time.perf_counter() - t0

    # -- save: adapter (or merged model) + tokenizer + manifest, all or nothing --
    manifest: dict[str, Any] = {
        "recipe": cfg,
        "optimizer": OPTIMIZER,
        "seeds": seeds,
        "data_manifest_id": data_manifest_id,
        "base_model": {
            "path": os.path.abspath(base_dir),
            "weights_sha256": base_weights_sha256 if base_weights_sha256 is not None else weights_sha256(base_dir),
        },
        "packages": _packages(),
        "hardware": _hardware(device, cfg["dtype"]),
        "effective_batch_size": cfg["batch_size"] * cfg["grad_accum"],
        "steps": cfg["steps"],
        "trainable_params": sum(p.numel() for p in trainable),
        "examples": example_stats,
        "lr": lrs,
        "loss": losses,
        "tokens": step_tokens,
        "wall_time_s": wall,
        "tokens_per_s": sum(step_tokens) / wall if wall > 0 else None,
        "merged": bool(lora["merge"]),
    }
    with atomic_directory(out_dir) as tmp:
        to_save = model.merge_and_unload() if lora["merge"] else model
        to_save.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        manifest["output_weights_sha256"] = weights_sha256(tmp)
        with open(tmp / MANIFEST_FILE, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
    return manifest
