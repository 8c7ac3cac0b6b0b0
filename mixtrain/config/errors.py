"""Validation errors a person can act on: the file, the dotted field, the YAML line, the bad value (masked where
it may be a secret) and, for a misspelt key or enum value, the closest valid spelling.

The person fixing a project is looking at the YAML in an editor, not at the model classes, so every message is
phrased in the file's terms. Line numbers come from PyYAML's composed node tree (each node keeps the mark where
it starts), from the same single parse that constructs the data.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

# A YAML path as strings (mapping keys as written, sequence indices as digits) -> 1-based line of its key/item.
LineMap = Mapping[tuple[str, ...], int]

# A field whose name says it may hold a credential has its value masked in every message; so has anything under
# an ``env`` mapping (a pod's environment carries tokens). Names like ``max_tokens`` or ``token_budget`` are counts,
# not credentials, which is why ``token`` must be the whole last word of the name.
_SECRET_NAME = re.compile(r"(^|_)(secret|password|passwd|api_?key|access_?key|credentials?|token|auth)$", re.I)
_URL_USERINFO = re.compile(r"(://)[^/@\s]+@")
MASK = "****"
_MAX_VALUE_CHARS = 80
_MAX_LISTED = 30


def load_with_lines(text: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """The document's data and where every key and list item starts (1-based), by its path from the root.

    One parse: the document is composed into nodes (which keep their start marks) and the data is constructed
    from those same nodes, with libyaml's loader when PyYAML has it (a project is loaded again by every asset
    and observation that reads it, so the pure-Python parser would be paid for many times). Raises
    ``yaml.YAMLError`` as ``safe_load`` would."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = (*path, str(key.value) if isinstance(key, yaml.ScalarNode) else "?")
                lines[here] = key.start_mark.line + 1
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                here = (*path, str(i))
                lines[here] = item.start_mark.line + 1
                walk(item, here)

    if root is not None:
        walk(root, ())
    return data, lines


def line_of(lines: LineMap, loc: Sequence[Any]) -> int | None:
    """The line of the deepest part of ``loc`` the file has: a missing field points at the mapping it is missing
    from, and pydantic's own loc parts (a union member's tag) are skipped by taking the longest known prefix."""
    path = tuple(str(p) for p in loc)
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` (difflib's ratio >= 0.6), else an empty string."""
    close = difflib.get_close_matches(str(word), sorted(set(choices)), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def is_secret_field(loc: Sequence[Any]) -> bool:
    names = [str(p) for p in loc]
    return "env" in names[:-1] or any(_SECRET_NAME.search(n) for n in names)


def show_value(value: Any, loc: Sequence[Any]) -> str:
    """The bad value as the message echoes it: masked for a secret-looking field, credentials stripped from a
    URL, long values cut."""
    if is_secret_field(loc):
        return MASK
    text = _URL_USERINFO.sub(rf"\g<1>{MASK}@", repr(value))
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X``, ``X | None``, ``Annotated[X, ...]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _element(annotation: Any) -> Any:
    """The value type of a list or dict annotation (the thing an index or a key leads to)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _element(arg)
    args = typing.get_args(annotation)
    if origin in (list, tuple, set, Sequence) and args:
        return args[0]
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    return annotation


def model_at(root: type[BaseModel], path: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``path`` (so its field names can be suggested)."""
    current: Any = root
    for part in path:
        model = _model_in(current)
        if model is not None and str(part) in model.model_fields:
            current = model.model_fields[str(part)].annotation
        else:
            current = _element(current)
    return _model_in(current)


def _describe(root: type[BaseModel], err: Mapping[str, Any]) -> str:
    loc, kind, msg = err["loc"], err["type"], err["msg"]
    if kind == "extra_forbidden":
        model = model_at(root, loc[:-1])
        names = sorted(model.model_fields) if model else []
        hint = suggest(str(loc[-1]), names)
        if not hint and names:
            listed = ", ".join(names[:_MAX_LISTED]) + (", ..." if len(names) > _MAX_LISTED else "")
            hint = f" (known keys here: {listed})"
        return f"unknown key{hint}"
    if kind in ("literal_error", "enum"):
        allowed = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        return f"{msg}{suggest(str(err.get('input')), allowed)}"
    return msg.removeprefix("Value error, ")  # a validator's own sentence needs no pydantic prefix


def format_validation_error(path: Path, err: ValidationError, model: type[BaseModel], lines: LineMap) -> str:
    """One line per problem: ``<file>: field '<a.b.c>': <what is wrong> (did you mean ...); got <value> (line N)``."""
    out = [f"{path}: invalid"]
    for e in err.errors():
        loc = e["loc"]
        is_key = bool(loc) and loc[-1] == "[key]"  # pydantic's marker for a mapping key (not its value) failing
        if is_key:
            loc = loc[:-1]
        where = ".".join(str(p) for p in loc) or "<root>"
        text = f"  {path.name}: field '{where}': {'bad key: ' if is_key else ''}{_describe(model, e)}"
        if e["type"] != "missing":  # for a missing field pydantic's input is the whole parent mapping
            text += f"; got {show_value(e.get('input'), loc)}"
        line = line_of(lines, loc)
        out.append(text + (f" (line {line})" if line else ""))
    return "\n".join(out)
