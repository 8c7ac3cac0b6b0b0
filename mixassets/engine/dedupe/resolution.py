"""Resolution: one keeper per connected component of duplicate edges; capped members and drops.

Why a module: this is where thresholds, exact keys and cluster caps meet to produce the cluster rows that
are persisted (``DEDUPE_CLUSTER_SCHEMA``).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.dedupe.config import DedupeConfig
from mixassets.engine.dedupe.keepers import _keeper_positions
from mixassets.engine.dedupe.tables import _one_array
from mixassets.engine.dedupe.verification import VerifiedPairs
from mixtrain.schema import DEDUPE_CLUSTER_SCHEMA


def _exact_groups(sketches: pa.Table) -> np.ndarray:
    """Dense id per distinct exact key, -1 where there is none."""
    keys = _one_array(sketches.column("exact_key"))
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
    (:func:`resolve_walk`); every other document is its own keeper. Cluster rows come in keeper order.
    """
    cfg = config or DedupeConfig()
    if sketches.num_rows == 0:
        rows: dict[str, list] = {name: [] for name in DEDUPE_CLUSTER_SCHEMA.names}
        return np.ones(0, dtype=bool), pa.Table.from_pydict(rows, schema=DEDUPE_CLUSTER_SCHEMA)
    walk = resolve_walk(sketches, verified, cfg, trust=trust)
    return walk.kept, _cluster_rows(sketches, walk, verified)


@dataclass(frozen=True)
class Walk:
    """The decisions of :func:`resolve_walk`, by sketch position; one entry per non-keeper member, in keeper
    order of the members."""

    kept: np.ndarray  # (n,) bool
    member: list[int]  # the member's position
    matched: list[int]  # the member it was matched to (verified or an exact twin), visited before it
    keeper_of: list[int]  # its component's keeper (the cluster)
    via_edge: list[int]  # the verified pair that matched (index into the pairs), -1 for an exact match
    capped: list[bool]  # kept under a cluster cap


def resolve_walk(
    sketches: pa.Table, verified: VerifiedPairs, config: DedupeConfig, *, trust: Mapping[str, int] | None = None
) -> Walk:
    """The walk behind :func:`resolve`: one keeper per connected component of exact-key and verified edges.

    Components are taken in keeper order of their best member, which is the keeper. From it the walk grows the
    component like Prim's algorithm, always visiting next the best-ranked member adjacent to those visited; that
    member names the visited member it matched (an exact-key twin first, else the verified partner with the
    highest exact Jaccard, ties to the better keeper). So every link a dropped document records is verified, the
    links lead to the keeper, and a chain A~B~C ends in one cluster although A and C differ. Each decision reads
    only the component, so the walk of a union of whole components (one partition of a distributed run) decides
    exactly as the walk of the whole corpus does. Rows come in keeper order of their members."""
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
    # Adjacency sorted by end, then by the partner's rank: a visit pushes its partners best first.
    by_end = np.lexsort((rank[partners], ends)) if len(ends) else np.empty(0, dtype=np.int64)
    ends, partners, edge = ends[by_end], partners[by_end], edge[by_end]
    first = np.searchsorted(ends, np.arange(n + 1))

    # Exact-key twins, each group's members best keeper first.
    with_key = order[groups[order] >= 0]
    by_group = with_key[np.argsort(groups[with_key], kind="stable")]
    group_start = np.searchsorted(groups[by_group], np.arange(int(groups.max(initial=-1)) + 2))
    group_size = np.diff(group_start)
    twins = (groups >= 0) & (group_size[np.maximum(groups, 0)] > 1) if len(group_size) else np.zeros(n, dtype=bool)
    involved = (first[1:] > first[:-1]) | twins

    walk = order[involved[order]]
    capped = bool(cfg.max_per_cluster)
    # Only the walked rows' source and domain are needed, and only when a cluster cap can apply: taking them
    # for the walk alone keeps a corpus-wide Python list of ids out of every run.
    sources: dict[int, str] = {}
    domains: dict[int, str | None] = {}
    if capped:
        walk_at = pa.array(walk, pa.int64())
        ids = walk.tolist()
        sources = dict(zip(ids, sketches.column("source_id").take(walk_at).to_pylist(), strict=True))
        domains = dict(zip(ids, sketches.column("domain").take(walk_at).to_pylist(), strict=True))

    exact_j = verified.exact_jaccard
    visited = np.zeros(n, dtype=bool)
    first_visited: dict[int, int] = {}  # exact group -> its first visited member
    rows: list[tuple[int, int, int, int, int, bool]] = []  # (rank, member, matched, keeper, edge or -1, capped)
    for root in walk.tolist():
        if visited[root]:
            continue
        counts: dict[tuple[str, str], int] = {}
        frontier = [(int(rank[root]), root)]
        while frontier:
            _, d = heapq.heappop(frontier)
            if visited[d]:
                continue
            visited[d] = True
            g = int(groups[d])
            matched, chosen = -1, -1
            if d != root:
                if g >= 0 and g in first_visited:
                    matched = first_visited[g]
                else:
                    best: tuple[float, int] | None = None
                    for k in range(first[d], first[d + 1]):
                        other = int(partners[k])
                        option = (-float(exact_j[edge[k]]), int(rank[other]))
                        if visited[other] and (best is None or option < best):
                            best, chosen = option, k
                    matched = int(partners[chosen])
            if g >= 0:
                first_visited.setdefault(g, d)
                for k in range(group_start[g], group_start[g + 1]):
                    twin = int(by_group[k])
                    if not visited[twin]:
                        heapq.heappush(frontier, (int(rank[twin]), twin))
            for k in range(first[d], first[d + 1]):
                other = int(partners[k])
                if not visited[other]:
                    heapq.heappush(frontier, (int(rank[other]), other))
            if d == root:
                continue
            is_capped = capped and _under_cap(cfg, counts, sources, domains, root, d)
            kept[d] = is_capped
            rows.append((int(rank[d]), d, matched, root, -1 if chosen < 0 else int(edge[chosen]), is_capped))
    rows.sort()
    columns = list(zip(*rows, strict=True)) if rows else [()] * 6
    return Walk(kept, *(list(c) for c in columns[1:]))


