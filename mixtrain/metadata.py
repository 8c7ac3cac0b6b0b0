"""Metadata as the Dagster UI shows it well: few numbers, rounded, and Markdown for anything wider.

Every numeric entry becomes a plot over materializations and a row in the asset's sidebar, so a float with 16
digits or ninety entries per materialization make the page unreadable. The output helpers
(:func:`mixtrain.versioning.table_output`, ``json_output``) round every float here; stages that report many
numbers keep a few headline ones and put the rest in a table (:func:`metric_table`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mixtrain.markdown import markdown_table

SIGNIFICANT = 4  # enough to tell two runs apart, short enough not to overlap in the sidebar


def round_float(value: float, digits: int = SIGNIFICANT) -> float:
    """``value`` to ``digits`` significant digits (non-finite values unchanged: they are findings themselves)."""
    if not math.isfinite(value) or value == 0:
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def rounded(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` with every plain float rounded; ints, bools and metadata values left as they are."""
    return {k: round_float(v) if type(v) is float else v for k, v in metadata.items()}


def metric_table(values: Mapping[str, float], row_name: str = "model") -> str:
    """Slash-separated metric keys (``model/suite/metric``) as one table, easier to compare than as many
    sidebar entries: a row per first component (``row_name``), a column per rest of the key."""
    rows: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        head, _, rest = key.partition("/")
        rows.setdefault(head, {row_name: head})[rest or "value"] = round_float(value) if type(value) is float else value
    columns = [row_name, *sorted({c for r in rows.values() for c in r if c != row_name})]
    return markdown_table(list(rows.values()), columns)
