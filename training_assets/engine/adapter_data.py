"""The part of the mixture a task adapter (an entry of ``adapters:``) trains on."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from mixtrain.config.training import AdapterSpec


def data_filter(spec: AdapterSpec) -> dict[str, list[str]]:
    """The adapter's filter as recorded in its version and model record (sorted, so order in YAML is moot)."""
    return {"sources": sorted(spec.sources), "domains": sorted(spec.domains)}


def select_rows(mixture: pa.Table, spec: AdapterSpec) -> pa.Table:
    """The mixture rows an adapter trains on (every occurrence, so upsampling and phases carry over)."""
    keep = pa.array([True] * mixture.num_rows)
    if spec.sources:
        keep = pc.and_(keep, pc.is_in(mixture["source_id"], pa.array(spec.sources, pa.string())))
    if spec.domains:
        keep = pc.and_(keep, pc.is_in(mixture["domain"], pa.array(spec.domains, pa.string())))
    return mixture.filter(keep)
