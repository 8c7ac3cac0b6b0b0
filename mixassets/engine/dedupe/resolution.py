"""Resolution: walk documents best keeper first and decide keepers, capped members and drops.

Why a module: this is where thresholds, exact keys and cluster caps meet to produce the cluster rows that
are persisted (``DEDUPE_CLUSTER_SCHEMA``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.dedupe.config import DedupeConfig
from mixassets.engine.dedupe.keepers import _keeper_positions
from mixassets.engine.dedupe.verification import VerifiedPairs
from mixtrain.schema import DEDUPE_CLUSTER_SCHEMA


def _exact_groups(sketches: pa.Table) -> np.ndarray:
    """Dense id per distinct exact key, -1 where there is none."""
    keys = sketches.column("exact_key").combine_chunks()
    if len(keys) == 0:
        return np.empty(0, dtype=np.int64)
    encoded = pc.dictionary_encode(keys).indices
    return pc.fill_null(encoded.cast(pa.int64()), -1).to_numpy(zero_copy_only=False)


# -- resolution ------------------------------------------------------------------------------------------
def _thresholds(sketches: pa.Table, cfg: DedupeConfig) -> np.ndarray:
    """Each document's pair threshold, looked up once per distinct (source, domain) rather than per row."""
    n = sketches.num_rows
    if not cfg.source_threshold and not cfg.domain_threshold:
        return np.full(n, float(cfg.threshold))
    key = (
        pc.binary_join_element_wise(sketches.column("source_id"), pc.fill_null(sketches.column("domain"), ""), "\x1f")
        .combine_chunks()
        .dictionary_encode()
    )
    per_key = [
        cfg.threshold_for(src, dom or None) for src, dom in (k.split("\x1f", 1) for k in key.dictionary.to_pylist())
    ]
    return np.asarray(per_key, dtype=np.float64)[key.indices.to_numpy(zero_copy_only=False)]


def resolve(
    sketches: pa.Table,
    verified: VerifiedPairs,
    config: DedupeConfig | None = None,
    *,
    trust: Mapping[str, int] | None = None,
) -> tuple[np.ndarray, pa.Table]:
    """Keepers, capped members and drops; returns ``(kept mask by position, DEDUPE_CLUSTER_SCHEMA rows)``.

    Only documents with an exact-key twin or a verified pair at or above their pair threshold are walked
    (best keeper first); every other document is its own keeper. Cluster rows come in walk order.
    """
    cfg = config or DedupeConfig()
    if sketches.num_rows == 0:
        rows: dict[str, list] = {name: [] for name in DEDUPE_CLUSTER_SCHEMA.names}
        return np.ones(0, dtype=bool), pa.Table.from_pydict(rows, schema=DEDUPE_CLUSTER_SCHEMA)
    walk = resolve_walk(sketches, verified, cfg, trust=trust)
    return walk.kept, _cluster_rows(sketches, walk.member, walk.keeper_of, walk.via_edge, walk.capped, verified)


@dataclass(frozen=True)
class Walk:
    """The decisions of :func:`resolve_walk`, by sketch position; one entry per non-keeper member, in walk order."""

    kept: np.ndarray  # (n,) bool
    member: list[int]  # the member's position
    keeper_of: list[int]  # its keeper's position
    via_edge: list[int]  # the verified pair that matched (index into the pairs), -1 for an exact match
    capped: list[bool]  # kept under a cluster cap


