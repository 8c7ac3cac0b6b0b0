"""Calibration: does a model's confidence in an answer match how often that answer is right?

Inputs are per-item probabilities over the item's options (yes/no or multiple choice) and the index of the
correct option. Conventions, stated once because ECE values are only comparable under the same ones:

- The prediction is the arg-max option (ties: the first) and the confidence is its probability.
- ECE uses ``n_bins`` equal-width confidence bins over [0, 1]; a bin is (lo, hi], except the first, which also
  holds 0. ECE = sum over bins of (items in bin / all items) * |accuracy in bin - mean confidence in bin|.
  Equal-width bins (as in Guo et al., 2017) are the common reporting choice; with K options the confidence is
  never below 1/K, so the low bins stay empty, which is expected.
- Brier score is the multiclass form: mean over items of sum over options of (p_option - 1[option is correct])^2,
  in [0, 2]; for yes/no it is twice the binary Brier score on p(yes).

``option_probabilities`` turns a causal LM into such probabilities by scoring each option as a continuation of
the prompt; torch is imported inside it so that the metrics above need none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from eval_assets.engine.deadline import check_deadline

CALIBRATION_ITEM_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("label", pa.int64(), nullable=False),
        pa.field("predicted", pa.int64(), nullable=False),
        pa.field("confidence", pa.float64(), nullable=False),
        pa.field("p_label", pa.float64(), nullable=False),  # probability given to the correct option
        pa.field("correct", pa.bool_(), nullable=False),
        pa.field("brier", pa.float64(), nullable=False),
        pa.field("probs", pa.list_(pa.float64()), nullable=False),
    ]
)

RELIABILITY_SCHEMA = pa.schema(
    [
        pa.field("bin", pa.int64(), nullable=False),
        pa.field("lo", pa.float64(), nullable=False),
        pa.field("hi", pa.float64(), nullable=False),
        pa.field("n", pa.int64(), nullable=False),
        pa.field("accuracy", pa.float64()),  # null for an empty bin
        pa.field("confidence", pa.float64()),
        pa.field("gap", pa.float64()),  # accuracy - confidence: negative = over-confident
    ]
)

_SUM_TOL = 1e-4


def _validate(probs: Sequence[Sequence[float]], labels: Sequence[int]) -> list[np.ndarray]:
    """Rows as arrays, checked: a bad row is named by its index instead of skewing the scores."""
    if len(probs) != len(labels):
        raise ValueError(f"{len(probs)} probability rows for {len(labels)} labels")
    rows = []
    for i, (row, label) in enumerate(zip(probs, labels, strict=True)):
        p = np.asarray(row, dtype=float)
        if p.ndim != 1 or p.size < 2:
            raise ValueError(f"row {i}: needs probabilities for at least 2 options, got {row!r}")
        if not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > _SUM_TOL:
            raise ValueError(f"row {i}: probabilities must be finite, >= 0 and sum to 1 (sum {p.sum():.6f})")
        if not 0 <= int(label) < p.size or isinstance(label, bool):
            raise ValueError(f"row {i}: label {label!r} is not an option index in [0, {p.size})")
        rows.append(p)
    return rows


def calibration_items(item_ids: Sequence[str], probs: Sequence[Sequence[float]], labels: Sequence[int]) -> pa.Table:
    """One CALIBRATION_ITEM_SCHEMA row per item (items may have different numbers of options)."""
    rows = _validate(probs, labels)
    if len(item_ids) != len(rows):
        raise ValueError(f"{len(item_ids)} item ids for {len(rows)} probability rows")
    out = []
    for item_id, p, label in zip(item_ids, rows, labels, strict=True):
        onehot = np.zeros_like(p)
        onehot[int(label)] = 1.0
        pred = int(np.argmax(p))
        out.append(
            {
                "item_id": item_id,
                "label": int(label),
                "predicted": pred,
                "confidence": float(p[pred]),
                "p_label": float(p[int(label)]),
                "correct": pred == int(label),
                "brier": float(((p - onehot) ** 2).sum()),
                "probs": p.tolist(),
            }
        )
    return pa.Table.from_pylist(out, schema=CALIBRATION_ITEM_SCHEMA)


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    # (lo, hi] bins: ceil(c * n) - 1, with c == 0 put in the first bin.
    return np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)


def reliability_table(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> pa.Table:
    """Per-bin accuracy and confidence: the data behind a reliability diagram and ECE."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    idx = _bin_index(conf, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=hit, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    rows = []
    for b in range(n_bins):
        n = int(counts[b])
        acc = acc_sum[b] / n if n else None
        cf = conf_sum[b] / n if n else None
        rows.append(
            {
                "bin": b,
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "n": n,
                "accuracy": acc,
                "confidence": cf,
                "gap": None if acc is None else acc - cf,
            }
        )
    return pa.Table.from_pylist(rows, schema=RELIABILITY_SCHEMA)


