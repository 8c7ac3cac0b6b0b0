"""Registry validation: what is wrong with an eval item, found before any model runs on it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from eval_assets.engine import metrics, tool_calls
from eval_assets.engine.suites.calibration import calibration_options
from eval_assets.engine.suites.rows import conversation, item_metadata, json_or_text
from eval_assets.tasks import json_signature


def _check_tools(where: str, tools: Any) -> tuple[list[str], set[str]]:
    if not isinstance(tools, list) or not tools:
        return [f"{where}: metadata.tools must be a non-empty list of function definitions"], set()
    problems, names = [], set()
    for k, tool in enumerate(tools):
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            problems.append(f"{where}: metadata.tools[{k}] is not a function definition with a string 'name'")
            continue
        names.add(fn["name"])
        msg = metrics.check_item_schema(where, fn.get("parameters", {"type": "object"}))
        if msg is not None:
            problems.append(f"{where}: metadata.tools[{k}] ('{fn['name']}') parameters: {msg}")
    return problems, names


def validate_item(row: Mapping[str, Any]) -> list[str]:
    """What is wrong with one registry row, each message naming the set and the item (empty when it is usable).

    Checks what a suite would otherwise trip over at run time: chat prompts that are not messages, metadata that
    is not an object, a ``metadata.schema`` that is not a valid JSON Schema (or that the reference itself fails),
    a json_signature reference that breaks the task's answer schema, tool definitions and BFCL-style references
    (``metadata.tools``; every referenced function must be declared), and calibration options.
    """
    where = f"eval set '{row.get('eval_set')}', item '{row.get('item_id')}'"
    problems: list[str] = []
    prompt = row.get("prompt") or ""
    if prompt.lstrip().startswith("["):
        try:
            conversation(prompt)
        except ValueError as e:
            problems.append(f"{where}: prompt: {e}")
    try:
        meta = item_metadata(row.get("metadata"))
    except (json.JSONDecodeError, ValueError) as e:
        return [*problems, f"{where}: metadata: {e}"]
    reference = json_or_text(row.get("reference") or "")
    schema = meta.get("schema")
    if "schema" in meta:
        msg = metrics.check_item_schema(str(row.get("item_id")), schema)
        if msg is not None:
            problems.append(f"eval set '{row.get('eval_set')}': {msg}")
            schema = None
    elif meta.get("task") == json_signature.TASK_ID:
        schema = json_signature.ANSWER_SCHEMA
    if schema is not None:
        import jsonschema

        validator = jsonschema.validators.validator_for(schema)(schema)
        first = jsonschema.exceptions.best_match(validator.iter_errors(reference))
        if first is not None:
            path = "/".join(str(p) for p in first.path) or "<root>"
            problems.append(f"{where}: the reference fails the item's own schema at {path}: {first.message}")
    if "tools" in meta or meta.get("task") == "tool_calls":
        tool_problems, names = _check_tools(where, meta.get("tools"))
        problems.extend(tool_problems)
        msg = tool_calls.check_tool_reference(str(row.get("item_id")), reference)
        if msg is not None:
            problems.append(f"eval set '{row.get('eval_set')}': {msg}")
        elif names:
            undeclared = sorted({c["name"] for c in reference["calls"]} - names)
            if undeclared:
                problems.append(f"{where}: reference calls {undeclared}, which metadata.tools does not declare")
    if "options" in meta or "answer_index" in meta:
        try:
            calibration_options(meta)
        except ValueError as e:
            problems.append(f"{where}: {e}")
    return problems


def validate_items(table: pa.Table) -> list[str]:
    """Every problem of every row of a registry table (EVAL_ITEM_SCHEMA); the registry fails when non-empty."""
    return [msg for row in table.to_pylist() for msg in validate_item(row)]


def checked_registry(tables: Sequence[pa.Table]) -> pa.Table:
    """The eval sets' tables as one registry; a broken item would score every model wrong, so any invalid item
    refuses the whole registry, with a message naming each (the first 20)."""
    table = pa.concat_tables(tables)
    problems = validate_items(table)
    if problems:
        shown = "\n  ".join(problems[:20])
        raise ValueError(f"eval registry: {len(problems)} invalid item(s):\n  {shown}")
    return table
