"""LoRA supervised fine-tuning: model, data and loss set up here, optimisation by ``loop.run_loop``.

The loop is deliberately hand-rolled rather than ``transformers.Trainer``: every number that ends up in
``run_manifest.json`` (the learning rate each step actually used, the token-weighted loss, the effective batch)
is computed in ``loop.py``, where a reader can check it, and nothing depends on a trainer's callbacks or on its
defaults shifting between releases.

Reproducibility: all RNGs are seeded from the recipe, the data order comes from its own seeded generator and is
a function of the step index, and on CPU two runs with the same inputs give bit-identical adapters — also when
one of them was interrupted and resumed from a checkpoint.

API:
    train_lora(base_dir, records, config, out_dir, *, data_manifest_id, base_weights_sha256=None, on_step=None,
               data_shards=None, phase_order=None, project_dir=None) -> run manifest dict
    causal_lm_loss(model, batch) -> (loss_sum, n_label_tokens)      next-token cross-entropy, summed
    TrainingStopped: raised when ``config.stop_after`` ended the run before its last step.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from training_assets.engine.accel import attention_implementation
from training_assets.engine.base_model import weights_sha256
from training_assets.engine.batching import StepBatches, schedule_summary
from training_assets.engine.checkpoint import clear_checkpoints, list_checkpoints
from training_assets.engine.config import SFTConfig
from training_assets.engine.distributed import current_world, on_main_rank
from training_assets.engine.examples import IGNORE_INDEX
from training_assets.engine.loop import resolve_device, run_loop, seed_everything
from training_assets.engine.packing import document_attention_for, flat_collate, pack_plan
from training_assets.engine.run_manifest import build_run_manifest, publish_run, read_run_manifest
from training_assets.engine.shards import Source, scan_mixture

CHECKPOINT_SUFFIX = ".checkpoints"


class TrainingStopped(RuntimeError):
    """``stop_after`` ended the run early; its checkpoint is on disk and nothing was written to ``out_dir``."""

    def __init__(self, step: int, steps: int, checkpoint: str | None) -> None:
        self.step, self.steps, self.checkpoint = step, steps, checkpoint
        super().__init__(f"training stopped after step {step} of {steps} (stop_after); resume from {checkpoint}")


def causal_lm_loss(model: Any, batch: Mapping[str, Any]) -> tuple[Any, int]:
    """Next-token cross-entropy summed over labelled positions, and how many there were.

    The output layer runs only at positions that carry a label: in chat SFT most tokens are prompt, and a full
    ``[batch, seq, vocab]`` logits tensor (49,152 wide for SmolLM2, cast to fp32) costs more time and memory
    than the rest of the step. The decoder is called directly (LoRA layers live inside it, so they still apply)
    and the selected hidden states go through the LM head; a model without that split gets the full logits.
    """
    import torch.nn.functional as F

    model_inputs = ("input_ids", "attention_mask", "position_ids", "document_lengths")
    inputs = {k: batch[k] for k in model_inputs if k in batch}
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE_INDEX
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder, head = getattr(inner, "model", None), getattr(inner, "lm_head", None)
    # No KV cache in training; with flat rows under flash attention a cache would also let documents
    # attend to each other (see packing.flat_collate).
    if decoder is not None and head is not None:
        hidden = decoder(**inputs, use_cache=False).last_hidden_state[:, :-1]
        logits = head(hidden[keep]).float()
        loss = F.cross_entropy(logits, labels[keep], reduction="sum")
    else:
        full = model(**inputs, use_cache=False).logits[:, :-1].float()
        loss = F.cross_entropy(
            full.reshape(-1, full.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
    return loss, int(keep.sum())


def train_lora(
    base_dir: str,
    records: Source,
    config: SFTConfig,
    out_dir: str,
    *,
    data_manifest_id: str,
    base_weights_sha256: str | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    data_shards: Sequence[Any] | None = None,
    phase_order: Sequence[str] | None = None,
    project_dir: str | None = None,
) -> dict[str, Any]:
    """Fine-tune ``base_dir`` with LoRA on ``records`` as ``config`` says; write adapter (or merged model),
    ``training_config.json`` and ``run_manifest.json`` to ``out_dir``; return the run manifest.

    ``base_weights_sha256`` is the base model's ``weights_sha256`` when the caller already has it (the base model
    record holds it); only without it is ``base_dir`` hashed here, which means reading every weight file again.
    ``data_shards`` (e.g. ``[{"path", "sha256"}]``) are recorded in the manifest and are part of what a checkpoint
    must match. Records with a ``phase`` field are trained phase by phase, in ``phase_order`` (default: order of
    first appearance, which is the curriculum order of a mixture table); steps are shared out by tokens. With
    ``packing`` a micro-batch is ``batch_size`` packed rows (up to ``max_seq_len`` tokens, several examples each)
    instead of ``batch_size`` examples; either way it runs as one row of its examples back to back, no padding.
    ``project_dir`` is where the git commit is read (default: this code's checkout).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not isinstance(config, SFTConfig):
        raise TypeError(f"train_lora: config must be an SFTConfig (SFTConfig.from_recipe), got {type(config).__name__}")
    cfg, lora = config, config.lora
    seeds = seed_everything(cfg.seed)  # LoRA init draws from torch's RNG
    device = resolve_device(cfg.device)

    # -- model: fp32 master weights; bf16 only inside autocast, so optimizer updates are not rounded away --
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        base_dir, dtype=torch.float32, attn_implementation=attention_implementation(device)
    )
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, peft_config)

    # -- data: a text-free index of the examples (shared out between ranks), the rows they pack into --
    world = current_world()
    index = scan_mixture(records, tokenizer, cfg.max_seq_len, phase_order=phase_order, world=world)
    example_stats, phase_names = index.stats, index.phase_names
    if not index.lengths:
        raise ValueError(
            f"no trainable examples: {index.records} records gave {example_stats} "
            "(every example was empty of assistant/text tokens after truncation?)"
        )
    packing_stats = None
    if cfg.packing:
        rows, item_phase, packing_stats = pack_plan(index.lengths, cfg.max_seq_len, phase_of=index.phases)
        item_tokens = [sum(index.lengths[i] for i in row) for row in rows]
    else:
        rows, item_phase, item_tokens = [[i] for i in range(len(index.lengths))], index.phases, index.lengths
    phases = schedule_summary(
        item_phase, item_tokens, cfg.steps, cfg.batch_size, grad_accum=cfg.grad_accum, names=phase_names
    )

    # -- identity: what a checkpoint must agree on, and what the manifest records --
    base_identity = {
        "path": os.path.abspath(base_dir),
        "weights_sha256": base_weights_sha256 if base_weights_sha256 is not None else weights_sha256(base_dir),
    }
    learnt = cfg.learnt()
    run_key = {
        "recipe": {**learnt, "lora": {k: v for k, v in learnt["lora"].items() if k != "merge"}},  # merge: save-time
        "data_manifest_id": data_manifest_id,
        "data_shards": list(data_shards or []),
        "phases": phase_names,
        "base_weights_sha256": base_identity["weights_sha256"],
    }
    loop_cfg = cfg.loop_config(device)
    # A checkpoint directory left by an interrupted run is picked up even when this call asks for no
    # checkpointing: that is what makes "run it again" resume. A successful run deletes its checkpoints.
    checkpoint_dir = cfg.checkpoint_dir or os.path.abspath(out_dir) + CHECKPOINT_SUFFIX
    if not (cfg.uses_checkpoints() or list_checkpoints(checkpoint_dir)):
        checkpoint_dir = None

    # A micro-batch is its examples (or packed rows' examples) back to back in one row, attended document by
    # document: what padded rows compute, with no work spent on padding or on attention across documents.
    with document_attention_for(model) as by_document:
        collate = functools.partial(flat_collate, document_lengths=by_document)
        batches = StepBatches(
            item_phase,
            item_tokens,
            lambda ids: collate([index.example(e) for i in ids for e in rows[i]]),
            batch_size=cfg.batch_size,
            steps=cfg.steps,
            seed=cfg.seed,
            grad_accum=cfg.grad_accum,
        )
        # Each rank reads the tokens of its own micro-batches only (one process: already held from the scan).
        index.load(records, tokenizer, (e for i in batches.items_of_rank(world.rank, world.size) for e in rows[i]))
        result = run_loop(
            model,
            batches,
            causal_lm_loss,
            loop_cfg,
            checkpoint_dir=checkpoint_dir,
            resume=cfg.resume,
            run_key=run_key,
            on_step=on_step,
        )
    if not result.completed:
        raise TrainingStopped(result.step, result.steps, result.last_checkpoint)

    # -- save (rank 0 alone): adapter (or merged model) + tokenizer + config + manifest, all or nothing --
    def publish() -> dict[str, Any]:
        manifest = build_run_manifest(
            result,
            config={"recipe": learnt, "optimizer": loop_cfg.optimizer_record()},
            seeds=seeds,
            data_manifest_id=data_manifest_id,
            data_shards=data_shards,
            base_model=base_identity,
            effective_batch_size=cfg.batch_size * cfg.grad_accum,
            extra={
                "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "examples": example_stats,
                "chat_templates": index.templates_manifest(),
                "phases": phases,
                "packing": packing_stats,
                "merged": lora.merge,
            },
            execution={**cfg.execution(), "checkpoint_dir": checkpoint_dir},
            project_dir=project_dir,
        )
        publish_run(out_dir, model.merge_and_unload() if lora.merge else model, tokenizer, cfg, manifest)
        if checkpoint_dir is not None:
            # The adapter is published: nothing is left to resume, and a stale final checkpoint would make the
            # next run with a changed recipe fail as a mismatch.
            clear_checkpoints(checkpoint_dir)
            with contextlib.suppress(OSError):
                os.rmdir(checkpoint_dir)
        return manifest

    return on_main_rank(current_world(), publish, lambda: read_run_manifest(out_dir))