def calibration_metrics(
    probs: Sequence[Sequence[float]], labels: Sequence[int], *, n_bins: int = 10
) -> dict[str, float]:
    """accuracy, ece, mce (largest bin gap), brier, mean confidence and n; see the module docstring."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    rows = _validate(probs, labels)
    n = len(rows)
    if n == 0:
        return {k: float("nan") for k in ("accuracy", "ece", "mce", "brier", "mean_confidence")} | {"n": 0.0}
    lab = np.asarray(labels, dtype=int)
    pred = np.array([int(np.argmax(p)) for p in rows])
    conf = np.array([p[k] for p, k in zip(rows, pred, strict=True)])
    correct = pred == lab
    brier = np.array([((p - np.eye(p.size)[k]) ** 2).sum() for p, k in zip(rows, lab, strict=True)])
    idx = _bin_index(conf, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    gaps = np.abs(
        np.bincount(idx, weights=correct.astype(float), minlength=n_bins)
        - np.bincount(idx, weights=conf, minlength=n_bins)
    )  # per-bin |sum(correct) - sum(conf)| = n_b * |acc_b - conf_b|
    nonempty = counts > 0
    return {
        "n": float(n),
        "accuracy": float(correct.mean()),
        "ece": float(gaps.sum() / n),
        "mce": float((gaps[nonempty] / counts[nonempty]).max()),
        "brier": float(brier.mean()),
        "mean_confidence": float(conf.mean()),
    }


def yes_no_probs(p_yes: Sequence[float]) -> list[list[float]]:
    """``[[p(yes), p(no)], ...]`` from p(yes) alone, the option order the behaviour sets use (yes = 0)."""
    return [[float(p), 1.0 - float(p)] for p in p_yes]


# --- option probabilities from a causal LM -----------------------------------------------------------------------


def _prompt_text(tokenizer: Any, prompt: str | list[dict[str, str]]) -> str:
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def option_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str | list[dict[str, str]]],
    options: Sequence[str] | Sequence[Sequence[str]],
    *,
    batch_size: int = 8,
) -> list[list[tuple[float, int]]]:
    """``(sum of token log-probs, token count)`` of each option as the continuation of its prompt.

    A prompt is plain text or a chat conversation (rendered with the generation prompt, so an option is the start
    of the assistant turn). Prompt and option are tokenized apart and concatenated, so an option's tokens are the
    same whatever prompt precedes it and the boundary is exact; whether an option starts with a space is the
    caller's choice. Padding is on the right, so the real tokens keep their positions.
    """
    import torch

    if batch_size <= 0:
        raise ValueError("batch_size must be > 0")
    shared = bool(options) and all(isinstance(o, str) for o in options)
    per_prompt: list[Sequence[str]] = [options] * len(prompts) if shared else list(options)  # type: ignore[list-item]
    if len(per_prompt) != len(prompts):
        raise ValueError(f"{len(per_prompt)} option lists for {len(prompts)} prompts")
    seqs: list[tuple[int, int, list[int], int]] = []  # (prompt index, option index, ids, option start)
    for pi, (prompt, opts) in enumerate(zip(prompts, per_prompt, strict=True)):
        if len(opts) < 2:
            raise ValueError(f"prompt {pi}: needs at least 2 options, got {list(opts)!r}")
        prompt_ids = tokenizer(_prompt_text(tokenizer, prompt), add_special_tokens=False).input_ids
        for oi, opt in enumerate(opts):
            opt_ids = tokenizer(opt, add_special_tokens=False).input_ids
            if not opt_ids:
                raise ValueError(f"prompt {pi}: option {oi} ({opt!r}) encodes to no tokens")
            if not prompt_ids:
                raise ValueError(f"prompt {pi} encodes to no tokens; an option needs context to be scored")
            seqs.append((pi, oi, prompt_ids + opt_ids, len(prompt_ids)))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError("tokenizer has neither a pad nor an eos token; cannot batch")
    device = next(model.parameters()).device
    scores: list[list[tuple[float, int]]] = [[(0.0, 0)] * len(opts) for opts in per_prompt]
    # Longest first keeps batches of similar length (less padding); results go back by index.
    order = sorted(range(len(seqs)), key=lambda k: -len(seqs[k][2]))
    was_training = model.training
    model.eval()
    try:
        for b in range(0, len(order), batch_size):
            check_deadline()
            batch = [seqs[k] for k in order[b : b + batch_size]]
            width = max(len(ids) for _, _, ids, _ in batch)
            input_ids = torch.full((len(batch), width), int(pad_id), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, (_, _, ids, _) in enumerate(batch):
                input_ids[r, : len(ids)] = torch.tensor(ids)
                mask[r, : len(ids)] = 1
            with torch.no_grad():
                logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            for r, (pi, oi, ids, start) in enumerate(batch):
                targets = torch.tensor(ids[start:], device=logp.device)
                # token t is predicted by the logits at position t - 1
                token_lp = logp[r, start - 1 : len(ids) - 1].gather(1, targets[:, None]).squeeze(1)
                scores[pi][oi] = (float(token_lp.sum()), len(ids) - start)
    finally:
        model.train(was_training)
    return scores


def option_probabilities(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str | list[dict[str, str]]],
    options: Sequence[str] | Sequence[Sequence[str]],
    *,
    length_normalise: bool = False,
    batch_size: int = 8,
) -> list[list[float]]:
    """Per prompt, a probability per option: a softmax over the options' continuation log-probs.

    Renormalising over the options answers "which option does the model prefer" and ignores the mass on text
    that is none of them. ``length_normalise`` uses the mean log-prob per token instead of the sum, so options
    of different lengths compete on equal terms (for yes/no with one token each it changes nothing).
    """
    out = []
    for row in option_logprobs(model, tokenizer, prompts, options, batch_size=batch_size):
        s = np.array([lp / n if length_normalise else lp for lp, n in row])
        e = np.exp(s - s.max())
        out.append((e / e.sum()).tolist())
    return out
