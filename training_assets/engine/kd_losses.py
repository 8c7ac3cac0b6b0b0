"""Knowledge-distillation losses: a divergence to the teacher's next-token distribution, blended with gold CE.

Conventions shared with the SFT loop, so the two losses are interchangeable inside one training loop:

- Causal shift: the logits at position ``t`` predict token ``t + 1``, so position ``t`` is trained when
  ``labels[t + 1] != IGNORE_INDEX``. Teacher signals are given at the same (unshifted) positions as the
  student's logits; only label positions are ever read, so whatever sits elsewhere is ignored.
- Summed, not averaged: the losses return a sum over label tokens and the token count, and the loop divides by
  the label tokens of the whole optimizer step. The gradient then equals that of one big batch however the step
  is split into micro-batches.
- ``loss = kd_ratio * KD + (1 - kd_ratio) * CE``. KD uses temperature ``T`` on both distributions and is scaled
  by ``T**2`` (Hinton et al., 2015) so that its gradient keeps the same magnitude as CE's when ``T`` changes;
  CE is always at ``T = 1`` against the gold token.

Divergences, with ``p`` the teacher and ``q`` the student distribution:

- ``forward_kl``: KL(p || q) — mass-covering; the student is pushed to put mass wherever the teacher does.
- ``reverse_kl``: KL(q || p) — mode-seeking; the student is punished for mass where the teacher has little.
- ``jsd``: the skew Jensen-Shannon divergence ``beta * KL(p || m) + (1 - beta) * KL(q || m)`` with
  ``m = beta * p + (1 - beta) * q``, for ``0 < beta < 1``. It is bounded (by the binary entropy of ``beta``,
  ``log 2`` at ``beta = 0.5``) and symmetric in ``p, q`` at ``beta = 0.5``.

Top-k teacher signal (precomputed teachers store only the k most likely tokens per position):

The teacher's top-k log-probabilities are *not* renormalised over the k tokens. Instead the vocabulary is
collapsed into ``k + 1`` outcomes: the k teacher tokens, plus one "tail" bucket holding everything else. The
teacher's tail mass is ``1 - sum(p_topk)`` (known exactly from full-vocabulary log-probs); the student's tail
is its own softmax mass outside those k ids, computed from the full student vocabulary. The divergence is then
the ordinary one between these two ``k + 1``-outcome distributions. Why this rather than renormalising:

- it is a proper divergence for all three losses: zero exactly when the student matches the teacher on the k
  tokens (and so also on the tail), never negative. Renormalising the teacher and gathering full-vocab student
  log-probs is not (reverse KL and JSD need student mass that the teacher has no value for);
- it does not make the teacher look more confident than it is: renormalising inflates every top-k
  probability by ``1 / sum(p_topk)``, most when the teacher is unsure, which is when its spread carries the
  most information;
- by the data-processing inequality the bucketed divergence is a lower bound on the full one, and it is exact
  when the teacher's tail is empty; with ``k`` equal to the vocabulary size there is no tail bucket at all and
  the loss equals the full-logit loss.

Top-k values must be log-probabilities of the teacher at the same temperature ``T`` the loss uses
(``log_softmax(teacher_logits / T)`` taken over the full vocabulary, then top-k), which is what
``teacher_topk`` produces; raw logits would make the tail mass meaningless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

from training_assets.engine.examples import IGNORE_INDEX

if TYPE_CHECKING:
    import torch

Divergence = Literal["forward_kl", "reverse_kl", "jsd"]
DIVERGENCES: tuple[str, ...] = ("forward_kl", "reverse_kl", "jsd")

# Log-probabilities are floored here before multiplying by probabilities: exp(-1e4) is 0 in float32, so
# the value of any term is unchanged, but 0 * (-inf) no longer turns a loss or its gradient into NaN.
_LOG_FLOOR = -1.0e4


class TopK(NamedTuple):
    """The teacher's k most likely next tokens at each position, aligned with the student's logits.

    ``logprobs`` [batch, seq, k] float: full-vocabulary log-probabilities at temperature T.
    ``indices`` [batch, seq, k] int64: their token ids, distinct within a position.
    """

    logprobs: torch.Tensor
    indices: torch.Tensor


@dataclass
class KDLossOutput:
    """What one micro-batch contributes; ``loss_sum`` carries the gradient, the rest is for logging."""

    loss_sum: torch.Tensor  # kd_ratio * kd_sum + (1 - kd_ratio) * ce_sum, summed over label tokens
    n_tokens: int  # label tokens in the micro-batch
    kd_sum: float  # T**2-scaled divergence summed over label tokens (0.0 when no teacher signal was used)
    ce_sum: float  # gold cross-entropy summed over label tokens


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Half-precision logits to float32 (a softmax over a large vocabulary needs it); float64 stays float64."""
    import torch

    return x.to(torch.promote_types(x.dtype, torch.float32))


