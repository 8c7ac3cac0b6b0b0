"""KD losses against hand-computed values: divergences, temperature, masking, blending and the top-k tail bucket."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from training_assets.engine.examples import IGNORE_INDEX  # noqa: E402
from training_assets.engine.kd_losses import (  # noqa: E402
    DIVERGENCES,
    TopK,
    distillation_loss,
    divergence,
    teacher_topk,
)

V = 11


def logits(seed: int, batch: int = 2, seq: int = 6, vocab: int = V, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, seq, vocab, generator=g, dtype=torch.float64) * scale


def labels_for(batch: int = 2, seq: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lab = torch.randint(0, V, (batch, seq), generator=g)
    lab[0, :3] = IGNORE_INDEX  # a prompt
    lab[-1, -1] = IGNORE_INDEX  # padding
    return lab


def manual_kd(t: torch.Tensor, s: torch.Tensor, labels: torch.Tensor, kind: str, temp: float, beta: float) -> float:
    """The KD sum written out position by position from the definitions, in float64."""
    total = 0.0
    for b in range(t.size(0)):
        for i in range(t.size(1) - 1):
            if labels[b, i + 1] == IGNORE_INDEX:
                continue
            p = torch.softmax(t[b, i] / temp, -1)
            q = torch.softmax(s[b, i] / temp, -1)
            if kind == "forward_kl":
                d = (p * (p / q).log()).sum()
            elif kind == "reverse_kl":
                d = (q * (q / p).log()).sum()
            else:
                m = beta * p + (1 - beta) * q
                d = beta * (p * (p / m).log()).sum() + (1 - beta) * (q * (q / m).log()).sum()
            total += float(d) * temp**2
    return total


@pytest.mark.parametrize("kind", DIVERGENCES)
@pytest.mark.parametrize("temp", [1.0, 2.5])
def test_matches_definition(kind: str, temp: float) -> None:
    t, s, lab = logits(1), logits(2), labels_for()
    out = distillation_loss(s, lab, teacher_logits=t, loss=kind, temperature=temp, kd_ratio=1.0, beta=0.3)
    assert out.kd_sum == pytest.approx(manual_kd(t, s, lab, kind, temp, 0.3), rel=1e-9)
    assert float(out.loss_sum) == pytest.approx(out.kd_sum, rel=1e-12)
    assert out.n_tokens == int((lab[:, 1:] != IGNORE_INDEX).sum()) == 7


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_identical_distributions_give_zero(kind: str) -> None:
    t, lab = logits(3), labels_for()
    full = distillation_loss(t.clone(), lab, teacher_logits=t, loss=kind, kd_ratio=1.0)
    top = distillation_loss(t.clone(), lab, teacher_topk=teacher_topk(t, 4), loss=kind, kd_ratio=1.0)
    assert abs(full.kd_sum) < 1e-12 and abs(top.kd_sum) < 1e-12


def test_jsd_symmetric_at_half_and_bounded_by_log2() -> None:
    t, s, lab = logits(4), logits(5), labels_for()
    ab = distillation_loss(s, lab, teacher_logits=t, loss="jsd", kd_ratio=1.0, beta=0.5).kd_sum
    ba = distillation_loss(t, lab, teacher_logits=s, loss="jsd", kd_ratio=1.0, beta=0.5).kd_sum
    assert ab == pytest.approx(ba, rel=1e-12)
    assert distillation_loss(s, lab, teacher_logits=t, loss="jsd", kd_ratio=1.0, beta=0.2).kd_sum != pytest.approx(
        distillation_loss(t, lab, teacher_logits=s, loss="jsd", kd_ratio=1.0, beta=0.2).kd_sum, rel=1e-3
    )
    # Disjoint point masses: JSD(0.5) reaches its maximum, log 2.
    p = torch.tensor([[0.0, -1e9]], dtype=torch.float64)
    q = torch.tensor([[-1e9, 0.0]], dtype=torch.float64)
    d = divergence(F.log_softmax(p, -1), F.log_softmax(q, -1), "jsd", 0.5)
    assert float(d) == pytest.approx(math.log(2), rel=1e-12)


def test_forward_kl_gradient_is_t_times_q_minus_p() -> None:
    """d/ds of T^2 KL(p_T || q_T) at a position is T (q_T - p_T): the textbook KD gradient."""
    temp = 2.0
    t = logits(6, batch=1, seq=2)
    s = logits(7, batch=1, seq=2).requires_grad_(True)
    lab = torch.tensor([[IGNORE_INDEX, 3]])
    distillation_loss(s, lab, teacher_logits=t, loss="forward_kl", temperature=temp, kd_ratio=1.0).loss_sum.backward()
    expected = temp * (torch.softmax(s[0, 0].detach() / temp, -1) - torch.softmax(t[0, 0] / temp, -1))
    torch.testing.assert_close(s.grad[0, 0], expected)
    assert torch.count_nonzero(s.grad[0, 1]) == 0  # the last position predicts nothing


@pytest.mark.parametrize("kind", DIVERGENCES)
@pytest.mark.parametrize("k", [3, V])
def test_gradcheck(kind: str, k: int) -> None:
    t, lab = logits(8, batch=1, seq=4), labels_for(batch=1, seq=4)
    s = logits(9, batch=1, seq=4).requires_grad_(True)
    top = teacher_topk(t, k, temperature=1.5)
    # teacher_topk returns float32; promote so the whole check runs in float64.
    top = TopK(top.logprobs.double(), top.indices)

    def f(x: torch.Tensor) -> torch.Tensor:
        return distillation_loss(x, lab, teacher_topk=top, loss=kind, temperature=1.5, kd_ratio=0.7).loss_sum

    assert torch.autograd.gradcheck(f, (s,), eps=1e-6, atol=1e-5)


def test_masking_and_shift() -> None:
    t, s, lab = logits(10), logits(11), labels_for()
    base = distillation_loss(s, lab, teacher_logits=t, kd_ratio=0.5)
    # Logits at positions whose next label is ignored (and at the last position) must not matter.
    # (Random noise, not a constant shift: softmax ignores a constant added to one position's logits.)
    s2, t2 = s.clone(), t.clone()
    s2[0, :2] += logits(30, batch=1, seq=2)[0] * 10
    t2[0, :2] += logits(31, batch=1, seq=2)[0] * 10
    s2[:, -1] += logits(32, batch=2, seq=1)[:, 0] * 10
    s2[1, -2] += logits(33, batch=1, seq=1)[0, 0] * 10  # predicts labels[1, -1], which is IGNORE
    other = distillation_loss(s2, lab, teacher_logits=t2, kd_ratio=0.5)
    assert float(other.loss_sum) == pytest.approx(float(base.loss_sum), rel=1e-12)
    # ... and logits at a label position must.
    s2[0, 2] += logits(34, batch=1, seq=1)[0, 0]
    assert float(distillation_loss(s2, lab, teacher_logits=t, kd_ratio=0.5).loss_sum) != pytest.approx(
        float(base.loss_sum), rel=1e-6
    )


def test_blend_with_gold_ce() -> None:
    t, s, lab = logits(12), logits(13), labels_for()
    ce = F.cross_entropy(s[:, :-1].reshape(-1, V), lab[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    sft = distillation_loss(s, lab, kd_ratio=0.0)  # no teacher needed
    assert float(sft.loss_sum) == pytest.approx(float(ce), rel=1e-12) and sft.kd_sum == 0.0
    kd_only = distillation_loss(s, lab, teacher_logits=t, kd_ratio=1.0, temperature=2.0)
    mixed = distillation_loss(s, lab, teacher_logits=t, kd_ratio=0.3, temperature=2.0)
    assert float(mixed.loss_sum) == pytest.approx(0.3 * kd_only.kd_sum + 0.7 * float(ce), rel=1e-12)
    assert mixed.ce_sum == pytest.approx(float(ce), rel=1e-12)


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_topk_with_full_vocab_equals_full_logits(kind: str) -> None:
    t, s, lab = logits(14), logits(15), labels_for()
    full = distillation_loss(s, lab, teacher_logits=t, loss=kind, temperature=2.0, kd_ratio=0.6)
    top = distillation_loss(s, lab, teacher_topk=teacher_topk(t, V, 2.0), loss=kind, temperature=2.0, kd_ratio=0.6)
    assert float(top.loss_sum) == pytest.approx(float(full.loss_sum), rel=1e-5)


@pytest.mark.parametrize("kind", DIVERGENCES)
def test_topk_tail_bucket(kind: str) -> None:
    """Below the full vocabulary the loss is the divergence over k tokens + one tail bucket, and no larger
    than the full divergence (data-processing inequality)."""
    k, temp = 3, 1.5
    t, s, lab = logits(16), logits(17), labels_for()
    out = distillation_loss(s, lab, teacher_topk=teacher_topk(t, k, temp), loss=kind, temperature=temp, kd_ratio=1.0)
    expected = 0.0
    for b in range(2):
        for i in range(5):
            if lab[b, i + 1] == IGNORE_INDEX:
                continue
            p = torch.softmax(t[b, i] / temp, -1)
            q = torch.softmax(s[b, i] / temp, -1)
            idx = p.topk(k).indices
            pb = torch.cat([p[idx], (1 - p[idx].sum()).reshape(1)])
            qb = torch.cat([q[idx], (1 - q[idx].sum()).reshape(1)])
            expected += float(divergence(pb.log(), qb.log(), kind, 0.5)) * temp**2
    assert out.kd_sum == pytest.approx(expected, rel=1e-5)
    full = distillation_loss(s, lab, teacher_logits=t, loss=kind, temperature=temp, kd_ratio=1.0)
    assert 0 < out.kd_sum <= full.kd_sum + 1e-9


def test_half_precision_logits_are_upcast() -> None:
    t, s, lab = logits(18), logits(19), labels_for()
    ref = distillation_loss(s, lab, teacher_logits=t, kd_ratio=0.5)
    half = distillation_loss(s.bfloat16(), lab, teacher_logits=t.bfloat16(), kd_ratio=0.5)
    assert half.loss_sum.dtype == torch.float32
    assert float(half.loss_sum) == pytest.approx(float(ref.loss_sum), rel=2e-2)


def test_bad_arguments() -> None:
    t, s, lab = logits(20), logits(21), labels_for()
    with pytest.raises(ValueError, match="needs a teacher signal"):
        distillation_loss(s, lab, kd_ratio=0.5)
    with pytest.raises(ValueError, match="not both"):
        distillation_loss(s, lab, teacher_logits=t, teacher_topk=teacher_topk(t, 2))
    with pytest.raises(ValueError, match="loss must be one of"):
        distillation_loss(s, lab, teacher_logits=t, loss="kl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="0 < beta < 1"):
        distillation_loss(s, lab, teacher_logits=t, loss="jsd", beta=1.0)
    with pytest.raises(ValueError, match="kd_ratio"):
        distillation_loss(s, lab, teacher_logits=t, kd_ratio=1.5)
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(s, lab, teacher_logits=t[..., :-1])
    empty = torch.full_like(lab, IGNORE_INDEX)
    out = distillation_loss(s, empty, teacher_logits=t)
    assert out.n_tokens == 0 and float(out.loss_sum) == 0.0
