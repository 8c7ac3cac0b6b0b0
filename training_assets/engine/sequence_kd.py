"""Sequence-level distillation data: the teacher answers the training prompts, a verifier keeps the good answers.

Training the student on the teacher's own outputs (Kim & Rush, 2016) transfers behaviour that per-token logits
cannot, such as the overall shape of an answer, and it works for any student, even one with another tokenizer.
Sampled outputs are noisy, so every candidate goes through checks before it becomes training data: it must end
(the end-of-turn token, unless ``require_eos=False``), be non-empty, be new for its prompt, and pass the
caller's verifier (for the demo, JSON-schema validation of the answer). Every drop is counted by reason, so a
run that kept little says why.

The verifier is a plain callable ``(answer_text, source_record) -> None | reason``: ``None`` keeps the answer,
a string drops it and is the reason counted. It is an argument rather than an import because the training
package must not depend on the evaluation package. A verifier that raises is a drop with reason
``verifier_raised:<ExceptionType>``, not a crash of the whole generation run.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

Verifier = Callable[[str, dict[str, Any]], str | None]


def prompt_messages(record: dict[str, Any]) -> list[dict[str, str]] | None:
    """The conversation up to (not including) its last assistant turn; ``None`` when there is nothing to answer."""
    if record.get("kind") != "chat" or not record.get("messages"):
        return None
    raw = record["messages"]
    try:
        messages = json.loads(raw) if isinstance(raw, str) else list(raw)
    except json.JSONDecodeError:
        return None
    if not isinstance(messages, list):
        return None
    last_assistant = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=len(messages))
    prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:last_assistant]]
    if not prompt or prompt[-1]["role"] == "assistant" or not any(m["role"] == "user" for m in prompt):
        return None
    return prompt


def _record(source: dict[str, Any], index: int, prompt: list[dict[str, str]], answer: str, j: int) -> dict[str, Any]:
    messages = [*prompt, {"role": "assistant", "content": answer}]
    body = json.dumps(messages, ensure_ascii=False)
    origin = source.get("doc_id") or f"record-{index}"
    return {
        "doc_id": "seqkd-" + hashlib.sha256(body.encode()).hexdigest()[:16],
        "source_id": "sequence_kd",
        "locator": f"{origin}#candidate={j}",
        "kind": "chat",
        "text": "\n\n".join(m["content"] for m in messages),
        "messages": body,
        "domain": source.get("domain"),
        "language": source.get("language"),
    }


def _judge(
    tokens: list[int],
    tokenizer: Any,
    eos_id: int | None,
    require_eos: bool,
    kept_here: set[str],
    max_kept: int | None,
    verifier: Verifier | None,
    source: dict[str, Any],
) -> tuple[str | None, str]:
    """(drop reason or None, decoded answer) for one candidate; the checks run cheapest first."""
    ended = eos_id is not None and eos_id in tokens
    if ended:
        tokens = tokens[: tokens.index(eos_id)]
    answer = tokenizer.decode(tokens, skip_special_tokens=True).strip()
    if require_eos and not ended:
        return "no_eos", answer
    if not answer:
        return "empty", answer
    if answer in kept_here:
        return "duplicate", answer
    if max_kept is not None and len(kept_here) >= max_kept:
        return "over_max_kept_per_prompt", answer
    if verifier is None:
        return None, answer
    try:
        verdict = verifier(answer, source)
    except Exception as e:  # a faulty verifier must not lose the whole run; counted by exception type
        return f"verifier_raised:{type(e).__name__}", answer
    return (None if verdict is None else f"verifier:{verdict}"), answer


def generate_sequence_kd(
    teacher: Any,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    *,
    verifier: Verifier | None = None,
    n_candidates: int = 4,
    temperature: float = 0.7,
    top_p: float = 0.95,
    max_new_tokens: int = 128,
    seed: int = 0,
    batch_size: int = 8,
    require_eos: bool = True,
    max_kept_per_prompt: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Sample ``n_candidates`` teacher answers per prompt of ``records``; return kept chat records and counts.

    Sampling is reproducible for the same (``seed``, ``batch_size``, teacher, prompts): each batch of prompts
    is generated under ``seed + batch number`` in a forked RNG, so the caller's RNG state is left alone.
    ``temperature=0`` decodes greedily (all candidates of a prompt are then the same, and all but one are
    dropped as duplicates). ``counts``: prompts, generated, kept, dropped, by_reason, skipped_records and the
    sampling settings.
    """
    import torch

    if n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
    if temperature < 0 or not 0 < top_p <= 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError(
            f"need temperature >= 0, 0 < top_p <= 1, max_new_tokens >= 1, batch_size >= 1; got temperature="
            f"{temperature}, top_p={top_p}, max_new_tokens={max_new_tokens}, batch_size={batch_size}"
        )
    eos_id = tokenizer.eos_token_id
    if require_eos and eos_id is None:
        raise ValueError("require_eos=True but the tokenizer has no eos_token_id")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id

    prompts: list[tuple[int, list[dict[str, str]]]] = []
    skipped = 0
    for i, rec in enumerate(records):
        p = prompt_messages(rec)
        if p is None:
            skipped += 1
        else:
            prompts.append((i, p))

    device = next(teacher.parameters()).device
    was_training = teacher.training
    teacher.eval()
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # every prompt must end where generation starts
    by_reason: Counter[str] = Counter()
    kept: list[dict[str, Any]] = []
    generated = 0
    try:
        for b, start in enumerate(range(0, len(prompts), batch_size)):
            chunk = prompts[start : start + batch_size]
            texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for _, p in chunk]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {}
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
                torch.manual_seed(seed + b)
                out = teacher.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    num_return_sequences=n_candidates,
                    pad_token_id=pad_id,
                    eos_token_id=eos_id,
                    **(sampling or {"do_sample": False}),
                )
            new = out[:, enc["input_ids"].size(1) :].cpu().tolist()
            generated += len(new)
            for p_row, (index, prompt) in enumerate(chunk):
                seen: set[str] = set()
                for j in range(n_candidates):
                    reason, answer = _judge(
                        new[p_row * n_candidates + j],
                        tokenizer,
                        eos_id,
                        require_eos,
                        seen,
                        max_kept_per_prompt,
                        verifier,
                        records[index],
                    )
                    if reason is not None:
                        by_reason[reason] += 1
                        continue
                    seen.add(answer)
                    kept.append(_record(records[index], index, prompt, answer, j))
    finally:
        tokenizer.padding_side = old_side
        teacher.train(was_training)
    counts = {
        "prompts": len(prompts),
        "skipped_records": skipped,
        "generated": generated,
        "kept": len(kept),
        "dropped": generated - len(kept),
        "by_reason": dict(sorted(by_reason.items())),
        "settings": {
            "n_candidates": n_candidates,
            "temperature": temperature,
            "top_p": top_p,
            "max_new_tokens": max_new_tokens,
            "seed": seed,
            "batch_size": batch_size,
            "require_eos": require_eos,
            "max_kept_per_prompt": max_kept_per_prompt,
            "verifier": getattr(verifier, "__name__", type(verifier).__name__) if verifier is not None else None,
        },
    }
    return kept, counts
