"""Which chat template renders a conversation, and our own ChatML convention for tool calls.

Training and evaluation must render tool-use conversations the same way, or the model is scored on a
format it never saw. So the choice of template is a pure function of the tokenizer and of whether the
conversation carries tools (:func:`select_template`), and every rendering goes through the exact text
that :class:`ChatTemplate` hashes; the run manifest records that hash and the eval can check it.

When the tokenizer's own template knows about tools (it shows a probe tool, a probe call and a probe
result, see :func:`supports_tools`) it is used, so a model that was trained with a tool format keeps
it. Many small models' templates (SmolLM2's among them) silently drop ``tools`` and ``tool_calls``;
for those we fall back to :data:`TOOL_CHAT_TEMPLATE`, a documented ChatML convention:

* the tool specs go into the system turn, one JSON object per line between ``<tools>`` and ``</tools>``
  (after the conversation's own system message, if it has one);
* an assistant's calls follow its content inside its turn, one per call, as
  ``<tool_call>{"name": <name>, "arguments": {<arguments>}}</tool_call>``, separated by newlines;
* tool results are turns of role ``tool``; every turn ends with ``<|im_end|>``.

Plain conversations (no tools) always use the tokenizer's own template, so their rendering is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

TOOL_TEMPLATE_NAME = "mixtrain-chatml-tools-v1"
NATIVE_TEMPLATE_NAME = "tokenizer"
TOOL_END_OF_TURN = "<|im_end|>"

# Every tag trims the whitespace around it, so the layout below is only for the reader: all emitted text
# comes from the quoted string expressions.
TOOL_CHAT_TEMPLATE = r"""
{%- set has_system = messages and messages[0]['role'] == 'system' -%}
{%- if tools -%}
    {{- '<|im_start|>system\n' -}}
    {%- if has_system -%}
        {{- messages[0]['content'] + '\n\n' -}}
    {%- endif -%}
    {{- 'You may call functions. Their JSON signatures are inside <tools></tools>:\n<tools>\n' -}}
    {%- for tool in tools -%}
        {{- (tool | tojson) + '\n' -}}
    {%- endfor -%}
    {{- '</tools>\nTo call a function, reply with ' -}}
    {{- '<tool_call>{"name": <function name>, "arguments": <arguments object>}</tool_call>.' -}}
    {{- ' Results come back in tool turns.<|im_end|>\n' -}}
{%- elif has_system -%}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if not (loop.first and has_system) -%}
        {{- '<|im_start|>' + message['role'] + '\n' -}}
        {%- if message['content'] -%}
            {{- message['content'] -}}
        {%- endif -%}
        {%- if message['role'] == 'assistant' and message['tool_calls'] is defined and message['tool_calls'] -%}
            {%- for call in message['tool_calls'] -%}
                {%- if message['content'] or not loop.first -%}
                    {{- '\n' -}}
                {%- endif -%}
                {{- '<tool_call>{"name": ' + (call['function']['name'] | tojson) + ', "arguments": ' -}}
                {{- (call['function']['arguments'] | tojson) + '}</tool_call>' -}}
            {%- endfor -%}
        {%- endif -%}
        {{- '<|im_end|>\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"""


class ToolCallParseError(ValueError):
    """Generated text holds a ``<tool_call>`` block that is not a well-formed call of our convention."""


@dataclass(frozen=True)
class ChatTemplate:
    """A chat template as used: its text (what gets rendered), its hash (what manifests record)."""

    name: str  # NATIVE_TEMPLATE_NAME or TOOL_TEMPLATE_NAME
    text: str
    end_of_turn: str | None  # the token a reply ends with; generation stops there
    handles_tools: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "end_of_turn": self.end_of_turn,
            "handles_tools": self.handles_tools,
        }


_PROBE_NAME = "mixtrain_probe_fn_q7"
_PROBE_ARG = "mixtrain-probe-arg-z3"
_PROBE_RESULT = "mixtrain-probe-result-k9"
_PROBE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": _PROBE_NAME,
            "description": "probe",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
]
_PROBE_MESSAGES = [
    {"role": "user", "content": "probe"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": _PROBE_NAME, "arguments": {"q": _PROBE_ARG}}}],
    },
    {"role": "tool", "content": _PROBE_RESULT, "name": _PROBE_NAME},
    {"role": "assistant", "content": "done"},
]


def _tokenizer_template_text(tokenizer: Any, tools: list[dict[str, Any]] | None) -> str | None:
    if not getattr(tokenizer, "chat_template", None):
        return None
    # Resolves a named-template dict (e.g. a separate "tool_use" template) the way apply_chat_template does.
    return tokenizer.get_chat_template(tools=tools)


