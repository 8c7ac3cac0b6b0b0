"""Teacher -> student distillation: logit KD, sequence-level KD, or both, trained by ``loop.run_loop``.

The student is fully fine-tuned by default (it is small; LoRA would cap what it can take from the teacher), and
the same function with ``kd_ratio = 0`` is the SFT-only baseline: same student init, data, data order, steps and
optimiser, with the teacher never consulted during training. Comparing the two runs' manifests isolates what the
teacher's distributions added.

Modes:

- ``logit``: loss ``kd_ratio * KD + (1 - kd_ratio) * CE`` on ``records`` (see ``kd_losses``), the teacher signal
  computed on the fly (full logits, or top-k) or read from a precomputed top-k store (``teacher_logits``).
- ``sequence``: the teacher answers the prompts of ``records``; answers that pass the checks and the verifier
  become chat records, trained with plain CE (logit KD is off in this mode; the manifest records
  ``effective_kd_ratio = 0``). ``sequence.data`` decides whether they replace or augment the gold records. The
  verifier is the caller's, else the JSON-Schema one built from ``sequence.answer_schema`` (``verifiers``).
- ``both``: the sequence-KD data, trained with the logit-KD loss.

Batches are right-padded, not packed: a precomputed teacher signal is stored per example, and packing would
need it re-aligned per packed row for no gain at the sequence lengths distillation runs use.

API:
    distill_student(teacher_dir, teacher_adapter_dir, records, config, out_dir, *, data_manifest_id,
                    verifier=None, eval_records=None, teacher_weights_sha256=None, teacher_cache_dir=None,
                    on_step=None, data_shards=None, project_dir=None) -> run manifest dict
    config: a ``DistillConfig`` (mode, student, KD recipe, execution); ``config.sft_baseline()`` is the baseline
    teacher_student_divergence(teacher, student, examples, *, pad_id, batch_size=8, loss="forward_kl",
                               temperature=1.0, beta=0.5) -> {"kd": ..., "ce": ..., "tokens": ...}
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mixtrain.config.training import StudentSpec
from mixtrain.identity import weights_sha256
from training_assets.engine.batching import StepBatches
from training_assets.engine.config import DistillConfig
from training_assets.engine.distributed import current_world, on_main_rank
from training_assets.engine.examples import tokenize_records
from training_assets.engine.kd_losses import Divergence, TopK, distillation_loss
from training_assets.engine.loop import resolve_device, run_loop, seed_everything
from training_assets.engine.packing import pad_collate
from training_assets.engine.run_manifest import build_run_manifest, publish_run, read_run_manifest
from training_assets.engine.sequence_kd import Verifier, generate_sequence_kd
from training_assets.engine.student import (
    block_influence,
    build_layer_subset,
    check_same_vocab,
    choose_layers,
    least_influential,
    load_student,
    vocab_sha256,
)
from training_assets.engine.teacher_logits import TopKStore, precompute_teacher_topk, teacher_signal
from training_assets.engine.verifiers import json_schema_verifier, load_schema

TEACHER_STORE_SUFFIX = ".teacher_topk"
# Records the layer importance of a ``drop_layers`` student is measured on: enough for a stable ranking of
# layers, few enough to cost a fraction of one training step.
IMPORTANCE_EXAMPLES = 32


def _model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    return {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}


def teacher_student_divergence(
    teacher: Any,
    student: Any,
    examples: Sequence[dict[str, list[int]]],
    *,
    pad_id: int,
    batch_size: int = 8,
    loss: Divergence = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
) -> dict[str, float]:
    """Per-label-token divergence of ``student`` from ``teacher`` (full vocabulary) and the student's gold CE.

    Forward KL at T = 1 is the natural "how close is the student to the teacher" number; it is what the KD-vs-SFT
    comparison reports. Both models are evaluated in eval mode on the student's device.
    """
    import torch

    device = next(student.parameters()).device
    modes = (teacher.training, student.training)
    teacher.eval()
    student.eval()
    kd = ce = 0.0
    tokens = 0
    try:
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                batch = pad_collate(examples[start : start + batch_size], pad_id, device)
                t = teacher(**_model_inputs(batch)).logits
                s = student(**_model_inputs(batch)).logits
                out = distillation_loss(
                    s, batch["labels"], teacher_logits=t, loss=loss, temperature=temperature, kd_ratio=1.0, beta=beta
                )
                kd, ce, tokens = kd + out.kd_sum, ce + out.ce_sum, tokens + out.n_tokens
    finally:
        teacher.train(modes[0])
        student.train(modes[1])
    if tokens == 0:
        raise ValueError("no label tokens in the evaluation examples")
    return {"kd": kd / tokens, "ce": ce / tokens, "tokens": tokens, "loss": loss, "temperature": temperature}


def _step_batches(examples: list[dict[str, Any]], cfg: DistillConfig, pad_id: int, store: Any) -> StepBatches:
    """Right-padded micro-batches, one phase; with a precomputed teacher each also carries the stored top-k for
    its examples."""

    def make_batch(ids: list[int]) -> dict[str, Any]:
        chosen = [examples[i] for i in ids]
        batch = pad_collate(chosen, pad_id)
        if store is not None:
            top = store.batch(ids, chosen, batch["input_ids"].size(1))
            batch["teacher_topk_logprobs"], batch["teacher_topk_indices"] = top.logprobs, top.indices
        return batch

    tokens = [len(e["input_ids"]) for e in examples]
    return StepBatches(
        [0] * len(examples),
        tokens,
        make_batch,
        batch_size=cfg.batch_size,
        steps=cfg.steps,
        seed=cfg.seed,
        grad_accum=cfg.grad_accum,
    )


def _teacher_identity(
    teacher_dir: str, adapter_dir: str | None, weights: str | None, tokenizer: Any, model: Any
) -> dict[str, Any]:
    return {
        "path": os.path.abspath(teacher_dir),
        "weights_sha256": weights if weights is not None else weights_sha256(teacher_dir),
        "adapter_path": os.path.abspath(adapter_dir) if adapter_dir else None,
        "adapter_weights_sha256": weights_sha256(adapter_dir) if adapter_dir else None,
        "architecture": type(model).__name__,
        "n_layers": getattr(model.config, "num_hidden_layers", None),
        "n_params": sum(p.numel() for p in model.parameters()),
        "vocab_sha256": vocab_sha256(tokenizer),
    }


def _importance_sample(records: list[dict[str, Any]], tokenizer: Any, max_seq_len: int) -> list[dict[str, Any]]:
    """Up to ``IMPORTANCE_EXAMPLES`` records spread evenly over the training records, tokenized as for training:
    the layers are scored on the data the student will see, not on generic text."""
    step = max(1, len(records) // IMPORTANCE_EXAMPLES)
    return tokenize_records(records[::step][:IMPORTANCE_EXAMPLES], tokenizer, max_seq_len)[0]


def _make_student(
    spec: StudentSpec, teacher: Any, teacher_tok: Any, records: list[dict[str, Any]], max_seq_len: int
) -> tuple[Any, Any, dict[str, Any]]:
    if spec.init == "layer_subset":
        n = teacher.config.num_hidden_layers
        importance: dict[str, Any] = {}
        if spec.drop_layers is not None:
            sample = _importance_sample(records, teacher_tok, max_seq_len)
            pad_id = teacher_tok.pad_token_id if teacher_tok.pad_token_id is not None else teacher_tok.eos_token_id
            scores = block_influence(teacher, sample, pad_id=pad_id)
            chosen = least_influential(scores, spec.drop_layers)
            importance = {
                "importance": {
                    "score": "block_influence",
                    "examples": len(sample),
                    "per_layer": [round(v, 6) for v in scores],
                    "dropped_layers": [i for i in range(n) if i not in chosen],
                }
            }
        else:
            chosen = choose_layers(n, keep_every=spec.keep_every, layers=spec.layers)
        student = build_layer_subset(teacher, chosen)
        info = {
            "init": "layer_subset",
            "kept_layers": chosen,
            "teacher_layers": n,
            "keep_every": spec.keep_every,
            "n_params": sum(p.numel() for p in student.parameters()),
            **importance,
        }
        return student, teacher_tok, info
    student, tok, info = load_student(spec.path, seed=spec.seed, revision=spec.revision)  # type: ignore[arg-type]
    expected = "random_from_config" if spec.init == "config" else "pretrained"
    if info["init"] != expected:
        raise ValueError(f"student init {spec.init!r}: {spec.path} loaded as {info['init']!r}")
    return student, tok, info


def _open_or_build_store(
    path: str, teacher: Any, examples: list[dict[str, Any]], cfg: DistillConfig, pad_id: int, identity: dict[str, Any]
) -> tuple[TopKStore, bool]:
    """Reuse a store written for the same teacher, k, temperature and examples; else (re)compute it."""
    from training_assets.engine.teacher_logits import TeacherStoreError, examples_sha256

    if os.path.isdir(path):
        try:
            store = TopKStore(path)
            idx = store.index
            if (
                idx.get("teacher") == identity
                and idx["k"] == cfg.top_k
                and idx["temperature"] == cfg.temperature
                and idx["examples_sha256"] == examples_sha256(examples)
            ):
                return store, True
        except (TeacherStoreError, KeyError, ValueError):
            pass  # damaged or foreign: recomputed below, replacing it atomically
    precompute_teacher_topk(
        teacher,
        examples,
        path,
        k=cfg.top_k or 0,
        temperature=cfg.temperature,
        batch_size=cfg.batch_size,
        pad_id=pad_id,
        identity=identity,
    )
    return TopKStore(path), False


def distill_student(
    teacher_dir: str,
    teacher_adapter_dir: str | None,
    records: list[dict[str, Any]],
    config: DistillConfig,
    out_dir: str,
    *,
    data_manifest_id: str,
    verifier: Verifier | None = None,
    eval_records: list[dict[str, Any]] | None = None,
    teacher_weights_sha256: str | None = None,
    teacher_cache_dir: str | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    data_shards: Sequence[Any] | None = None,
    project_dir: str | None = None,
) -> dict[str, Any]:
    """Distil ``teacher_dir`` (+ optional adapter or merged model) into the student ``config`` names; write it to
    ``out_dir``.

    ``out_dir`` receives the student (``save_pretrained``), its tokenizer, ``training_config.json`` and
    ``run_manifest.json`` with the KD settings, teacher identity (weights hashes, vocabulary hash), student init,
    sequence-KD counts and, when ``eval_records`` are given, the student's divergence from the teacher and gold CE
    before and after training. ``teacher_cache_dir`` is where a precomputed top-k store goes (default
    ``<out_dir>.teacher_topk``); a store there from the same teacher and examples is reused. Checkpointing and
    resuming are ``run_loop``'s (``config.checkpoint_dir``, ``config.resume``).
    """
    import torch

    from training_assets.engine.loading import load_for_inference

    if not isinstance(config, DistillConfig):
        raise TypeError(f"distill_student: config must be a DistillConfig, got {type(config).__name__}")
    cfg, spec, mode = config, config.student, config.mode
    kd_ratio = 0.0 if mode == "sequence" else cfg.kd_ratio
    uses_logits = kd_ratio > 0
    seeds = seed_everything(cfg.seed)
    device = resolve_device(cfg.device)

    # -- models: the teacher (adapter merged, fp32, eval mode) and a student built from it or loaded --
    teacher, teacher_tok = load_for_inference(teacher_dir, teacher_adapter_dir, dtype="fp32")
    teacher.to(device)
    teacher.requires_grad_(False)
    teacher_id = _teacher_identity(teacher_dir, teacher_adapter_dir, teacher_weights_sha256, teacher_tok, teacher)
    student, tokenizer, student_info = _make_student(spec, teacher, teacher_tok, records, cfg.max_seq_len)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if uses_logits or eval_records is not None:
        # Logit KD (and the divergence report) compare distributions id by id.
        check_same_vocab(teacher_tok, tokenizer)
        t_vocab, s_vocab = teacher.config.vocab_size, student.config.vocab_size
        if t_vocab != s_vocab:
            raise ValueError(
                f"teacher has {t_vocab} output logits, student {s_vocab}, though their tokenizers match: resize the "
                "student's embeddings (resize_token_embeddings) to the teacher's size"
            )
    student.to(device=device, dtype=torch.float32)
    student.requires_grad_(True)

    # -- data: gold records, teacher-generated records, or both --
    seq_counts = None
    train_records = list(records)
    if mode in ("sequence", "both"):
        sq = cfg.sequence
        if verifier is None and sq.answer_schema is not None:
            verifier = json_schema_verifier(load_schema(sq.answer_schema))
        generated, seq_counts = generate_sequence_kd(
            teacher,
            teacher_tok,
            records,
            verifier=verifier,
            n_candidates=sq.n_candidates,
            temperature=sq.temperature,
            top_p=sq.top_p,
            max_new_tokens=sq.max_new_tokens,
            seed=sq.seed,
            batch_size=sq.batch_size,
            require_eos=sq.require_eos,
            max_kept_per_prompt=sq.max_kept_per_prompt,
        )
        train_records = generated if sq.data == "replace" else train_records + generated
        if not generated and sq.data == "replace":
            raise ValueError(f"sequence KD kept no teacher answer (counts: {seq_counts}); nothing to train on")
    examples, example_stats = tokenize_records(train_records, tokenizer, cfg.max_seq_len)
    if not examples:
        raise ValueError(f"no trainable examples: {len(train_records)} records gave {example_stats}")
    eval_examples = tokenize_records(eval_records, tokenizer, cfg.max_seq_len)[0] if eval_records else []
    pad_id = tokenizer.pad_token_id

    # -- teacher signal --
    store: TopKStore | None = None
    store_info: dict[str, Any] | None = None
    if uses_logits and cfg.teacher_logits == "precomputed":
        store_path = teacher_cache_dir or os.path.abspath(out_dir) + TEACHER_STORE_SUFFIX
        store, reused = _open_or_build_store(store_path, teacher, examples, cfg, pad_id, teacher_id)
        idx = store.index
        store_info = {
            "path": store_path,
            "reused": reused,
            **{
                k: idx[k]
                for k in ("k", "n_tokens", "bytes_on_disk", "bytes_per_token", "full_vocab_fp32_bytes_per_token")
            },
        }

    def loss_fn(model: Any, batch: dict[str, Any]) -> tuple[Any, int, dict[str, float]]:
        logits = model(**_model_inputs(batch)).logits
        signal: dict[str, Any] = {}
        if uses_logits:
            if "teacher_topk_logprobs" in batch:
                signal = {"teacher_topk": TopK(batch["teacher_topk_logprobs"], batch["teacher_topk_indices"])}
            else:
                signal = teacher_signal(teacher, batch, top_k=cfg.top_k, temperature=cfg.temperature)
        out = distillation_loss(
            logits,
            batch["labels"],
            **signal,
            loss=cfg.loss,
            temperature=cfg.temperature,
            kd_ratio=kd_ratio,
            beta=cfg.beta,
        )
        return out.loss_sum, out.n_tokens, {"kd": out.kd_sum, "ce": out.ce_sum}

    evaluation: dict[str, Any] = {}
    if eval_examples:
        evaluation["before"] = teacher_student_divergence(teacher, student, eval_examples, pad_id=pad_id)
    if store is not None and not eval_examples:
        teacher.to("cpu")  # not needed again: the loop reads the store

    # -- train --
    kd_settings = {
        "mode": mode,
        "loss": cfg.loss,
        "temperature": cfg.temperature,
        "kd_ratio": cfg.kd_ratio,
        "effective_kd_ratio": kd_ratio,
        "beta": cfg.beta if cfg.loss == "jsd" else None,
        "top_k": cfg.top_k,
        "teacher_logits": cfg.teacher_logits if uses_logits else None,
        "baseline": "sft_only" if kd_ratio == 0 and mode == "logit" else None,
        "teacher": teacher_id,
        "student": student_info,
        "student_spec": spec.model_dump(mode="json"),
        "sequence_kd": seq_counts,
        "teacher_store": store_info,
    }
    learnt = cfg.learnt()
    run_key = {
        "recipe": learnt,
        "data_manifest_id": data_manifest_id,
        "data_shards": list(data_shards or []),
        "teacher": {k: teacher_id[k] for k in ("weights_sha256", "adapter_weights_sha256")},
        "examples": example_stats,
    }
    loop_cfg = cfg.loop_config(device)
    result = run_loop(
        student,
        _step_batches(examples, cfg, pad_id, store),
        loss_fn,
        loop_cfg,
        checkpoint_dir=cfg.checkpoint_dir,
        resume=cfg.resume,
        run_key=run_key,
        on_step=on_step,
    )
    if not result.completed:
        raise RuntimeError(f"distillation stopped after step {result.step} of {result.steps}")

    # -- evaluate and save (rank 0 alone): student + tokenizer + config + manifest, all or nothing --
    def publish() -> dict[str, Any]:
        if eval_examples:
            teacher.to(device)
            evaluation["after"] = teacher_student_divergence(teacher, student, eval_examples, pad_id=pad_id)
            evaluation["examples"] = len(eval_examples)

        manifest = build_run_manifest(
            result,
            config={"recipe": learnt, "optimizer": loop_cfg.optimizer_record(), "distillation": kd_settings},
            seeds=seeds,
            data_manifest_id=data_manifest_id,
            data_shards=data_shards,
            base_model={"student_init": student_info, "teacher_weights_sha256": teacher_id["weights_sha256"]},
            effective_batch_size=cfg.batch_size * cfg.grad_accum,
            extra={
                "trainable_params": sum(p.numel() for p in student.parameters() if p.requires_grad),
                "examples": example_stats,
                "evaluation": evaluation or None,
            },
            execution={**cfg.execution(), "device": device},
            project_dir=project_dir,
        )
        student.eval()
        publish_run(out_dir, student, tokenizer, cfg, manifest)
        return manifest

    return on_main_rank(current_world(), publish, lambda: read_run_manifest(out_dir))
