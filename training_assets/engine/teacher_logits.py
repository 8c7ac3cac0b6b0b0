"""The teacher's next-token distributions: precomputed top-k shards on disk, or computed on the fly.

Precomputing pays off when the same teacher signal is read more than once (several epochs, several students,
a KD-vs-SFT comparison): the teacher then runs once and need not sit on the accelerator during training. Only the
top-k log-probabilities at label positions are stored, because full distributions do not fit on disk at any
useful scale. Bytes per stored label token, for top-k with float32 log-probs and int32 ids plus an int32
position:

    top-k:       8 * k + 4 bytes       k = 32 -> 260 B/token
    full vocab:  4 * vocab bytes       SmolLM2 (vocab 49,152) -> 196,608 B/token (98,304 in float16)

so k = 32 is ~750x smaller than full float32 logits for SmolLM2 (the exact figures for a store are in its
``index.json``). How the loss treats the mass outside the top k is documented in ``kd_losses``.

Layout: ``index.json`` plus one directory per shard of ``.npy`` arrays (memory-mapped on read, so a store larger
than RAM is fine); ``index.json`` records a SHA-256 per file and the store is written atomically, so a store
that opens is complete and a flipped bit is caught before it silently trains the student on garbage. Each
example also carries a fingerprint of its token ids, so a store computed for other records, another tokenizer
or another ``max_seq_len`` is refused instead of misaligned.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixtrain.identity import file_sha256
from training_assets.engine.base_model import atomic_directory
from training_assets.engine.examples import IGNORE_INDEX
from training_assets.engine.kd_losses import TopK, teacher_topk
from training_assets.engine.packing import pad_collate

INDEX_FILE = "index.json"
FORMAT_VERSION = 1
_ARRAYS = ("example_index", "fingerprint", "offsets", "positions", "indices", "logprobs")


class TeacherStoreError(ValueError):
    """A top-k store is damaged or does not belong to the examples it is asked about."""


def fingerprint(input_ids: Sequence[int]) -> int:
    """64-bit digest of an example's token ids."""
    digest = hashlib.blake2b(np.asarray(input_ids, dtype=np.int64).tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def examples_sha256(examples: Sequence[dict[str, list[int]]]) -> str:
    """Identity of a list of examples (token ids and label positions, in order): what a store was computed for."""
    h = hashlib.sha256()
    for e in examples:
        h.update(np.asarray(e["input_ids"], dtype=np.int64).tobytes())
        h.update(b"|")
        h.update(label_positions(e["labels"]).tobytes())
        h.update(b"\n")
    return h.hexdigest()


def label_positions(labels: Sequence[int]) -> np.ndarray:
    """Positions whose logits are trained: ``t`` with ``labels[t + 1] != IGNORE_INDEX`` (the causal shift)."""
    lab = np.asarray(labels, dtype=np.int64)
    return np.flatnonzero(lab[1:] != IGNORE_INDEX).astype(np.int32)


def teacher_signal(teacher: Any, batch: dict[str, Any], *, top_k: int | None, temperature: float) -> dict[str, Any]:
    """On-the-fly mode: run the teacher on ``batch``; keyword arguments for ``distillation_loss``.

    ``top_k=None`` gives full logits (exact KD); an int gives the same top-k signal a precomputed store would,
    which is how a precomputed run can be checked against an on-the-fly one.
    """
    import torch

    # The training step runs under the student's autocast; the teacher must not. Under bf16 autocast its logits
    # would be bf16-rounded, so the on-the-fly signal would differ from the float32 one a precomputed store holds
    # and a student equal to the teacher would not start at KD 0. The teacher is float32 (``load_for_inference``).
    device_type = batch["input_ids"].device.type
    with torch.no_grad(), torch.autocast(device_type=device_type, enabled=False):
        logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    if top_k is None:
        return {"teacher_logits": logits}
    return {"teacher_topk": teacher_topk(logits, top_k, temperature)}


class _ShardWriter:
    """Accumulates one shard's rows in memory and writes it out once it reaches ``max_tokens``."""

    def __init__(self, root: Path, k: int, max_tokens: int) -> None:
        self.root, self.k, self.max_tokens = root, k, max_tokens
        self.shards: list[dict[str, Any]] = []
        self._reset()

    def _reset(self) -> None:
        self.rows: dict[str, list[Any]] = {name: [] for name in _ARRAYS if name != "offsets"}
        self.lengths: list[int] = []

    def add(
        self, example_index: int, fp: int, positions: np.ndarray, indices: np.ndarray, logprobs: np.ndarray
    ) -> None:
        self.rows["example_index"].append(example_index)
        self.rows["fingerprint"].append(fp)
        self.rows["positions"].append(positions)
        self.rows["indices"].append(indices)
        self.rows["logprobs"].append(logprobs)
        self.lengths.append(len(positions))
        if sum(self.lengths) >= self.max_tokens:
            self.flush()

    def flush(self) -> None:
        if not self.lengths:
            return
        name = f"shard-{len(self.shards):05d}"
        arrays = {
            "example_index": np.asarray(self.rows["example_index"], dtype=np.int64),
            "fingerprint": np.asarray(self.rows["fingerprint"], dtype=np.uint64),
            "offsets": np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64),
            "positions": np.concatenate(self.rows["positions"]).astype(np.int32),
            "indices": np.concatenate(self.rows["indices"]).astype(np.int32).reshape(-1, self.k),
            "logprobs": np.concatenate(self.rows["logprobs"]).astype(np.float32).reshape(-1, self.k),
        }
        (self.root / name).mkdir()
        files = {}
        for key, arr in arrays.items():
            path = self.root / name / f"{key}.npy"
            np.save(path, arr, allow_pickle=False)
            files[path.name] = file_sha256(path)
        self.shards.append(
            {"name": name, "n_examples": len(self.lengths), "n_tokens": int(sum(self.lengths)), "files": files}
        )
        self._reset()