def _under_cap(
    cfg: DedupeConfig,
    counts: dict[tuple[str, str], int],
    sources: Mapping[int, str],
    domains: Mapping[int, str | None],
    root: int,
    d: int,
) -> bool:
    """Whether member ``d`` of ``root``'s component stays under its source's or domain's cluster cap (the keeper
    counts when it is of that source/domain); ``counts`` is the component's tally, updated when it stays."""
    cap, kind, value = cfg.cap_for(sources[d], domains[d])
    if cap <= 1:
        return False
    slot = (kind, value)
    if slot not in counts:
        counts[slot] = int((sources[root] if kind == "source" else domains[root]) == value)
    if counts[slot] >= cap:
        return False
    counts[slot] += 1
    return True


_MATCH_TYPES = pa.array(["exact", "near"], pa.string())
_ACTIONS = pa.array(["dropped", "kept_capped"], pa.string())


def _cluster_rows(sketches: pa.Table, walk: Walk, verified: VerifiedPairs) -> pa.Table:
    """The :data:`DEDUPE_CLUSTER_SCHEMA` rows of the walk, built column-wise with ``take`` so the ids of the
    walked rows are never turned into Python strings. ``kept_*`` name the member a row matched (its Jaccard is
    with that one), ``cluster_id`` the component's keeper."""
    rows = np.asarray(walk.member, dtype=np.int64)
    keepers = pa.array(np.asarray(walk.keeper_of, dtype=np.int64), pa.int64())
    matched = pa.array(np.asarray(walk.matched, dtype=np.int64), pa.int64())
    edges = np.asarray(walk.via_edge, dtype=np.int64)
    near = edges >= 0
    exact_j = np.ones(len(edges))
    estimated_j = np.ones(len(edges))
    exact_j[near] = verified.exact_jaccard[edges[near]]
    estimated_j[near] = verified.estimated_jaccard[edges[near]]
    doc_ids = sketches.column("doc_id")
    sources = sketches.column("source_id")
    at = pa.array(rows, pa.int64())
    columns = {
        "cluster_id": pc.binary_join_element_wise(sources.take(keepers), doc_ids.take(keepers), "/"),
        "doc_id": doc_ids.take(at),
        "source_id": sources.take(at),
        "kept_doc_id": doc_ids.take(matched),
        "kept_source_id": sources.take(matched),
        "match_type": _MATCH_TYPES.take(pa.array(near.astype(np.int8))),
        "estimated_jaccard": pa.array(estimated_j, pa.float64()),
        "exact_jaccard": pa.array(exact_j, pa.float64()),
        "action": _ACTIONS.take(pa.array(np.asarray(walk.capped, dtype=np.int8))),
    }
    return pa.table(columns, schema=DEDUPE_CLUSTER_SCHEMA).combine_chunks()
