"""Verifiers for sequence-level KD: which teacher answers are good enough to become training data.

A sampled teacher answer that breaks the output contract would teach the student to break it too, so for
structured output the contract itself is the filter: the answer must be one JSON value and satisfy the task's
JSON Schema, the same schema the evaluation scores schema validity against. The verifier is built from the schema
(data in the run's config) rather than imported from the evaluation package, so the training engine stays free
of it and a job run in another process can rebuild the same verifier from its config alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema

from training_assets.engine.sequence_kd import Verifier


def load_schema(schema: Mapping[str, Any] | str) -> dict[str, Any]:
    """The schema given inline, or read from the JSON file ``schema`` names; checked against its metaschema, so
    a broken schema fails the run before any generation rather than rejecting every answer."""
    if isinstance(schema, str):
        try:
            loaded = json.loads(Path(schema).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"sequence.answer_schema {schema}: not a readable JSON file: {e}") from e
    else:
        loaded = dict(schema)
    try:
        jsonschema.validators.validator_for(loaded).check_schema(loaded)
    except jsonschema.exceptions.SchemaError as e:
        raise ValueError(f"sequence.answer_schema is not a valid JSON Schema: {e.message}") from e
    return loaded


def json_schema_verifier(schema: Mapping[str, Any]) -> Verifier:
    """A verifier keeping answers that are exactly one JSON value valid under ``schema``.

    Drop reasons are bucketed (``not_json``, ``schema:<keyword>`` such as ``schema:required``) so the counts in
    the run manifest say what kind of mistake the teacher makes, not one line per answer. Surrounding prose or a
    Markdown fence is a drop: the student would learn to emit it.
    """
    validator = jsonschema.validators.validator_for(schema)(schema)

    def json_schema(answer: str, _record: dict[str, Any]) -> str | None:
        try:
            value = json.loads(answer)
        except json.JSONDecodeError:
            return "not_json"
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        return None if error is None else f"schema:{error.validator}"

    return json_schema