def resolve_walk(
    sketches: pa.Table, verified: VerifiedPairs, config: DedupeConfig, *, trust: Mapping[str, int] | None = None
) -> Walk:
    """The walk behind :func:`resolve`. Each decision reads only the document's connected component (its
    exact-key twins and verified pairs at or above threshold), so the walk of a union of whole components,
    e.g. one partition of a distributed run, decides exactly as the walk of the whole corpus does."""
    cfg = config
    n = sketches.num_rows
    kept = np.ones(n, dtype=bool)
    order = _keeper_positions(sketches, cfg, trust)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    thresholds = _thresholds(sketches, cfg)
    groups = _exact_groups(sketches)

    pos = verified.positions
    pair_threshold = np.maximum(thresholds[pos[:, 0]], thresholds[pos[:, 1]]) if len(pos) else np.empty(0)
    near = np.flatnonzero(verified.exact_jaccard >= pair_threshold - 1e-12)
    ends = np.concatenate([pos[near, 0], pos[near, 1]])
    partners = np.concatenate([pos[near, 1], pos[near, 0]])
    edge = np.concatenate([near, near])
    by_end = np.argsort(ends, kind="stable")
    ends, partners, edge = ends[by_end], partners[by_end], edge[by_end]
    first = np.searchsorted(ends, np.arange(n + 1))

    group_sizes = np.bincount(groups[groups >= 0], minlength=1) if n else np.empty(0, dtype=np.int64)
    involved = (first[1:] > first[:-1]) | ((groups >= 0) & (group_sizes[np.maximum(groups, 0)] > 1))
    walk = order[involved[order]]
    # Only the walked rows' source and domain are needed, and only when a cluster cap can apply: taking them
    # for the walk alone keeps a corpus-wide Python list of ids out of every run.
    capped = bool(cfg.max_per_cluster)
    walk_at = pa.array(walk, pa.int64())
    walk_sources = sketches.column("source_id").take(walk_at).to_pylist() if capped else []
    walk_domains = sketches.column("domain").take(walk_at).to_pylist() if capped else []
    slot_of = {int(d): k for k, d in enumerate(walk.tolist())} if capped else {}

    is_keeper = np.zeros(n, dtype=bool)
    group_keeper: dict[int, int] = {}
    cluster_counts: dict[int, dict[tuple[str, str], int]] = {}
    exact_j = verified.exact_jaccard
    member: list[int] = []
    keeper_of: list[int] = []
    via_edge: list[int] = []  # the verified pair that matched, -1 for an exact match
    capped_rows: list[bool] = []

    for w, d in enumerate(walk.tolist()):
        g = int(groups[d])
        keeper, chosen = -1, -1
        if g >= 0 and g in group_keeper:
            keeper = group_keeper[g]
        else:
            best: tuple[float, int] | None = None
            for k in range(first[d], first[d + 1]):
                other = int(partners[k])
                if not is_keeper[other]:
                    continue
                option = (-float(exact_j[edge[k]]), int(rank[other]))
                if best is None or option < best:
                    best, chosen = option, k
            if best is not None:
                keeper = int(partners[chosen])
        if keeper < 0:
            is_keeper[d] = True
            if g >= 0:
                group_keeper.setdefault(g, d)
            continue
        action_capped = False
        if capped:
            cap, kind, value = cfg.cap_for(walk_sources[w], walk_domains[w])
            if cap > 1:
                counts = cluster_counts.setdefault(keeper, {})
                slot = (kind, value)
                if slot not in counts:
                    at = slot_of[keeper]
                    keeper_value = walk_sources[at] if kind == "source" else walk_domains[at]
                    counts[slot] = int(keeper_value == value)
                if counts[slot] < cap:
                    counts[slot] += 1
                    action_capped = True
        if not action_capped:
            kept[d] = False
        member.append(d)
        keeper_of.append(keeper)
        via_edge.append(-1 if chosen < 0 else int(edge[chosen]))
        capped_rows.append(action_capped)
    return Walk(kept, member, keeper_of, via_edge, capped_rows)


_MATCH_TYPES = pa.array(["exact", "near"], pa.string())
_ACTIONS = pa.array(["dropped", "kept_capped"], pa.string())


def _cluster_rows(
    sketches: pa.Table,
    member: list[int],
    keeper_of: list[int],
    via_edge: list[int],
    capped_rows: list[bool],
    verified: VerifiedPairs,
) -> pa.Table:
    """The :data:`DEDUPE_CLUSTER_SCHEMA` rows of the walk, built column-wise with ``take`` so the ids of the
    walked rows are never turned into Python strings."""
    rows = np.asarray(member, dtype=np.int64)
    keepers = pa.array(np.asarray(keeper_of, dtype=np.int64), pa.int64())
    edges = np.asarray(via_edge, dtype=np.int64)
    near = edges >= 0
    exact_j = np.ones(len(edges))
    estimated_j = np.ones(len(edges))
    exact_j[near] = verified.exact_jaccard[edges[near]]
    estimated_j[near] = verified.estimated_jaccard[edges[near]]
    doc_ids = sketches.column("doc_id")
    sources = sketches.column("source_id")
    kept_doc = doc_ids.take(keepers)
    kept_source = sources.take(keepers)
    at = pa.array(rows, pa.int64())
    columns = {
        "cluster_id": pc.binary_join_element_wise(kept_source, kept_doc, "/"),
        "doc_id": doc_ids.take(at),
        "source_id": sources.take(at),
        "kept_doc_id": kept_doc,
        "kept_source_id": kept_source,
        "match_type": _MATCH_TYPES.take(pa.array(near.astype(np.int8))),
        "estimated_jaccard": pa.array(estimated_j, pa.float64()),
        "exact_jaccard": pa.array(exact_j, pa.float64()),
        "action": _ACTIONS.take(pa.array(np.asarray(capped_rows, dtype=np.int8))),
    }
    return pa.table(columns, schema=DEDUPE_CLUSTER_SCHEMA).combine_chunks()
