"""LoRA supervised fine-tuning: model, data and loss set up here, optimisation by ``loop.run_loop``.

The loop is deliberately hand-rolled rather than ``transformers.Trainer``: every number that ends up in
``run_manifest.json`` (the learning rate each step actually used, the token-weighted loss, the effective batch)
is computed in ``loop.py``, where a reader can check it, and nothing depends on a trainer's callbacks or on its
defaults shifting between releases.

Reproducibility: all RNGs are seeded from the recipe, the data order comes from its own seeded generator and is
a function of the step index, and on CPU two runs with the same inputs give bit-identical adapters — also when
one of them was interrupted and resumed from a checkpoint.

API:
    train_lora(base_dir, records, recipe, out_dir, *, data_manifest_id, base_weights_sha256=None, on_step=None,
               options=None, data_shards=None, phase_order=None, project_dir=None) -> manifest dict
    TrainOptions: loop and checkpoint settings the recipe does not (yet) carry; see its fields.
    causal_lm_loss(model, batch) -> (loss_sum, n_label_tokens)      next-token cross-entropy, summed
    TrainingStopped: raised when ``options.stop_after`` ended the run before its last step.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from training_assets.engine.base_model import atomic_directory, weights_sha256
from training_assets.engine.batching import batch_stream, phase_indices, schedule_summary
from training_assets.engine.checkpoint import clear_checkpoints, list_checkpoints
from training_assets.engine.examples import IGNORE_INDEX, prepare_examples
from training_assets.engine.loop import LoopConfig, resolve_device, run_loop, seed_everything
from training_assets.engine.packing import document_attention_for, flat_collate, pack_examples
from training_assets.engine.run_manifest import build_run_manifest, write_manifest

MANIFEST_FILE = "run_manifest.json"
CHECKPOINT_SUFFIX = ".checkpoints"


class TrainingStopped(RuntimeError):
    """``stop_after`` ended the run early; its checkpoint is on disk and nothing was written to ``out_dir``."""

    def __init__(self, step: int, steps: int, checkpoint: str | None) -> None:
        self.step, self.steps, self.checkpoint = step, steps, checkpoint
        super().__init__(f"training stopped after step {step} of {steps} (stop_after); resume from {checkpoint}")


class TrainOptions(BaseModel):
    """Settings beyond ``TrainingRecipe``. A field of the same name in the recipe is used unless given here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- change what is learnt (recorded in the manifest's stable part) --
    packing: bool = Field(
        False, description="a micro-batch is batch_size packed rows (<= max_seq_len tokens), not batch_size examples"
    )
    lr_schedule: Literal["linear", "cosine", "constant_with_warmup"] = Field(
        "linear", description="learning-rate shape after the linear warm-up"
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay")
    max_grad_norm: float = Field(1.0, ge=0, description="clip the global gradient norm to this (0: no clipping)")
    # -- change only how the run executes --
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward to save memory")
    checkpoint_every: int = Field(
        0, ge=0, description="save a resumable checkpoint every N steps (0: none on a schedule)"
    )
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept on disk (newest first)")
    checkpoint_dir: str | None = Field(
        None,
        description=f"where checkpoints go (default '<out_dir>{CHECKPOINT_SUFFIX}'); deleted after a successful run",
    )
    resume: bool | None = Field(
        None, description="None: resume from a matching checkpoint if any; True: require one; False: start over"
    )
    stop_after: int | None = Field(
        None, gt=0, description="stop after this step (checkpointed), raising TrainingStopped"
    )
    device: str | None = Field(None, description="torch device; default cuda > mps > cpu")

    def uses_checkpoints(self) -> bool:
        return (
            self.checkpoint_dir is not None or self.checkpoint_every > 0 or bool(self.resume) or bool(self.stop_after)
        )


_EXECUTION_FIELDS = (
    "gradient_checkpointing",
    "checkpoint_every",
    "keep_checkpoints",
    "checkpoint_dir",
    "resume",
    "stop_after",
    "device",
)


def _resolve_options(cfg: Mapping[str, Any], options: TrainOptions | Mapping[str, Any] | None) -> TrainOptions:
    given = options.model_dump(exclude_unset=True) if isinstance(options, TrainOptions) else dict(options or {})
    from_recipe = {k: cfg[k] for k in TrainOptions.model_fields if k in cfg}
    return TrainOptions.model_validate({**from_recipe, **given})


class _StepBatches:
    """``next_micro_batches`` for ``run_loop``: the micro-batches of a step, as a function of the step.

    Items are examples or packed rows, ``collate`` makes one micro-batch of them. The index stream is
    ``batching.batch_stream`` (phases in curriculum order, seeded shuffles inside each), started at the first
    step asked for; asking for any other step than the next one restarts it there, so a resumed run gets the
    batches the uninterrupted one had.
    """

    def __init__(
        self,
        items: list[dict[str, Any]],
        phase_of: list[int],
        tokens: list[int],
        cfg: Mapping[str, Any],
        collate: Callable[[list[dict[str, Any]]], dict[str, Any]],
    ) -> None:
        self._items, self._phase_of, self._tokens, self._cfg, self._collate = items, phase_of, tokens, cfg, collate
        self._stream: Iterator[list[list[int]]] | None = None
        self._next_step = -1

    def __call__(self, step: int) -> list[dict[str, Any]]:
        if self._stream is None or step != self._next_step:
            self._stream = batch_stream(
                self._phase_of,
                self._tokens,
                self._cfg["batch_size"],
                self._cfg["steps"],
                self._cfg["seed"],
                grad_accum=self._cfg["grad_accum"],
                start_step=step,
            )
        self._next_step = step + 1
        return [self._collate([self._items[i] for i in ids]) for ids in next(self._stream)]


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
    records: list[dict[str, Any]],
    recipe: dict[str, Any],
    out_dir: str,
    *,
    data_manifest_id: str,
    base_weights_sha256: str | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    options: TrainOptions | Mapping[str, Any] | None = None,
    data_shards: Sequence[Any] | None = None,
    phase_order: Sequence[str] | None = None,
    project_dir: str | None = None,
) -> dict[str, Any]:
    """Fine-tune ``base_dir`` with LoRA on ``records``; write adapter (or merged model) + manifest to ``out_dir``.

    ``base_weights_sha256`` is the base model's ``weights_sha256`` when the caller already has it (the base model
    manifest records it); only without it is ``base_dir`` hashed here, which means reading every weight file again.
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

    from mixtrain.config.training import TrainingRecipe

    # -- configuration: validate and fill defaults so the manifest records every value that was used --
    cfg = TrainingRecipe.model_validate(recipe).model_dump(mode="json")
    opts = _resolve_options(cfg, options)
    # Execution settings the recipe may carry are recorded under "execution" (volatile), so changing how often
    # to checkpoint neither refuses the checkpoints nor changes the manifest's stable fingerprint.
    cfg = {k: v for k, v in cfg.items() if k not in _EXECUTION_FIELDS}
    lora = cfg["lora"]
    seeds = seed_everything(cfg["seed"])  # LoRA init draws from torch's RNG
    device = resolve_device(opts.device)

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

    # -- data: examples, their curriculum phases, optionally packed into full rows --
    prepared = prepare_examples(records, tokenizer, cfg["max_seq_len"])
    examples, example_stats = prepared.examples, prepared.stats
    if not examples:
        raise ValueError(
            f"no trainable examples: {len(records)} records gave {example_stats} "
            "(every example was empty of assistant/text tokens after truncation?)"
        )
    record_phase, phase_names = phase_indices(records, phase_order)
    phase_of = [record_phase[e["record"]] for e in examples]
    packing_stats = None
    if opts.packing:
        items, packing_stats = pack_examples(examples, cfg["max_seq_len"], tokenizer.pad_token_id, phase_of=phase_of)
        item_phase, item_tokens = [r["phase"] for r in items], [r["n_tokens"] for r in items]
    else:
        items, item_phase, item_tokens = examples, phase_of, [len(e["input_ids"]) for e in examples]
    phases = schedule_summary(
        item_phase, item_tokens, cfg["steps"], cfg["batch_size"], grad_accum=cfg["grad_accum"], names=phase_names
    )

    # -- identity: what a checkpoint must agree on, and what the manifest records --
    base_identity = {
        "path": os.path.abspath(base_dir),
        "weights_sha256": base_weights_sha256 if base_weights_sha256 is not None else weights_sha256(base_dir),
    }
    learning_options = opts.model_dump(exclude=set(_EXECUTION_FIELDS))
    recipe_for_key = {**cfg, "lora": {k: v for k, v in lora.items() if k != "merge"}}  # merging is save-time only
    run_key = {
        "recipe": recipe_for_key,
        "options": learning_options,
        "data_manifest_id": data_manifest_id,
        "data_shards": list(data_shards or []),
        "phases": phase_names,
        "base_weights_sha256": base_identity["weights_sha256"],
    }
    loop_cfg = LoopConfig(
        steps=cfg["steps"],
        lr=cfg["lr"],
        warmup_steps=cfg["warmup_steps"],
        seed=cfg["seed"],
        dtype=cfg["dtype"],
        schedule=opts.lr_schedule,
        weight_decay=opts.weight_decay,
        max_grad_norm=opts.max_grad_norm,
        gradient_checkpointing=opts.gradient_checkpointing,
        checkpoint_every=opts.checkpoint_every,
        keep_checkpoints=opts.keep_checkpoints,
        stop_after=opts.stop_after,
        device=device,
    )
    optimizer = loop_cfg.optimizer_record()
    # A checkpoint directory left by an interrupted run is picked up even when this call asks for no
    # checkpointing: that is what makes "run it again" resume. A successful run deletes its checkpoints.
    checkpoint_dir = opts.checkpoint_dir or os.path.abspath(out_dir) + CHECKPOINT_SUFFIX
    if not (opts.uses_checkpoints() or list_checkpoints(checkpoint_dir)):
        checkpoint_dir = None

    # A micro-batch is its examples (or packed rows' examples) back to back in one row, attended document by
    # document: what padded rows compute, with no work spent on padding or on attention across documents.
    with document_attention_for(model) as by_document:
        batches = _StepBatches(
            items, item_phase, item_tokens, cfg, functools.partial(flat_collate, document_lengths=by_document)
        )
        result = run_loop(
            model,
            batches,
            causal_lm_loss,
            loop_cfg,
            checkpoint_dir=checkpoint_dir,
            resume=opts.resume,
            run_key=run_key,
            on_step=on_step,
        )
    if not result.completed:
        raise TrainingStopped(result.step, result.steps, result.last_checkpoint)

    # -- save: adapter (or merged model) + tokenizer + manifest, all or nothing --
    manifest = build_run_manifest(
        result,
        config={"recipe": cfg, "options": learning_options, "optimizer": optimizer},
        seeds=seeds,
        data_manifest_id=data_manifest_id,
        data_shards=data_shards,
        base_model=base_identity,
        effective_batch_size=cfg["batch_size"] * cfg["grad_accum"],
        extra={
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "examples": example_stats,
            "chat_templates": prepared.templates_manifest(),
            "phases": phases,
            "packing": packing_stats,
            "merged": bool(lora["merge"]),
        },
        execution={**{k: getattr(opts, k) for k in _EXECUTION_FIELDS}, "checkpoint_dir": checkpoint_dir},
        project_dir=project_dir,
    )
    with atomic_directory(out_dir) as tmp:
        to_save = model.merge_and_unload() if lora["merge"] else model
        to_save.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        manifest["output_weights_sha256"] = weights_sha256(tmp)
        write_manifest(tmp / MANIFEST_FILE, manifest)
    if checkpoint_dir is not None:
        # The adapter is published: nothing is left to resume, and a stale final checkpoint would make the
        # next run with a changed recipe fail as a mismatch.
        clear_checkpoints(checkpoint_dir)
        with contextlib.suppress(OSError):
            os.rmdir(checkpoint_dir)
    return manifest
