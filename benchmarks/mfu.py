"""Model FLOPs utilisation for :mod:`benchmarks.bench_sft_trl`: the cards' dense bf16 peaks, the base model's
parameter count (from its safetensors headers) and MFU by the 6N convention. torch and safetensors are
imported inside the functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, most specific name first: the
# first key contained in ``torch.cuda.get_device_name()`` wins.
PEAK_BF16_FLOPS: dict[str, float] = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,  # SXM
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
    "A10": 125e12,
}


def n_params(base_dir: str) -> int:
    """Parameters of the base model, read from its safetensors headers (no second copy of the weights)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(Path(base_dir).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                shape = f.get_slice(name).get_shape()
                n = 1
                for d in shape:
                    n *= d
                total += n
    return total


def accelerator() -> dict[str, Any]:
    """The GPU the children train on and its dense bf16 peak, or the CPU (no MFU)."""
    import torch

    if not torch.cuda.is_available():
        return {"device": "cpu", "peak_flops": None}
    name = torch.cuda.get_device_name(0)
    peak = next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)
    return {"device": name, "peak_flops": peak}


def mfu(n_params: int, tokens_per_s: float | None, peak_flops: float | None) -> float | None:
    """Model FLOPs utilisation by the 6N convention; None on CPU or an unknown card."""
    if not peak_flops or not tokens_per_s:
        return None
    return 6 * n_params * tokens_per_s / peak_flops
