"""The keeper rule: which member of a duplicate cluster stays (license, trust tier, capture time, doc id).

Why a module: the rule is a policy of its own (documented in the package docstring), independent of how
pairs are found; resolution walks documents in the order it gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.dedupe.config import DedupeConfig
from mixassets.engine.dedupe.sketching import _content_hashes
from mixassets.engine.dedupe.tables import _capture_utc, _check_columns, _in_set, _one_array, _optional_string
from mixassets.engine.licenses import (
    ATTRIBUTION_REQUIRED,
    COMMERCIAL_OK,
    NO_DERIVATIVES,
    NON_COMMERCIAL,
    PARTNER_ONLY,
    RESEARCH_ONLY,
    SHAREALIKE,
    LicenseError,
    license_alternatives,
)

_RESTRICTIVE = frozenset({NON_COMMERCIAL, NO_DERIVATIVES, RESEARCH_ONLY, PARTNER_ONLY})
_UNKNOWN_LICENSE = 4


# -- keeper order ------------------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def license_rank(expr: str | None) -> int:
    """0 public-domain-like, 1 attribution, 2 share-alike, 3 restricted use, 4 unknown; lower is kept first.

    The rank of an ``OR`` expression is that of its best alternative: the licensee may pick it.
    """
    try:
        alternatives = license_alternatives(expr)
    except LicenseError:
        return _UNKNOWN_LICENSE
    if not alternatives:
        return _UNKNOWN_LICENSE
    return min(_tags_rank(tags) for tags in alternatives)


def _tags_rank(tags: frozenset[str]) -> int:
    if tags & _RESTRICTIVE:
        return 3
    if SHAREALIKE in tags:
        return 2
    if ATTRIBUTION_REQUIRED in tags:
        return 1
    if COMMERCIAL_OK in tags:
        return 0
    return _UNKNOWN_LICENSE


def _keeper_positions(meta: pa.Table, cfg: DedupeConfig, trust: Mapping[str, int] | None) -> np.ndarray:
    """Row positions of ``meta`` (sketch-like columns), best keeper first."""
    n = meta.num_rows
    if n == 0:
        return np.empty(0, dtype=np.int64)
    sources = meta.column("source_id")
    capture = meta.column("capture_time").cast(pa.int64())
    columns: dict[str, pa.Array | pa.ChunkedArray | np.ndarray] = {}
    sort_keys: list[tuple[str, str]] = []
    for criterion in cfg.keeper_rule:
        if criterion == "license":
            licenses = _one_array(meta.column("license")).dictionary_encode()
            ranks_of = pa.array(
                [license_rank(x) for x in licenses.dictionary.to_pylist()] + [_UNKNOWN_LICENSE], pa.int8()
            )
            codes = pc.fill_null(licenses.indices.cast(pa.int32()), len(licenses.dictionary))
            columns["license"] = pc.take(ranks_of, codes)
            sort_keys.append(("license", "ascending"))
        elif criterion == "trust_tier":
            ranks = trust or {}
            distinct = pc.unique(sources).to_pylist()
            tier = pa.array([int(ranks.get(s, 0)) for s in distinct], pa.int64())
            columns["trust"] = pc.take(tier, pc.index_in(sources, value_set=pa.array(distinct, pa.string())))
            sort_keys.append(("trust", "descending"))
        elif criterion == "capture_time":
            columns["time_missing"] = pc.is_null(capture)
            columns["time"] = pc.fill_null(capture, 0)
            sort_keys += [("time_missing", "ascending"), ("time", "ascending")]
        else:
            sort_keys.append(("doc_id", "ascending"))
    columns.update({"doc_id": meta.column("doc_id"), "source_id": sources, "content_hash": meta.column("content_hash")})
    sort_keys += [("doc_id", "ascending"), ("source_id", "ascending"), ("content_hash", "ascending")]
    seen: set[str] = set()
    unique_keys = [k for k in sort_keys if not (k[0] in seen or seen.add(k[0]))]
    table = pa.table({k: (pa.array(v) if isinstance(v, np.ndarray) else v) for k, v in columns.items()})
    return pc.sort_indices(table, sort_keys=unique_keys).to_numpy()


def keeper_order(
    docs: pa.Table,
    source_rank: Mapping[str, int] | None = None,
    *,
    config: DedupeConfig | None = None,
    code_sources: Sequence[str] | set[str] | frozenset[str] = frozenset(),
) -> list[int]:
    """Row indices of ``docs`` (documents or sketches), best keeper first (see the module docstring)."""
    cfg = config or DedupeConfig()
    if "content_hash" in docs.column_names:
        meta = docs
    else:
        _check_columns(docs)
        codes = _in_set(docs.column("source_id"), code_sources)
        meta = pa.table(
            {
                "doc_id": docs.column("doc_id"),
                "source_id": docs.column("source_id"),
                "license": _optional_string(docs, "license"),
                "capture_time": _capture_utc(docs),
                "content_hash": _content_hashes(docs.column("text"), codes),
            }
        )
    return _keeper_positions(meta, cfg, source_rank).tolist()
