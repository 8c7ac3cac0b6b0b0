"""Greedy generation, held-out loss and the json_signature evaluation, on any causal LM with a chat template.

Both the base and the fine-tuned model go through exactly these functions, so a difference in the metrics is a
difference in the models, not in how they were prompted or decoded. torch is imported inside the functions so
that importing the engine (e.g. to read a results table) costs nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from eval_assets.engine.candidates import iter_candidates
from eval_assets.engine.deadline import check_deadline, generate_max_time
from eval_assets.tasks import json_signature
from training_assets.engine.precision import bf16_is_native

EVAL_RESULT_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),  # JSON chat messages, as in the registry
        pa.field("output", pa.string(), nullable=False),
        pa.field("json_valid", pa.bool_(), nullable=False),
        pa.field("schema_valid", pa.bool_(), nullable=False),
        pa.field("field_accuracy", pa.float64(), nullable=False),
        pa.field("exact_match", pa.bool_(), nullable=False),
    ]
)


def _autocast(model: Any) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast where the weights are fp32 and the device has bf16 kernels (on a CPU without them, bf16
    matmuls take a scalar fallback some 60x slower than fp32: see ``training_assets.engine.precision``)."""
    import torch

    param = next(model.parameters(), None)
    if param is None or param.dtype != torch.float32 or not bf16_is_native(param.device.type):
        return contextlib.nullcontext()
    return torch.autocast(device_type=param.device.type, dtype=torch.bfloat16)


def _device(model: Any) -> Any:
    return next(model.parameters()).device


@contextlib.contextmanager
def _padding_side(tokenizer: Any, side: str) -> Iterator[None]:
    """Set the padding side for one call and restore it, so callers' tokenizers are left as they were."""
    before = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield
    finally:
        tokenizer.padding_side = before


def _pad_id(tokenizer: Any) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    raise ValueError("tokenizer has neither a pad nor an eos token; cannot batch")


def _chat_text(tokenizer: Any, conversation: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=add_generation_prompt)


def _percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), without pulling numpy into this module's API."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Generation:
    """One request's completion and what it cost; ``error`` instead of raising, so one bad item is one bad row.

    ``truncated``: the model used all ``max_new_tokens`` without ending its turn (runaway generation); the text is
    then cut off and scored as it stands. ``latency_s`` is the wall time of the batch the request rode in.
    """

    output: str
    prompt_tokens: int = 0
    new_tokens: int = 0
    truncated: bool = False
    latency_s: float = 0.0
    error: str | None = None


def _stop_ids(model: Any, tokenizer: Any, extra_stop: Sequence[str]) -> set[int]:
    eos_ids = model.generation_config.eos_token_id
    if eos_ids is None:
        eos_ids = tokenizer.eos_token_id
    stops = set(eos_ids if isinstance(eos_ids, list) else [eos_ids]) - {None}
    for text in extra_stop:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        if len(ids) == 1:  # a multi-token end marker cannot be one eos id; the scorer still sees the text
            stops.add(int(ids[0]))
    return stops


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str | None],
    *,
    max_new_tokens: int,
    batch_size: int,
    extra_stop: Sequence[str] = (),
) -> tuple[list[Generation], float]:
    """Greedy completions of already-rendered prompt texts, in input order, and the total wall time.

    Requests are batched by prompt length (less padding, same outputs) with left padding so every row's new
    tokens start at the same position. A ``None`` prompt (one that could not be rendered) gets an error row
    without being run; a batch that raises is retried item by item so the error lands on the item that caused it.
    Inside an evaluation's time limit (``deadline.time_limit``) every call is bounded by it, and running past it
    raises ``GenerationTimeout``, which no retry here catches.
    """
    import torch

    if batch_size <= 0 or max_new_tokens <= 0:
        raise ValueError("batch_size and max_new_tokens must be > 0")
    results: list[Generation | None] = [None] * len(prompts)
    lengths: dict[int, int] = {}
    for i, text in enumerate(prompts):
        if text is None:
            results[i] = Generation("", error="prompt could not be rendered")
            continue
        n = len(tokenizer(text, add_special_tokens=False).input_ids)
        lengths[i] = n
    order = sorted(lengths, key=lambda i: (lengths[i], i))
    pad_id = _pad_id(tokenizer)
    stops = _stop_ids(model, tokenizer, extra_stop)
    device = _device(model)

    def run(idx: list[int]) -> None:
        check_deadline()
        with _padding_side(tokenizer, "left"):
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(device) for k, v in enc.items()}
        t0 = time.perf_counter()
        with torch.no_grad(), _autocast(model):
            out = model.generate(
                **enc,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=sorted(stops) or None,
                **generate_max_time(),  # ends this call at the candidate's deadline
            )
        check_deadline()  # a call cut short by the deadline gave cut-off answers: none of them is scored
        elapsed = time.perf_counter() - t0
        for row, i in zip(out[:, enc["input_ids"].shape[1] :].tolist(), idx, strict=True):
            stop = next((k for k, tok in enumerate(row) if tok in stops), None)
            kept = row if stop is None else row[: stop + 1]
            results[i] = Generation(
                tokenizer.decode(kept, skip_special_tokens=True).strip(),
                prompt_tokens=lengths[i],
                new_tokens=len(kept),
                truncated=stop is None and len(kept) >= max_new_tokens,
                latency_s=elapsed,
            )

    was_training = model.training
    model.eval()
    started = time.perf_counter()
    try:
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            try:
                run(idx)
            except Exception as batch_error:  # one bad request must not cost the others their answers
                if len(idx) == 1:
                    results[idx[0]] = Generation("", prompt_tokens=lengths[idx[0]], error=repr(batch_error))
                    continue
                for i in idx:
                    try:
                        run([i])
                    except Exception as e:
                        results[i] = Generation("", prompt_tokens=lengths[i], error=repr(e))
    finally:
        model.train(was_training)
    return [r if r is not None else Generation("", error="not generated") for r in results], (
        time.perf_counter() - started
    )


