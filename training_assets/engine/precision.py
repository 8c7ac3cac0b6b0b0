"""Which precision a training run computes in: the recipe's ``dtype`` where the device runs it fast, else fp32.

A recipe's ``dtype: bf16`` asks for bf16 autocast over fp32 master weights, an optimisation for hardware with
bf16 arithmetic (GPUs from Ampere on, x86 CPUs with AVX-512, ARM CPUs with BF16). On an x86 CPU without
AVX-512 (AVX2 only: oneDNN has no bf16 kernels for it) PyTorch computes bf16 matmuls with its scalar reference
GEMM and SDPA's bf16 backward without vectorised kernels. Measured on such a 2-core machine (torch 2.13): a
``[128, 576] @ [576, 1536]`` matmul took 375 ms in bf16 and 6 ms in fp32, SDPA forward+backward over 400 tokens
163 ms against 29 ms, and a SmolLM2-135M LoRA step went from seconds to minutes. fp32 is there both faster and
more exact, so the run computes in fp32 instead.

What a run asked for stays in its recipe (``learnt()``); what it computed in is the loop's ``dtype``, which the
run manifest's ``hardware.dtype`` records and checkpoints are matched on, so a checkpoint written in bf16 is not
resumed in fp32 (or the reverse) as if nothing had changed.

API:
    bf16_is_native(device) -> bool              False only for a CPU whose bf16 matmuls take the slow path
    compute_dtype(dtype, device) -> "bf16" | "fp32"
"""

from __future__ import annotations


def bf16_is_native(device: str) -> bool:
    """Whether bf16 autocast on ``device`` runs on real bf16 kernels.

    For CPUs this is the check ATen itself makes before it sends a bf16 matmul to oneDNN rather than to its
    scalar fallback. Other devices (CUDA, MPS) are trusted: the recipe chose bf16 for them.
    """
    if device.split(":")[0] != "cpu":
        return True
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the query: assume the slow path, fp32 is safe
        return False


def compute_dtype(dtype: str, device: str) -> str:
    """The dtype a run asking for ``dtype`` computes in on ``device``: fp32 where bf16 would take the slow path."""
    if dtype == "bf16" and not bf16_is_native(device):
        return "fp32"
    return dtype
