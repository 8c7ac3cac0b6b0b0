"""The demo's task: describe a Python function's signature as a JSON object.

The ground truth comes from ``ast``, so every answer is checkable without a judge model, and the inputs are real
third-party code (CPython's standard library) that ships with every Python install. The fields were picked so that
none is constant over the stdlib: parameter lists vary, and defaults, ``*args``/``**kwargs``, a returned value and a
``raise`` are each present in some functions and absent in others.

Conventions, stated once because the prompt, the reference and the scorer must agree:

- ``params`` lists every *named* parameter in the order written: positional-only, then ordinary, then keyword-only.
  ``self`` and ``cls`` are included (the model sees the ``def`` line as written, so the literal reading is the
  checkable one). The names bound by ``*args`` and ``**kwargs`` are not in ``params``; they are the two booleans.
- ``defaults`` counts the named parameters that have a default value (positional and keyword-only alike).
- ``returns_value`` is true when the function's own body (not a nested def, lambda or class) has ``return <expr>``;
  a bare ``return`` does not count, ``return None`` does.
- ``raises`` is true when the function's own body has a ``raise`` statement.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sysconfig
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

TASK_ID = "json_signature"

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "params": {"type": "array", "items": {"type": "string"}},
        "defaults": {"type": "integer", "minimum": 0},
        "varargs": {"type": "boolean"},
        "kwargs": {"type": "boolean"},
        "returns_value": {"type": "boolean"},
        "raises": {"type": "boolean"},
    },
    "required": ["name", "params", "defaults", "varargs", "kwargs", "returns_value", "raises"],
    "additionalProperties": False,
}
FIELDS: tuple[str, ...] = tuple(ANSWER_SCHEMA["required"])
_VALIDATOR = jsonschema.Draft202012Validator(ANSWER_SCHEMA)

SYSTEM_PROMPT = "You analyse Python code. Reply with one JSON object and nothing else."

# Field meanings are spelled out in the user turn: the schema alone cannot say that self counts or what
# "defaults" counts, and a model that guesses those conventions would be scored on our choices, not its reading.
_USER_TEMPLATE = """Describe this Python function's signature as JSON matching the JSON Schema {schema}
params: parameter names in order, with self/cls, without *args/**kwargs. defaults: how many params have defaults. \
varargs, kwargs: has *args, **kwargs. returns_value: has `return <value>`. raises: has `raise`.

```python
{code}
```"""


@dataclass(frozen=True)
class FunctionItem:
    """One function taken from a stdlib module, with the dedented source the model is shown."""

    module: str
    qualname: str  # "func" or "Class.method"
    source: str
    lineno: int  # 1-based, in the module file
    end_lineno: int

    @property
    def item_id(self) -> str:
        return f"{self.module}.{self.qualname}"


class SourceNotFound(FileNotFoundError):
    """A module name does not resolve to a source file in the stdlib directory."""


def stdlib_dir() -> str:
    return sysconfig.get_paths()["stdlib"]


def module_path(module: str, root: str | None = None) -> str:
    """The source file of a stdlib module, found on disk so that nothing is imported (no import side effects)."""
    base = os.path.join(root or stdlib_dir(), *module.split("."))
    for candidate in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    raise SourceNotFound(f"module '{module}': no {base}.py or {base}/__init__.py")


def read_module_source(module: str, root: str | None = None) -> str:
    with open(module_path(module, root), encoding="utf-8") as f:
        return f.read()


def _candidate_defs(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef]]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef):
                    yield f"{node.name}.{sub.name}", sub


def extract_functions(
    module_names: Sequence[str],
    *,
    max_lines: int,
    min_lines: int = 2,
    max_params: int | None = None,
    max_chars: int | None = None,
    root: str | None = None,
) -> list[FunctionItem]:
    """Top-level functions and methods of top-level classes, in module order then file order.

    Decorated functions are skipped because a decorator can change the signature the model would have to report
    (``property``, ``staticmethod``, ``functools.wraps``); long ones (``max_lines``, ``max_chars`` of dedented
    source) and ones with many parameters are skipped so prompt plus answer fit the training sequence length.
    A qualified name defined twice in one module keeps its first definition, so item ids stay unique.
    """
    items: list[FunctionItem] = []
    for module in module_names:
        text = read_module_source(module, root)
        lines = text.splitlines()
        seen: set[str] = set()
        for qualname, node in _candidate_defs(ast.parse(text, filename=module_path(module, root))):
            if qualname in seen:
                continue
            seen.add(qualname)
            if node.decorator_list:
                continue
            end = node.end_lineno or node.lineno
            n_lines = end - node.lineno + 1
            if not min_lines <= n_lines <= max_lines:
                continue
            source = textwrap.dedent("\n".join(lines[node.lineno - 1 : end]))
            if max_chars is not None and len(source) > max_chars:
                continue
            item = FunctionItem(module, qualname, source, node.lineno, end)
            if max_params is not None and len(reference(item)["params"]) > max_params:
                continue
            items.append(item)
    return items


def _own_nodes(fn: ast.FunctionDef) -> Iterator[ast.AST]:
    """Nodes of the function's own body, not descending into nested scopes (their returns are not ours)."""
    stack: list[ast.AST] = list(fn.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _parse_function(source: str) -> ast.FunctionDef:
    tree = ast.parse(textwrap.dedent(source))
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if len(defs) != 1:
        raise ValueError(f"expected exactly one top-level def in the source, found {len(defs)}")
    return defs[0]  # type: ignore[return-value]


def reference(func: FunctionItem | str) -> dict[str, Any]:
    """The ground-truth answer for a function (a FunctionItem or the source of one ``def``)."""
    fn = _parse_function(func.source if isinstance(func, FunctionItem) else func)
    a = fn.args
    named = [*a.posonlyargs, *a.args, *a.kwonlyargs]
    own = list(_own_nodes(fn))
    return {
        "name": fn.name,
        "params": [p.arg for p in named],
        "defaults": len(a.defaults) + sum(d is not None for d in a.kw_defaults),
        "varargs": a.vararg is not None,
        "kwargs": a.kwarg is not None,
        "returns_value": any(isinstance(n, ast.Return) and n.value is not None for n in own),
        "raises": any(isinstance(n, ast.Raise) for n in own),
    }


def format_answer(ref: dict[str, Any]) -> str:
    """The assistant turn used for training and for the held-out loss: one line, fields in schema order."""
    return json.dumps({k: ref[k] for k in FIELDS})


def prompt_messages(code: str) -> list[dict[str, str]]:
    schema = json.dumps(ANSWER_SCHEMA, separators=(",", ":"))
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": _USER_TEMPLATE.format(schema=schema, code=code.rstrip())},
    ]


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in free text; tolerates prose around it and Markdown code fences."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            return obj
        start = text.find("{", start + 1)
    return None


def _field_equal(predicted: Any, expected: Any) -> bool:
    # bool is an int subclass in Python: True must not score as defaults == 1, nor 1 as varargs == True.
    if isinstance(predicted, bool) != isinstance(expected, bool):
        return False
    return predicted == expected


def score(prediction: str, reference: dict[str, Any]) -> dict[str, Any]:
    obj = extract_json_object(prediction)
    if obj is None:
        return {"json_valid": False, "schema_valid": False, "field_accuracy": 0.0, "exact_match": False}
    hits = [k in obj and _field_equal(obj[k], reference[k]) for k in FIELDS]
    return {
        "json_valid": True,
        "schema_valid": _VALIDATOR.is_valid(obj),
        "field_accuracy": sum(hits) / len(FIELDS),
        "exact_match": all(hits),
    }


def _holdout_draw(qualified_name: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{qualified_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split(
    items: Sequence[FunctionItem], holdout_share: float, seed: int
) -> tuple[list[FunctionItem], list[FunctionItem]]:
    """(train, holdout), decided per item by a hash of its qualified name.

    Hashing instead of shuffling keeps an item on the same side when other modules are added or removed, so a
    held-out function never leaks into training because the corpus changed around it.
    """
    if not 0.0 <= holdout_share <= 1.0:
        raise ValueError(f"holdout_share must be in [0, 1], got {holdout_share}")
    train: list[FunctionItem] = []
    holdout: list[FunctionItem] = []
    for item in items:
        (holdout if _holdout_draw(item.item_id, seed) < holdout_share else train).append(item)
    return train, holdout
