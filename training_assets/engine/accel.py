"""What the GPU path switches on, in one place: attention kernel, pinned-memory copies, torch.compile.

On CPU nothing here changes what runs (SDPA attention, plain copies, eager mode), so CPU runs stay bit-identical
to the runs the tests compare. On CUDA: flash-attention's variable-length kernel when ``flash_attn`` is
installed (flat rows of packed documents then need no mask at all: transformers splits them at the restarting
``position_ids``), batches copied from pinned memory without blocking the host, and the decoder compiled
when the run asks for it (``compile: true``, an execution setting: it changes speed, not what is learnt).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any


def attention_implementation(device: str) -> str:
    """``flash_attention_2`` on CUDA when the ``flash_attn`` package is installed, else ``sdpa``."""
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def to_device(batch: Mapping[str, Any], device: str) -> dict[str, Any]:
    """Tensors of ``batch`` on ``device``; to CUDA through pinned memory, so the copy overlaps compute."""
    import torch

    cuda = device.startswith("cuda")

    def move(v: Any) -> Any:
        if not isinstance(v, torch.Tensor):
            return v
        if cuda and v.device.type == "cpu":
            return v.pin_memory().to(device, non_blocking=True)
        return v.to(device)

    return {k: move(v) for k, v in batch.items()}


def compile_decoder(model: Any) -> Any:
    """Compile the module the losses call (the decoder stack under a peft or causal-LM wrapper), in place.

    The losses call the decoder and the LM head separately (see ``sft.causal_lm_loss``), so compiling the outer
    model would compile a forward nobody calls. Shapes vary from step to step (flat rows of packed documents),
    so the graph is compiled for dynamic shapes rather than recompiled per length.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    target = getattr(inner, "model", inner)
    target.compile(dynamic=True)
    return target
