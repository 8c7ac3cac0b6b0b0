"""Test data shared by several test modules: document tables and a small news-page corpus."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from mixtrain.schema import DOCUMENT_SCHEMA

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

# Bodies of news pages: distinct sentences, so only a page's shared header/footer lines repeat across documents.
NEWS_BODIES = [
    "The harbour reopened on Monday after the storm damaged two of the old piers.",
    "Local bakers report record sales of rye bread during the autumn festival week.",
    "A new bicycle lane connects the railway station with the university campus.",
    "The museum will show paintings from the northern coast until the end of March.",
    "Farmers expect a good apple harvest thanks to the warm and rainy summer months.",
    "The city council voted to extend the opening hours of the public library.",
    "Volunteers planted three hundred oak trees along the river in a single weekend.",
    "The night ferry to the islands will run twice a week again from next spring.",
]


def documents(rows: list[dict[str, Any]], **defaults: Any) -> pa.Table:
    """A ``DOCUMENT_SCHEMA`` table of ``rows``; a field a row lacks comes from ``defaults``, else it is a plain
    English text document captured at ``T0`` (columns not given at all are null)."""
    base = {
        "kind": "text",
        "messages": None,
        "license": None,
        "rights_tags": [],
        "domain": "general",
        "language": "en",
        "capture_time": T0,
    }
    return pa.Table.from_pylist([{**base, **defaults, **r} for r in rows], schema=DOCUMENT_SCHEMA)


def write_signature_set(path: Any, sources: list[tuple[str, str]]) -> str:
    """A json_signature eval set file: one item per ``(module, source code)``; returns the path as a string."""
    import json
    from pathlib import Path

    from eval_assets.tasks import json_signature as js

    rows = [
        {
            "id": f"{module}.item{i}",
            "messages": [{"role": "system", "content": js.SYSTEM_PROMPT}, {"role": "user", "content": src}],
            "reference": js.reference(src),
            "screen": {"code": src},
            "metadata": {"module": module, "task": "json_signature"},
        }
        for i, (module, src) in enumerate(sources)
    ]
    Path(path).write_text("\n".join(json.dumps(r) for r in rows))
    return str(path)
