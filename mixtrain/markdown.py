"""Markdown tables for asset metadata (Dagster renders them in the UI) and reports; one renderer, one cell format."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def fmt_cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("-" if value is None else str(value))


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    body = ["| " + " | ".join(fmt_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join([head, *body])
