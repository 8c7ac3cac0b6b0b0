"""Document records -> supervised training examples (token ids plus loss labels).

Chat documents train only on what the assistant said: the model should learn to answer, not to imitate
users or the system prompt. Which tokens belong to the assistant is worked out from the tokenizer's own
chat template, by rendering the conversation up to each assistant turn and mapping the new characters to
tokens through the offset mapping. That works for any prefix-stable template (ChatML, SmolLM's,
Llama's) without needing ``{% generation %}`` markers, which few templates carry.
"""

from __future__ import annotations

import json
from typing import Any

IGNORE_INDEX = -100


class RecordError(ValueError):
    """A record cannot be turned into an example; the message names the record and field."""


def _where(record: dict[str, Any], index: int) -> str:
    parts = [f"record {index}"]
    for key in ("doc_id", "locator"):
        if record.get(key):
            parts.append(f"{key}={record[key]}")
    return " ".join(parts)


def _parse_messages(record: dict[str, Any], index: int) -> list[dict[str, str]]:
    raw = record.get("messages")
    if not raw:
        raise RecordError(f"{_where(record, index)}: field 'messages': required for kind 'chat'")
    try:
        messages = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as e:
        raise RecordError(f"{_where(record, index)}: field 'messages': not valid JSON ({e})") from e
    if not isinstance(messages, list) or not messages:
        raise RecordError(f"{_where(record, index)}: field 'messages': expected a non-empty JSON list")
    for j, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise RecordError(
                f"{_where(record, index)}: field 'messages[{j}]': expected {{'role': str, 'content': str}}"
            )
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    if not messages and not add_generation_prompt:
        return ""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _assistant_spans(tokenizer: Any, messages: list[dict[str, str]], full: str, where: str) -> list[tuple[int, int]]:
    """Character spans of ``full`` the model must learn: each assistant reply plus its end-of-turn token.

    Whatever the template appends after the end-of-turn token (usually a newline) is left out, because at
    inference time generation stops at that token and never produces it.
    """
    eot = tokenizer.eos_token
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not (full.startswith(upto) and upto.startswith(prompt)):
            raise RecordError(
                f"{where}: field 'messages': the tokenizer's chat template is not prefix-stable (rendering a "
                "shorter conversation does not give a prefix of the full one), so assistant tokens cannot be located"
            )
        start, end = len(prompt), len(upto)
        if eot:
            cut = full.rfind(eot, start, end)
            if cut >= 0:
                end = cut + len(eot)
        spans.append((start, end))
    return spans


def _chat_example(tokenizer: Any, messages: list[dict[str, str]], where: str) -> tuple[list[int], list[int]]:
    full = _render(tokenizer, messages, add_generation_prompt=False)
    spans = _assistant_spans(tokenizer, messages, full, where)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    for t, (s, e) in enumerate(enc["offset_mapping"]):
        # A token is the assistant's when it starts inside an assistant span; offsets of zero width
        # (which some tokenizers give to added tokens) are judged by their end instead.
        pos = s if e > s else e - 1
        if any(a <= pos < b for a, b in spans):
            labels[t] = ids[t]
    return ids, labels


def _text_example(tokenizer: Any, text: str) -> tuple[list[int], list[int]]:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids, list(ids)


def tokenize_records(
    records: list[dict[str, Any]], tokenizer: Any, max_seq_len: int
) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Tokenize records; returns the examples and counts of what happened to them.

    Over-long sequences keep their head (where chat prompts and the first answer live) and are counted
    as ``truncated``; an example left with no labelled token would contribute nothing but padding to a
    batch, so it is dropped and counted in ``dropped_no_labels`` rather than silently lost.
    """
    if max_seq_len <= 1:
        raise ValueError(f"max_seq_len must be > 1, got {max_seq_len}")
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("tokenize_records needs a fast (Rust) tokenizer: it maps characters to tokens by offsets")
    examples: list[dict[str, list[int]]] = []
    stats = {"examples": 0, "truncated": 0, "tokens": 0, "label_tokens": 0, "dropped_no_labels": 0}
    for index, record in enumerate(records):
        kind = record.get("kind")
        if kind == "chat":
            ids, labels = _chat_example(tokenizer, _parse_messages(record, index), _where(record, index))
        elif kind == "text":
            text = record.get("text")
            if not isinstance(text, str):
                got = type(text).__name__
                raise RecordError(f"{_where(record, index)}: field 'text': expected a string, got {got}")
            ids, labels = _text_example(tokenizer, text)
        else:
            raise RecordError(f"{_where(record, index)}: field 'kind': expected 'chat' or 'text', got {kind!r}")
        if len(ids) > max_seq_len:
            stats["truncated"] += 1
            ids, labels = ids[:max_seq_len], labels[:max_seq_len]
        # The model predicts token t from tokens < t, so a label on position 0 is never trained on.
        n_labels = sum(1 for lab in labels[1:] if lab != IGNORE_INDEX)
        if n_labels == 0:
            stats["dropped_no_labels"] += 1
            continue
        examples.append({"input_ids": ids, "labels": labels})
        stats["examples"] += 1
        stats["tokens"] += len(ids)
        stats["label_tokens"] += n_labels
    return examples, stats
