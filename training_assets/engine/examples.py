"""Document records -> supervised training examples (token ids plus loss labels).

Chat documents train only on what the assistant said: the model should learn to answer (and to call
tools), not to imitate users, the system prompt or tool results. Which tokens belong to the assistant is
worked out from the chat template itself, by rendering the conversation up to each assistant turn and
mapping the new characters to tokens through the offset mapping. That works for any prefix-stable
template (ChatML, SmolLM's, Llama's, our tool template) without ``{% generation %}`` markers, which few
templates carry.

A chat record's ``messages`` field holds JSON in one of two shapes:

* a list of messages ``[{"role": ..., "content": ...}, ...]`` (a plain conversation, or one whose tools
  are not declared; assistant ``tool_calls`` then fail validation);
* an object ``{"tools": [...], "messages": [...]}`` for tool use: ``tools`` are OpenAI-style function
  specs ``{"type": "function", "function": {"name", "description", "parameters"}}``, assistant messages
  may carry ``tool_calls`` (``[{"type": "function", "function": {"name", "arguments"}}]``, arguments a dict
  or a JSON string holding one) and messages of role ``tool`` carry the results.

Tool conversations are rendered with the template :func:`tool_template.select_template` picks (the
tokenizer's own if it handles tools, else our documented ChatML convention); plain conversations always use
the tokenizer's own, as before tools existed. Which templates were used is part of the result, so the run
manifest can record their hashes and the eval can render prompts the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from training_assets.engine.tool_template import ChatTemplate, render, select_template

IGNORE_INDEX = -100
LEGACY_STAT_KEYS = ("examples", "truncated", "tokens", "label_tokens", "dropped_no_labels")


class RecordError(ValueError):
    """A record cannot be turned into an example; the message names the record and field."""


@dataclass
class Conversation:
    """A validated chat record: messages in the shape chat templates expect, and the declared tools."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None

    @property
    def uses_tools(self) -> bool:
        return bool(self.tools) or any(m.get("tool_calls") or m["role"] == "tool" for m in self.messages)

    @property
    def has_assistant(self) -> bool:
        return any(m["role"] == "assistant" for m in self.messages)


@dataclass
class PreparedExamples:
    """Examples plus what happened to every record and which chat templates rendered them.

    Each example is ``{"input_ids", "labels", "record"}`` where ``record`` is the index of the record it came
    from (to look up its phase, say). ``templates`` maps ``"chat"`` (plain conversations) and ``"tools"``
    (tool conversations) to the template used, for the kinds that occurred.
    """

    examples: list[dict[str, Any]]
    stats: dict[str, int]
    templates: dict[str, ChatTemplate] = field(default_factory=dict)

    def templates_manifest(self) -> dict[str, dict[str, Any]]:
        return {kind: t.manifest() for kind, t in sorted(self.templates.items())}


def _where(record: dict[str, Any], index: int) -> str:
    parts = [f"record {index}"]
    for key in ("doc_id", "locator"):
        if record.get(key):
            parts.append(f"{key}={record[key]}")
    return " ".join(parts)


def _fail(where: str, path: str, problem: str) -> RecordError:
    return RecordError(f"{where}: field '{path}': {problem}")


def _check_tools(tools: Any, where: str) -> dict[str, dict[str, Any] | None]:
    """Validate the tool specs; returns each function's parameter schema by name."""
    from jsonschema import SchemaError, validators

    if not isinstance(tools, list):
        raise _fail(where, "tools", f"expected a list of function specs, got {type(tools).__name__}")
    declared: dict[str, dict[str, Any] | None] = {}
    for k, tool in enumerate(tools):
        path = f"tools[{k}]"
        if not (isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("function"), dict)):
            raise _fail(where, path, "expected {'type': 'function', 'function': {'name': ..., 'parameters': ...}}")
        fn = tool["function"]
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(where, f"{path}.function.name", f"expected a non-empty string, got {name!r}")
        if name in declared:
            raise _fail(where, f"{path}.function.name", f"function {name!r} is declared twice")
        if not isinstance(fn.get("description", ""), str):
            raise _fail(where, f"{path}.function.description", "expected a string")
        params = fn.get("parameters")
        if params is not None:
            if not isinstance(params, dict):
                raise _fail(where, f"{path}.function.parameters", "expected a JSON-schema object")
            try:
                validators.validator_for(params).check_schema(params)
            except SchemaError as e:
                raise _fail(where, f"{path}.function.parameters", f"not a valid JSON schema ({e.message})") from e
        declared[name] = params
    return declared