def precompute_teacher_topk(
    teacher: Any,
    examples: Sequence[dict[str, list[int]]],
    out_dir: str,
    *,
    k: int = 32,
    temperature: float = 1.0,
    batch_size: int = 8,
    pad_id: int = 0,
    shard_max_tokens: int = 1 << 18,
    identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the teacher's top-k log-probs (at ``temperature``) at every label position of ``examples``.

    Example ``i`` of ``examples`` is stored as example index ``i``. Memory holds one batch of teacher logits
    and at most one shard (``shard_max_tokens`` label tokens, about ``shard_max_tokens * (8k + 4)`` bytes);
    the store is built beside ``out_dir`` and renamed into place only when complete. ``identity`` (teacher
    path, weights hash, vocabulary hash, ...) is copied into ``index.json`` so the store's origin is on record.
    Returns the index.
    """
    import torch

    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if not examples:
        raise ValueError("no examples to compute teacher top-k for")
    device = next(teacher.parameters()).device
    was_training = teacher.training
    teacher.eval()
    vocab = None
    total_tokens = 0
    try:
        with atomic_directory(out_dir) as tmp:
            writer: _ShardWriter | None = None
            for start in range(0, len(examples), batch_size):
                chunk = examples[start : start + batch_size]
                # Right padding under a causal mask leaves each real position's logits as they are without padding,
                # so what is stored does not depend on which examples shared a batch.
                batch = pad_collate(chunk, pad_id, device)
                with torch.no_grad():
                    logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                vocab = logits.size(-1)
                kk = min(k, vocab)
                writer = writer or _ShardWriter(tmp, kk, shard_max_tokens)
                top = teacher_topk(logits, kk, temperature)
                for row, ex in enumerate(chunk):
                    pos = label_positions(ex["labels"])
                    at = torch.as_tensor(pos, dtype=torch.long, device=device)
                    writer.add(
                        start + row,
                        fingerprint(ex["input_ids"]),
                        pos,
                        top.indices[row, at].cpu().numpy(),
                        top.logprobs[row, at].cpu().numpy(),
                    )
                    total_tokens += len(pos)
                del logits, top
            assert writer is not None and vocab is not None
            writer.flush()
            stored = sum(os.path.getsize(p) for p in tmp.rglob("*.npy"))
            index = {
                "format_version": FORMAT_VERSION,
                "k": writer.k,
                "temperature": temperature,
                "vocab_size": vocab,
                "n_examples": len(examples),
                "examples_sha256": examples_sha256(examples),
                "n_tokens": total_tokens,
                "shards": writer.shards,
                "bytes_on_disk": stored,
                "bytes_per_token": 8 * writer.k + 4,
                "full_vocab_fp32_bytes_per_token": 4 * vocab,
                "teacher": identity or {},
            }
            with open(tmp / INDEX_FILE, "w", encoding="utf-8") as f:
                json.dump(index, f, indent=2, sort_keys=True)
    finally:
        teacher.train(was_training)
    return index


class TopKStore:
    """Read side of a store written by ``precompute_teacher_topk``."""

    def __init__(self, path: str, *, verify: bool = True) -> None:
        self.path = Path(path)
        index_path = self.path / INDEX_FILE
        if not index_path.is_file():
            raise TeacherStoreError(f"{self.path}: no {INDEX_FILE}; not a teacher top-k store (or an incomplete one)")
        with open(index_path, encoding="utf-8") as f:
            self.index: dict[str, Any] = json.load(f)
        if self.index.get("format_version") != FORMAT_VERSION:
            raise TeacherStoreError(
                f"{index_path}: format_version {self.index.get('format_version')!r}, expected {FORMAT_VERSION}"
            )
        self.k: int = int(self.index["k"])
        self.temperature: float = float(self.index["temperature"])
        self._shards: list[dict[str, np.ndarray]] = []
        self._where: dict[int, tuple[int, int]] = {}
        for s, shard in enumerate(self.index["shards"]):
            arrays = {}
            for name in _ARRAYS:
                path = self.path / shard["name"] / f"{name}.npy"
                if not path.is_file():
                    raise TeacherStoreError(f"{path}: missing from the store")
                if verify and file_sha256(path) != shard["files"][path.name]:
                    raise TeacherStoreError(f"{path}: checksum does not match {index_path}; the store is damaged")
                arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
            self._shards.append(arrays)
            for row, ex in enumerate(arrays["example_index"]):
                self._where[int(ex)] = (s, row)

    def __len__(self) -> int:
        return len(self._where)

    def lookup(self, example_index: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """``(fingerprint, positions, indices [n, k], logprobs [n, k])`` of one stored example."""
        if example_index not in self._where:
            raise TeacherStoreError(f"{self.path}: example {example_index} is not in the store ({len(self)} examples)")
        s, row = self._where[example_index]
        a = self._shards[s]
        lo, hi = int(a["offsets"][row]), int(a["offsets"][row + 1])
        return int(a["fingerprint"][row]), a["positions"][lo:hi], a["indices"][lo:hi], a["logprobs"][lo:hi]

    def batch(
        self, example_ids: Iterable[int], examples: Sequence[dict[str, list[int]]], width: int, device: Any = "cpu"
    ) -> TopK:
        """The stored signal for a collated batch: ``TopK`` tensors [len(examples), width, k].

        Positions that are not label positions hold placeholders (id 0, log-prob 0) that the loss never reads.
        Each example is checked against what was stored for it, so a misaligned store fails here, loudly.
        """
        import torch

        ids = list(example_ids)
        logprobs = np.zeros((len(ids), width, self.k), dtype=np.float32)
        indices = np.zeros((len(ids), width, self.k), dtype=np.int64)
        for row, (ex_id, ex) in enumerate(zip(ids, examples, strict=True)):
            fp, pos, idx, lp = self.lookup(ex_id)
            if fp != fingerprint(ex["input_ids"]) or not np.array_equal(pos, label_positions(ex["labels"])):
                raise TeacherStoreError(
                    f"{self.path}: example {ex_id} was stored for different tokens or labels; recompute the store "
                    "with the same records, tokenizer and max_seq_len"
                )
            logprobs[row, pos] = lp
            indices[row, pos] = idx
        return TopK(torch.from_numpy(logprobs).to(device), torch.from_numpy(indices).to(device))
