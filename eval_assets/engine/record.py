"""The reproducibility record of an evaluation run: what would be needed to get the same numbers again.

Model identities (as the caller names them, plus vocabulary and chat template hashes and the hardware each ran
on), each eval set's size, versions and checksum, decoding settings, bootstrap seeds and package versions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from eval_assets.engine.registry import registry_checksum
from eval_assets.engine.suites import PERPLEXITY_TEXT_SET, EvalSettings
from mixtrain.identity import model_hardware, package_versions, text_sha256, vocab_sha256


def model_record(tokenizer: Any, model: Any, with_tools: bool) -> dict[str, Any]:
    chat_template = getattr(tokenizer, "chat_template", None)
    out: dict[str, Any] = {
        "vocab_sha256": vocab_sha256(tokenizer),
        "vocab_size": len(tokenizer),
        "chat_template_sha256": text_sha256(
            chat_template if isinstance(chat_template, str) else json.dumps(chat_template)
        ),
        "hardware": model_hardware(model),
    }
    if with_tools:
        from training_assets.engine.tool_template import select_template

        try:
            out["tool_template"] = select_template(tokenizer, with_tools=True).manifest()
        except ValueError as e:
            out["tool_template"] = {"error": str(e)}
    return out


def _set_record(suite: str, table: pa.Table) -> dict[str, dict[str, Any]]:
    """Version and checksum of each eval set a suite ran: the registry's own checksum rule where the table is a
    registry slice, else a hash of the texts (held-out perplexity texts carry no checksum column)."""
    out: dict[str, dict[str, Any]] = {}
    for set_id in eval_sets_of(table):
        rows = table.filter(pc.equal(table["eval_set"], set_id)) if "eval_set" in table.column_names else table
        if {"checksum", "item_id"} <= set(rows.column_names):
            checksum = registry_checksum(rows)
            versions = sorted(set(rows.column("version").to_pylist())) if "version" in rows.column_names else []
        else:
            payload = [[r.get("item_id"), r.get("domain"), r.get("text")] for r in rows.to_pylist()]
            checksum = hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()
            versions = []
        out[set_id] = {"suite": suite, "n_items": rows.num_rows, "versions": versions, "checksum": checksum}
    return out


def sets_record(suites: Mapping[str, pa.Table]) -> dict[str, dict[str, Any]]:
    """Per eval set: the suites that ran it (a set may serve two, e.g. structured and efficiency), its size,
    versions and checksum."""
    out: dict[str, dict[str, Any]] = {}
    for name, table in suites.items():
        for set_id, rec in _set_record(name, table).items():
            suite = rec.pop("suite")
            out.setdefault(set_id, {**rec, "suites": []})["suites"].append(suite)
    return out


def eval_sets_of(table: pa.Table) -> list[str]:
    if "eval_set" not in table.column_names:
        return [PERPLEXITY_TEXT_SET]
    return list(dict.fromkeys(v or PERPLEXITY_TEXT_SET for v in table.column("eval_set").to_pylist()))


def run_record(
    baseline_label: str,
    models: Mapping[str, dict[str, Any]],
    suites: Mapping[str, pa.Table],
    settings: EvalSettings,
    suite_info: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """The record of one run: ``models`` per label (directories, identity, ``model_record``), the eval sets of
    ``suites`` (as run, after the item limit), the settings, and ``suite_info`` (non-numeric suite output)."""
    return {
        "baseline": baseline_label,
        "models": models,
        "eval_sets": sets_record(suites),
        "decoding": {
            "strategy": "greedy",
            "max_new_tokens": settings.max_new_tokens,
            # derived: per model and suite from the reference answers (models.<label>.generation_budget)
            "budget": "derived" if settings.derive_budget else "fixed",
            "batch_size": settings.batch_size,
            "efficiency_batch_size": 1,
            "dtype": settings.dtype,
        },
        "seeds": {
            "bootstrap_seed": settings.seed,
            "n_resamples": settings.n_resamples,
            "confidence": settings.confidence,
        },
        "settings": asdict(settings),
        "suite_info": suite_info,
        "packages": package_versions(),
    }