def _check_calls(
    calls: Any, declared: dict[str, dict[str, Any] | None] | None, where: str, path: str
) -> list[dict[str, Any]]:
    """Validate an assistant's tool calls against the declared tools; returns them with dict arguments."""
    from jsonschema import validators

    if not isinstance(calls, list) or not calls:
        raise _fail(where, path, "expected a non-empty list of calls")
    if declared is None:
        raise _fail(where, path, "tool calls need the functions declared: use {'tools': [...], 'messages': [...]}")
    out = []
    for c, call in enumerate(calls):
        cpath = f"{path}[{c}]"
        if not (isinstance(call, dict) and isinstance(call.get("function"), dict)):
            raise _fail(where, cpath, "expected {'type': 'function', 'function': {'name': ..., 'arguments': ...}}")
        if call.get("type", "function") != "function":
            raise _fail(where, f"{cpath}.type", f"expected 'function', got {call['type']!r}")
        name, args = call["function"].get("name"), call["function"].get("arguments", {})
        if not isinstance(name, str) or name not in declared:
            raise _fail(
                where, f"{cpath}.function.name", f"{name!r} is not one of the declared tools {sorted(declared)}"
            )
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError as e:
                raise _fail(where, f"{cpath}.function.arguments", f"not valid JSON ({e})") from e
        if not isinstance(args, dict):
            raise _fail(where, f"{cpath}.function.arguments", f"expected a JSON object, got {type(args).__name__}")
        schema = declared[name]
        if schema is not None:
            error = next(iter(validators.validator_for(schema)(schema).iter_errors(args)), None)
            if error is not None:
                at = "/".join(str(p) for p in error.absolute_path) or "(root)"
                raise _fail(
                    where, f"{cpath}.function.arguments", f"does not match {name}'s parameters at {at}: {error.message}"
                )
        normalised: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": args}}
        if isinstance(call.get("id"), str):
            normalised["id"] = call["id"]
        out.append(normalised)
    return out


def parse_conversation(record: dict[str, Any], index: int) -> Conversation:
    """Decode and validate a chat record's ``messages`` (either shape, see the module docstring)."""
    where = _where(record, index)
    raw = record.get("messages")
    if not raw:
        raise _fail(where, "messages", "required for kind 'chat'")
    try:
        obj = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as e:
        raise _fail(where, "messages", f"not valid JSON ({e})") from e
    tools, declared = None, None
    if isinstance(obj, dict):
        unknown = sorted(set(obj) - {"tools", "messages"})
        if unknown:
            raise _fail(where, "messages", f"unknown keys {unknown}; expected {{'tools': [...], 'messages': [...]}}")
        if obj.get("tools") is not None:
            tools = obj["tools"]
            declared = _check_tools(tools, where)
        obj = obj.get("messages")
    if not isinstance(obj, list) or not obj:
        raise _fail(where, "messages", "expected a non-empty JSON list (or {'tools': [...], 'messages': [...]})")
    messages: list[dict[str, Any]] = []
    calls_open = False  # a tool result must answer an assistant turn that made calls
    for j, m in enumerate(obj):
        path = f"messages[{j}]"
        calls = m.get("tool_calls") if isinstance(m, dict) else None
        content = m.get("content") if isinstance(m, dict) else None
        allow_no_content = calls is not None and m.get("role") == "assistant"
        if not (
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and (isinstance(content, str) or (allow_no_content and content is None))
        ):
            raise _fail(where, path, "expected {'role': str, 'content': str}")
        role = m["role"]
        out: dict[str, Any] = {"role": role, "content": content or ""}
        if calls is not None:
            if role != "assistant":
                raise _fail(where, f"{path}.tool_calls", f"only assistant messages may call tools, not {role!r}")
            out["tool_calls"] = _check_calls(calls, declared, where, f"{path}.tool_calls")
        if role == "tool":
            if not calls_open:
                raise _fail(where, path, "a tool result must follow an assistant message with tool_calls")
            for key in ("name", "tool_call_id"):
                if m.get(key) is not None:
                    if not isinstance(m[key], str):
                        raise _fail(where, f"{path}.{key}", "expected a string")
                    out[key] = m[key]
        else:
            calls_open = calls is not None
        messages.append(out)
    return Conversation(messages, tools)


