"""Load a base model, optionally with a trained adapter, ready for generation.

Evaluation compares the base and the fine-tuned model, so both must come through the same door with
the same dtype, device and tokenizer settings; otherwise a score difference could be a loading
difference.
"""

from __future__ import annotations

import os
from typing import Any

from training_assets.engine.precision import compute_dtype

DTYPES = ("bf16", "fp32")


def _is_adapter(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "adapter_config.json"))


def _has_tokenizer(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json"))


def needs_base_weights(adapter_dir: str | None) -> bool:
    """Whether loading with ``adapter_dir`` reads the base weights (not so for a merged model, which replaces them)."""
    return adapter_dir is None or _is_adapter(adapter_dir)


def load_base_weights(base_dir: str) -> Any:
    """The base model in float32, as ``load_for_inference`` would read it, to pass back as its ``base_model``.

    Several candidates over one base (the base itself, base + adapter) can then share one read of its weights.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if not os.path.isdir(base_dir):
        raise FileNotFoundError(f"base_dir {base_dir} is not a directory")
    return AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)


def load_for_inference(
    base_dir: str, adapter_dir: str | None = None, dtype: str = "bf16", *, base_model: Any | None = None
) -> tuple[Any, Any]:
    """Return ``(model, tokenizer)`` in eval mode on the best available device.

    ``adapter_dir`` may hold a peft adapter (merged into the base here, in float32 so the merge is
    exact, before casting to ``dtype``) or a full merged model written by ``train_lora`` with
    ``lora.merge``, which is then loaded instead of the base. The tokenizer pads on the left, which
    batched generation needs so every prompt ends right where generation starts.

    ``base_model``, from ``load_base_weights(base_dir)``, stands in for reading ``base_dir``'s weights; it is
    changed in place (merged, cast, moved), so pass a copy to keep it. It is unused for a merged model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if base_model is not None and next(base_model.parameters()).dtype != torch.float32:
        raise ValueError("base_model must hold float32 weights (from load_base_weights) so an adapter merges exactly")
    for label, path in (("base_dir", base_dir), ("adapter_dir", adapter_dir)):
        if path is not None and not os.path.isdir(path):
            raise FileNotFoundError(f"{label} {path} is not a directory")

    model_dir = base_dir
    if adapter_dir is not None and not _is_adapter(adapter_dir):
        if not os.path.isfile(os.path.join(adapter_dir, "config.json")):
            raise FileNotFoundError(
                f"{adapter_dir} holds neither a peft adapter (adapter_config.json) nor a merged model (config.json)"
            )
        model_dir = adapter_dir
    if model_dir == base_dir and base_model is not None:
        model = base_model
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter_dir is not None and _is_adapter(adapter_dir):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = compute_dtype(dtype, device)  # bf16 weights on a CPU without bf16 kernels: minutes per batch
    model = model.to(device=device, dtype=torch.bfloat16 if dtype == "bf16" else torch.float32)
    model.eval()

    tok_dir = adapter_dir if adapter_dir is not None and _has_tokenizer(adapter_dir) else base_dir
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