def supports_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's template renders tools, tool calls and tool results (a probe conversation).

    Reading the template source for the word ``tools`` is not enough: a template may mention it and still
    drop calls or results, and one that cannot render a ``tool`` turn at all simply raises.
    """
    text = _tokenizer_template_text(tokenizer, _PROBE_TOOLS)
    if text is None:
        return False
    try:
        out = tokenizer.apply_chat_template(_PROBE_MESSAGES, tools=_PROBE_TOOLS, chat_template=text, tokenize=False)
    except Exception:  # any template error means "cannot render tool conversations"
        return False
    return isinstance(out, str) and all(s in out for s in ("probe", _PROBE_NAME, _PROBE_ARG, _PROBE_RESULT))


def select_template(tokenizer: Any, *, with_tools: bool) -> ChatTemplate:
    """The template a conversation is rendered with: the tokenizer's own, or ours for tools it cannot render."""
    if with_tools and not supports_tools(tokenizer):
        return ChatTemplate(TOOL_TEMPLATE_NAME, TOOL_CHAT_TEMPLATE, TOOL_END_OF_TURN, handles_tools=True)
    text = _tokenizer_template_text(tokenizer, _PROBE_TOOLS if with_tools else None)
    if text is None:
        raise ValueError("the tokenizer has no chat template; chat records cannot be rendered")
    return ChatTemplate(NATIVE_TEMPLATE_NAME, text, tokenizer.eos_token, handles_tools=with_tools)


def render(
    tokenizer: Any,
    template: ChatTemplate,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    *,
    add_generation_prompt: bool = False,
) -> str:
    """Render ``messages`` (and ``tools``) with exactly ``template.text``."""
    if not messages and not add_generation_prompt:
        return ""
    return tokenizer.apply_chat_template(
        messages,
        tools=tools or None,
        chat_template=template.text,
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
    )


def render_prompt(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> tuple[str, ChatTemplate]:
    """A generation prompt (conversation so far + the assistant header), rendered as training rendered it.

    For the eval: pass the conversation without the reply to be generated. Returns the prompt and the
    template used; compare ``template.sha256`` with the run manifest's to confirm training used the same.
    Tool-call ``arguments`` may be dicts or JSON strings, as in training records.
    """
    template = select_template(tokenizer, with_tools=bool(tools))
    normalised = [_normalise_calls(m) for m in messages]
    return render(tokenizer, template, normalised, tools, add_generation_prompt=True), template


def _normalise_calls(message: dict[str, Any]) -> dict[str, Any]:
    calls = message.get("tool_calls")
    if not calls:
        return message
    out = []
    for call in calls:
        fn = dict(call.get("function", call))
        if isinstance(fn.get("arguments"), str):
            fn["arguments"] = json.loads(fn["arguments"])
        out.append({"type": "function", "function": fn})
    return {**message, "content": message.get("content") or "", "tool_calls": out}


_CALL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def _loads(text: str, what: str, shown: str = "") -> Any:
    """``json.loads``; a decode error is raised as ``ToolCallParseError("<what> not valid JSON (<error>)<shown>")``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ToolCallParseError(f"{what} not valid JSON ({e}){shown}") from e


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """The calls in an assistant reply written in our convention: ``[{"name": str, "arguments": dict}]``.

    Text outside the blocks is ignored (a reply may say something before calling). A block that is not a
    JSON object with a non-empty string ``name`` and an object ``arguments`` (a JSON string holding an
    object is accepted too), or an unclosed ``<tool_call>``, raises :class:`ToolCallParseError`: a broken
    call is an answer the eval must count as wrong, not skip.
    """
    calls: list[dict[str, Any]] = []
    for i, match in enumerate(_CALL_BLOCK.finditer(text)):
        body = match.group(1).strip()
        obj = _loads(body, f"tool call {i}:", f": {body[:120]!r}")
        if not isinstance(obj, dict):
            raise ToolCallParseError(f"tool call {i}: expected a JSON object, got {type(obj).__name__}")
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            raise ToolCallParseError(f"tool call {i}: 'name' must be a non-empty string, got {name!r}")
        args = obj.get("arguments", {})
        if isinstance(args, str):
            args = _loads(args, f"tool call {i}: 'arguments' string is")
        if not isinstance(args, dict):
            raise ToolCallParseError(f"tool call {i}: 'arguments' must be a JSON object, got {type(args).__name__}")
        calls.append({"name": name, "arguments": args})
    if "<tool_call>" in _CALL_BLOCK.sub("", text):
        raise ToolCallParseError("unclosed <tool_call> (no matching </tool_call>)")
    return calls
