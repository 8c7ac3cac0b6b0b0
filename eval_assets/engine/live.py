"""What the release gate compares its candidate with, and when the live model's stored results can stand in for
evaluating it again.

A candidate that beats the base proves little once a model is live: users already have that model, so "better
than base" can be a regression. The gate's baseline is therefore the live release when there is one, and the base
only before the first release. The live model's item rows are stored with its release (``released_model``), keyed
by a fingerprint of what decides a number (the items as run and the settings): when the fingerprint is the same,
the rows are reused instead of evaluating the model again; when anything differs, it is evaluated afresh.

Dagster-free: the asset layer reads the release record and the stored table and passes plain data in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from eval_assets.engine.candidates import BASELINE
from eval_assets.engine.comparison import limit_items
from eval_assets.engine.suites import EvalSettings
from eval_assets.engine.task_plugins import task_fingerprints
from mixtrain.identity import canonical_json

LIVE = "live"  # the live release's label in a report and a comparison (stable, so metadata keys stay the same)
# Settings that change no item's row: they decide intervals or a time limit only.
_NOT_IN_ROWS = ("n_resamples", "confidence", "seed", "generation_timeout_s")
# What the stored snapshot keeps of a model's record (enough to check its tokenizer against the others').
RECORD_KEYS = ("vocab_sha256", "vocab_size", "chat_template_sha256", "generation_budget")


@dataclass(frozen=True)
class GateBaseline:
    """The model the release gate compares its candidate with: its label in the comparison, what it is and why."""

    label: str
    model: str
    why: str


def gate_baseline(release: Mapping[str, Any] | None) -> GateBaseline:
    """The live release when there is one, else the base."""
    if release is None:
        return GateBaseline(BASELINE, BASELINE, "no model is released yet: the candidate must not regress from base")
    cur = release["current"]
    name = f"{cur['model']}@{cur['version']}"
    return GateBaseline(LIVE, name, f"{name} is live: the candidate must not regress from what users have now")


def _items_digest(table: pa.Table) -> str:
    """A hash of the items as a suite reads them (every column, row order kept: it decides batching)."""
    h = hashlib.sha256()
    for row in table.to_pylist():
        h.update(canonical_json(row).encode())
    return h.hexdigest()


def run_fingerprint(suites: Mapping[str, pa.Table], settings: EvalSettings) -> str:
    """What stored rows must have been computed on to stand in for a fresh evaluation: every suite's items after
    the item limit, every setting that decides a row (budget rule, batch size, dtype, buckets, windows) and the
    version and code of the plugin tasks run."""
    items = {name: _items_digest(limit_items(table, settings.limit)) for name, table in sorted(suites.items())}
    decided = {k: v for k, v in asdict(settings).items() if k not in _NOT_IN_ROWS}
    if not decided["tasks"]:  # without plugin tasks, rows stored before they existed keep their fingerprint
        del decided["tasks"]
    payload: dict[str, Any] = {"items": items, "settings": decided}
    plugins = task_fingerprints(list(suites), settings.tasks)
    if plugins:  # a changed task (its version or its module's code) scores differently
        payload["tasks"] = plugins
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def model_rows(items: pa.Table, label: str) -> pa.Table:
    """One model's rows of a report (what a release stores of its model)."""
    return items.filter(pc.equal(items["model"], label))


def snapshot_record(record: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The part of a run's record a release keeps with its model's rows."""
    mine = record.get("models", {}).get(label) or {}
    return {k: mine[k] for k in RECORD_KEYS if k in mine}


def reusable(stored: Mapping[str, Any] | None, fingerprint: str) -> str | None:
    """None when a release's stored evaluation was made on the same items and settings, else why not."""
    if not stored:
        return "the release stored no evaluation (released before results were kept)"
    if stored.get("fingerprint") != fingerprint:
        return "the eval items or settings changed since it was released"
    return None


# The base's rows (``base_eval``) carry its model record and the fingerprint of their run in the schema metadata,
# so a reader can check that they were computed on its own items and settings before reusing them.
_RECORD_META = b"mixtrain.model_record"
_FINGERPRINT_META = b"mixtrain.fingerprint"


def with_provenance(rows: pa.Table, model_record: Mapping[str, Any], fingerprint: str) -> pa.Table:
    meta = dict(rows.schema.metadata or {})
    meta.update({_RECORD_META: canonical_json(dict(model_record)).encode(), _FINGERPRINT_META: fingerprint.encode()})
    return rows.replace_schema_metadata(meta)


def stored_rows(table: pa.Table, fingerprint: str) -> tuple[pa.Table, dict[str, Any]] | None:
    """``(rows, model_record)`` of a ``with_provenance`` table computed on the same items and settings, else None
    (then the reader evaluates the model itself)."""
    meta = table.schema.metadata or {}
    if meta.get(_FINGERPRINT_META, b"").decode() != fingerprint or _RECORD_META not in meta or table.num_rows == 0:
        return None
    return table.replace_schema_metadata(None), json.loads(meta[_RECORD_META])