def _assistant_spans(
    tokenizer: Any, template: ChatTemplate, conv: Conversation, full: str, where: str
) -> list[tuple[int, int]]:
    """Character spans of ``full`` the model must learn: each assistant reply plus its end-of-turn token.

    Whatever the template appends after the end-of-turn token (usually a newline) is left out, because at
    inference time generation stops at that token and never produces it.
    """
    eot = template.end_of_turn
    spans = []
    for i, m in enumerate(conv.messages):
        if m["role"] != "assistant":
            continue
        prompt = render(tokenizer, template, conv.messages[:i], conv.tools, add_generation_prompt=True)
        upto = render(tokenizer, template, conv.messages[: i + 1], conv.tools)
        if not (full.startswith(upto) and upto.startswith(prompt)):
            raise RecordError(
                f"{where}: field 'messages': the chat template is not prefix-stable (rendering a shorter "
                "conversation does not give a prefix of the full one), so assistant tokens cannot be located"
            )
        start, end = len(prompt), len(upto)
        if eot:
            cut = full.rfind(eot, start, end)
            if cut >= 0:
                end = cut + len(eot)
        spans.append((start, end))
    return spans


def _chat_example(
    tokenizer: Any, template: ChatTemplate, conv: Conversation, where: str
) -> tuple[list[int], list[int]]:
    full = render(tokenizer, template, conv.messages, conv.tools)
    spans = _assistant_spans(tokenizer, template, conv, full, where)
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


def prepare_examples(
    records: Sequence[dict[str, Any]], tokenizer: Any, max_seq_len: int, *, indices: Sequence[int] | None = None
) -> PreparedExamples:
    """Tokenize records; returns the examples, counts of what happened to them and the templates used.

    ``indices`` are the records' numbers in the whole mixture when ``records`` is a part of it (a batch read
    from the table, a rank's share): examples and error messages then name the mixture's record numbers.

    Over-long sequences keep their head (where chat prompts and the first answer live) and are counted
    as ``truncated``. A conversation without an assistant turn has nothing to learn and is counted in
    ``dropped_no_assistant``; an example left with no labelled token after truncation would contribute
    nothing but padding, so it is counted in ``dropped_no_labels``. ``tool_records`` / ``tool_calls`` count
    tool conversations and the calls in them. Malformed records raise :class:`RecordError`.
    """
    if max_seq_len <= 1:
        raise ValueError(f"max_seq_len must be > 1, got {max_seq_len}")
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("tokenize_records needs a fast (Rust) tokenizer: it maps characters to tokens by offsets")
    examples: list[dict[str, Any]] = []
    stats = dict.fromkeys(
        (*LEGACY_STAT_KEYS, "dropped_no_assistant", "tool_records", "tool_calls"),
        0,
    )
    templates: dict[str, ChatTemplate] = {}
    if indices is not None and len(indices) != len(records):
        raise ValueError(f"{len(indices)} indices for {len(records)} records")
    for index, record in zip(range(len(records)) if indices is None else indices, records, strict=True):
        kind = record.get("kind")
        if kind == "chat":
            conv = parse_conversation(record, index)
            if not conv.has_assistant:
                stats["dropped_no_assistant"] += 1
                continue
            key = "tools" if conv.uses_tools else "chat"
            if key not in templates:
                templates[key] = select_template(tokenizer, with_tools=conv.uses_tools)
            if conv.uses_tools:
                stats["tool_records"] += 1
                stats["tool_calls"] += sum(len(m.get("tool_calls", ())) for m in conv.messages)
            ids, labels = _chat_example(tokenizer, templates[key], conv, _where(record, index))
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
        examples.append({"input_ids": ids, "labels": labels, "record": index})
        stats["examples"] += 1
        stats["tokens"] += len(ids)
        stats["label_tokens"] += n_labels
    return PreparedExamples(examples, stats, templates)


def tokenize_records(
    records: list[dict[str, Any]], tokenizer: Any, max_seq_len: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """:func:`prepare_examples` with its original result shape (examples, five counts).

    Conversations without an assistant turn are folded into ``dropped_no_labels``, as they always were
    counted; use :func:`prepare_examples` for the finer counts and the templates used.
    """
    prepared = prepare_examples(records, tokenizer, max_seq_len)
    stats = {key: prepared.stats[key] for key in LEGACY_STAT_KEYS}
    stats["dropped_no_labels"] += prepared.stats["dropped_no_assistant"]
    return prepared.examples, stats
