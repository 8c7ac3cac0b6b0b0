"""Promotion: the gate's candidate becomes the live release only when every release criterion holds; the
release record keeps the one before it (for ``mixtrain rollback``) and the history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from eval_assets.engine.gate import gate_verdict
from eval_assets.engine.live import GateBaseline
from mixtrain.config.evaluation import ReleaseGateSpec

# The columns of a gate check that say why a model was released.
REASON_FIELDS = ("name", "eval_set", "baseline_model", "candidate", "baseline", "diff", "message")


def promotion_checks(
    gate: ReleaseGateSpec, comparison: pa.Table, trained: Mapping[str, Any], baseline: GateBaseline
) -> list[dict]:
    """The gate's checks of its candidate against ``baseline`` (the live release, or the base before the first):
    the candidate must be one of ``trained`` and pass every criterion."""
    if gate.candidate not in trained:
        raise ValueError(f"mixtrain.yaml: field 'release_gate.candidate': '{gate.candidate}' is not a trained model")
    passed, checks = gate_verdict(comparison, gate, baseline.label, baseline.model)
    if not passed:  # the blocking check stops the run first; this guards a hand-picked materialization
        raise RuntimeError(f"release gate failed for {gate.candidate}: the release stays as it was")
    return checks


def release_reason(checks: list[dict]) -> list[dict]:
    return [{k: c[k] for k in REASON_FIELDS} for c in checks]


def next_release(previous: Mapping[str, Any] | None, entry: dict[str, Any]) -> dict[str, Any]:
    """The release record with ``entry`` live, the one before it as ``previous`` and appended to the history."""
    history = [*previous.get("history", []), previous["current"]] if previous else []
    return {"current": entry, "previous": previous["current"] if previous else None, "history": history}


def release_name(release: Mapping[str, Any] | None) -> str:
    """``<model>@<version>`` of a release record's live entry; ``none`` without one."""
    return f"{release['current']['model']}@{release['current']['version']}" if release else "none"