def chat_prompt(tokenizer: Any, conversation: list[dict[str, Any]]) -> str:
    """The generation prompt for a plain conversation, through the tokenizer's own chat template."""
    return _chat_text(tokenizer, conversation, add_generation_prompt=True)


def generate(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    *,
    max_new_tokens: int,
    batch_size: int,
) -> tuple[list[str], dict[str, float]]:
    """Greedy completions of the assistant turn, in input order, plus timing (see ``generate_texts``).

    A request's latency is the wall time of the batch it rode in, which is what a caller of a batched server
    would see. A request that fails raises here; the suites use ``generate_texts`` to get an error row instead.
    """
    texts = [chat_prompt(tokenizer, c) for c in conversations]
    gens, total = generate_texts(model, tokenizer, texts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    failed = next((g for g in gens if g.error is not None), None)
    if failed is not None:
        raise RuntimeError(f"generation failed: {failed.error}")
    new_tokens = sum(g.new_tokens for g in gens)
    latencies = [g.latency_s for g in gens]
    stats = {
        "n": float(len(texts)),
        "latency_p50_s": _percentile(latencies, 0.50),
        "latency_p95_s": _percentile(latencies, 0.95),
        "new_tokens": float(new_tokens),
        "wall_s": total,
        "tokens_per_s": new_tokens / total if total > 0 else 0.0,
    }
    return [g.output for g in gens], stats


def _loss_example(tokenizer: Any, conversation: list[dict[str, str]], reference: str) -> tuple[list[int], int]:
    """Token ids of prompt + assistant answer, and where the answer starts.

    The prompt and the answer are tokenized separately and concatenated, so the boundary is exact even when a
    tokenizer would merge across it; the answer includes the template's end-of-turn tokens, as in training.
    """
    prompt = _chat_text(tokenizer, conversation, add_generation_prompt=True)
    full = _chat_text(
        tokenizer, [*conversation, {"role": "assistant", "content": reference}], add_generation_prompt=False
    )
    suffix = full[len(prompt) :] if full.startswith(prompt) else reference + (tokenizer.eos_token or "")
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    answer_ids = tokenizer(suffix, add_special_tokens=False).input_ids
    return prompt_ids + answer_ids, len(prompt_ids)


def sequence_nll(
    model: Any, tokenizer: Any, examples: Sequence[tuple[list[int], int]], batch_size: int
) -> list[tuple[float, int]]:
    """Per example ``(summed NLL, scored tokens)`` of the tokens from ``start`` on, each predicted from the ones
    before it; ``examples`` are ``(token ids, start)``. Right padding keeps real tokens at their positions."""
    import torch
    import torch.nn.functional as F

    if batch_size <= 0:
        raise ValueError("batch_size must be > 0")
    pad_id = _pad_id(tokenizer)
    device = _device(model)
    out: list[tuple[float, int]] = []
    was_training = model.training
    model.eval()
    try:
        for b in range(0, len(examples), batch_size):
            check_deadline()
            batch = examples[b : b + batch_size]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, (ids, start) in enumerate(batch):
                input_ids[r, : len(ids)] = torch.tensor(ids)
                labels[r, max(start, 1) : len(ids)] = torch.tensor(ids[max(start, 1) :])
                mask[r, : len(ids)] = 1
            with torch.no_grad(), _autocast(model):
                logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            shift_logits = logits[:, :-1].float()
            shift_labels = labels[:, 1:].to(device)
            nll = F.cross_entropy(
                shift_logits.reshape(-1, shift_logits.shape[-1]),
                shift_labels.reshape(-1),
                ignore_index=-100,
                reduction="none",
            ).reshape(shift_labels.shape)
            counts = (shift_labels != -100).sum(dim=1)
            out.extend((float(s), int(c)) for s, c in zip(nll.sum(dim=1).tolist(), counts.tolist(), strict=True))
    finally:
        model.train(was_training)
    return out


def reference_nll(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    references: list[str],
    batch_size: int,
) -> list[tuple[float, int]]:
    """Per item ``(summed NLL, answer tokens)`` of the reference as the assistant turn."""
    if len(conversations) != len(references):
        raise ValueError(f"{len(conversations)} conversations but {len(references)} references")
    examples = [_loss_example(tokenizer, c, r) for c, r in zip(conversations, references, strict=True)]
    return sequence_nll(model, tokenizer, examples, batch_size)


def reference_loss(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    references: list[str],
    batch_size: int,
) -> float:
    """Mean negative log-likelihood per answer token of the references as the assistant turn (held-out loss)."""
    per_item = reference_nll(model, tokenizer, conversations, references, batch_size)
    total_tokens = sum(n for _, n in per_item)
    return sum(s for s, _ in per_item) / total_tokens if total_tokens else float("nan")


def evaluate_json_signature(
    model: Any,
    tokenizer: Any,
    items: pa.Table,
    *,
    max_new_tokens: int,
    batch_size: int,
    model_label: str,
) -> tuple[pa.Table, dict[str, float]]:
    """Score a model on json_signature registry items (EVAL_ITEM_SCHEMA rows); per-item table and metrics."""
    ids = items.column("item_id").to_pylist()
    prompts = items.column("prompt").to_pylist()
    references = [json.loads(r) for r in items.column("reference").to_pylist()]
    conversations = [json.loads(p) for p in prompts]
    outputs, stats = generate(model, tokenizer, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size)
    scores = [json_signature.score(o, r) for o, r in zip(outputs, references, strict=True)]
    answers = [json_signature.format_answer(r) for r in references]
    loss = reference_loss(model, tokenizer, conversations, answers, batch_size) if ids else float("nan")
    table = pa.Table.from_pylist(
        [
            {"item_id": i, "model": model_label, "prompt": p, "output": o, **s}
            for i, p, o, s in zip(ids, prompts, outputs, scores, strict=True)
        ],
        schema=EVAL_RESULT_SCHEMA,
    )
    n = len(scores)

    def mean(key: str) -> float:
        return sum(float(s[key]) for s in scores) / n if n else float("nan")

    metrics = {
        "json_valid_rate": mean("json_valid"),
        "schema_valid_rate": mean("schema_valid"),
        "field_accuracy": mean("field_accuracy"),
        "exact_match": mean("exact_match"),
        "heldout_loss": loss,
        "n": float(n),
        "latency_p50_s": stats["latency_p50_s"],
        "latency_p95_s": stats["latency_p95_s"],
        "tokens_per_s": stats["tokens_per_s"],
    }
    return table, metrics


def evaluate_candidates(
    candidates: Mapping[str, tuple[str, str | None]],
    registry: pa.Table,
    set_ids: Sequence[str],
    *,
    limit: int | None,
    max_new_tokens: int,
    batch_size: int,
) -> tuple[pa.Table, dict[str, dict[str, float]]]:
    """Every candidate on every json_signature set of ``registry``: one per-item table and metrics per pair.

    ``candidates`` maps a label to ``(base_dir, adapter_dir or None)``, in the order the report lists them; each
    set keeps its first ``limit`` items (all when ``limit`` is falsy). The table is EVAL_RESULT_SCHEMA plus an
    ``eval_set`` column; the metrics are keyed ``"<label>/<set id>"``. Candidates on the same base share one read
    of its weights (``iter_candidates``). A candidate that cannot be loaded raises here: this report has one
    row layout and no place for a problem; ``comparison.run_evaluation`` reports it instead.
    """
    if not candidates or not set_ids:
        raise ValueError(f"nothing to evaluate: {len(candidates)} candidate(s) on {len(set_ids)} eval set(s)")
    tables: list[pa.Table] = []
    summary: dict[str, dict[str, float]] = {}
    for label, model, tokenizer, error in iter_candidates(candidates):
        if error is not None:
            raise error
        for set_id in set_ids:
            items = registry.filter(pc.equal(registry["eval_set"], set_id))
            if limit:
                items = items.slice(0, limit)
            table, metrics = evaluate_json_signature(
                model, tokenizer, items, max_new_tokens=max_new_tokens, batch_size=batch_size, model_label=label
            )
            tables.append(table.append_column("eval_set", pa.array([set_id] * table.num_rows, pa.string())))
            summary[f"{label}/{set_id}"] = metrics
        del model
    return pa.concat_tables(tables), summary