def _validate(loss: str, temperature: float, kd_ratio: float, beta: float) -> None:
    if loss not in DIVERGENCES:
        raise ValueError(f"loss must be one of {DIVERGENCES}, got {loss!r}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    if not 0.0 <= kd_ratio <= 1.0:
        raise ValueError(f"kd_ratio must be in [0, 1], got {kd_ratio}")
    if loss == "jsd" and not 0.0 < beta < 1.0:
        raise ValueError(f"jsd needs 0 < beta < 1 (at 0 or 1 the mixture is one side and the loss 0), got {beta}")


def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last dim from log-probabilities; outcomes with p = 0 contribute exactly 0."""
    logp = logp.clamp_min(_LOG_FLOOR)
    return (logp.exp() * (logp - logq.clamp_min(_LOG_FLOOR))).sum(-1)


def divergence(
    teacher_logp: torch.Tensor, student_logp: torch.Tensor, loss: Divergence = "forward_kl", beta: float = 0.5
) -> torch.Tensor:
    """Per-position divergence between two distributions over the same outcomes (last dim), given as log-probs."""
    import torch

    if loss == "forward_kl":
        return _kl(teacher_logp, student_logp)
    if loss == "reverse_kl":
        return _kl(student_logp, teacher_logp)
    if loss == "jsd":
        mixture = torch.logsumexp(torch.stack([teacher_logp + math.log(beta), student_logp + math.log1p(-beta)]), dim=0)
        return beta * _kl(teacher_logp, mixture) + (1 - beta) * _kl(student_logp, mixture)
    raise ValueError(f"loss must be one of {DIVERGENCES}, got {loss!r}")


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Mächler, 2012); -inf-safe via the floor."""
    import torch

    x = x.clamp(max=0.0)
    out = torch.where(x > -math.log(2), torch.log((-torch.expm1(x)).clamp_min(1e-38)), torch.log1p(-torch.exp(x)))
    return out.clamp_min(_LOG_FLOOR)


def _bucketed(
    topk_logp: torch.Tensor, topk_idx: torch.Tensor, student_scaled: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(teacher, student) log-probs over the k teacher tokens plus one tail bucket; see the module docstring."""
    import torch

    vocab = student_scaled.size(-1)
    student_lse = torch.logsumexp(student_scaled, dim=-1, keepdim=True)
    student_topk = student_scaled.gather(-1, topk_idx) - student_lse
    if topk_idx.size(-1) >= vocab:
        return topk_logp, student_topk
    # Student tail = its mass outside the k ids, from the masked logsumexp rather than 1 - sum(top-k), which
    # would lose all precision when the student is confident.
    outside = student_scaled.scatter(-1, topk_idx, float("-inf"))
    student_tail = torch.logsumexp(outside, dim=-1, keepdim=True) - student_lse
    teacher_tail = _log1mexp(torch.logsumexp(topk_logp, dim=-1, keepdim=True))
    return torch.cat([topk_logp, teacher_tail], -1), torch.cat([student_topk, student_tail], -1)


def distillation_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    teacher_logits: torch.Tensor | None = None,
    teacher_topk: TopK | None = None,
    loss: Divergence = "forward_kl",
    temperature: float = 1.0,
    kd_ratio: float = 0.5,
    beta: float = 0.5,
) -> KDLossOutput:
    """Blend of KD (to ``teacher_logits`` or ``teacher_topk``) and gold CE over the label positions of a batch.

    ``student_logits`` [batch, seq, vocab] and ``labels`` [batch, seq] as in causal-LM training. Give exactly
    one teacher signal, or none when ``kd_ratio == 0`` (the SFT-only baseline: the teacher is never consulted).
    Computed in float32 for half-precision logits (float64 stays float64, for gradient checks).
    """
    import torch.nn.functional as F

    _validate(loss, temperature, kd_ratio, beta)
    if teacher_logits is not None and teacher_topk is not None:
        raise ValueError("give teacher_logits or teacher_topk, not both")
    if kd_ratio > 0 and teacher_logits is None and teacher_topk is None:
        raise ValueError(f"kd_ratio={kd_ratio} needs a teacher signal (teacher_logits or teacher_topk)")
    if student_logits.dim() != 3 or labels.shape != student_logits.shape[:2]:
        raise ValueError(
            f"student_logits must be [batch, seq, vocab] and labels [batch, seq]; got {tuple(student_logits.shape)} "
            f"and {tuple(labels.shape)}"
        )

    # Select label positions first: KD over the full vocabulary costs O(vocab) per position, and prompt tokens
    # (often most of a chat example) would be computed only to be masked away.
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    n_tokens = int(mask.sum())
    s = _upcast(student_logits[:, :-1][mask])  # [n, vocab]
    gold = targets[mask]
    ce = F.cross_entropy(s, gold, reduction="sum") if n_tokens else s.sum() * 0.0
    total = (1.0 - kd_ratio) * ce if kd_ratio < 1 else ce * 0.0
    kd_value = 0.0
    if kd_ratio > 0 and n_tokens:
        scaled = s / temperature
        if teacher_logits is not None:
            if teacher_logits.shape != student_logits.shape:
                raise ValueError(
                    f"teacher_logits {tuple(teacher_logits.shape)} and student_logits {tuple(student_logits.shape)} "
                    "must have the same shape (same batch, sequence and vocabulary)"
                )
            t_logp = F.log_softmax(_upcast(teacher_logits[:, :-1][mask]) / temperature, dim=-1)
            s_logp = F.log_softmax(scaled, dim=-1)
        else:
            assert teacher_topk is not None
            logp, idx = teacher_topk
            if logp.shape[:2] != student_logits.shape[:2] or idx.shape != logp.shape:
                raise ValueError(
                    f"teacher_topk logprobs {tuple(logp.shape)} / indices {tuple(idx.shape)} must be "
                    f"[batch, seq, k] matching student_logits {tuple(student_logits.shape)}"
                )
            if logp.size(-1) > student_logits.size(-1):
                raise ValueError(f"teacher top-k has k={logp.size(-1)} > vocab={student_logits.size(-1)}")
            t_logp, s_logp = _bucketed(_upcast(logp[:, :-1][mask]), idx[:, :-1][mask].long(), scaled)
        kd = divergence(t_logp.detach(), s_logp, loss, beta).sum() * temperature**2
        total = total + kd_ratio * kd
        kd_value = float(kd.detach())
    return KDLossOutput(loss_sum=total, n_tokens=n_tokens, kd_sum=kd_value, ce_sum=float(ce.detach()))


def teacher_topk(teacher_logits: torch.Tensor, k: int, temperature: float = 1.0) -> TopK:
    """Top-k of the teacher's full-vocabulary log-softmax at ``temperature``: what ``distillation_loss`` expects."""
    import torch.nn.functional as F

    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    k = min(k, teacher_logits.size(-1))
    values, indices = F.log_softmax(_upcast(teacher_logits) / temperature, dim=-1).topk(k, dim=-1)
    return TopK(values, indices)
