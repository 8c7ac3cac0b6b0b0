"""Token-budgeted, weighted sampling of the screened corpus into a training mixture.

Why these rules:

* Weights are shares of the *token* budget, not of documents, because sources differ a lot in
  document length and the model sees tokens.
* A source's weight is its own weight times its domain's weight (``domain_weights``); a missing factor
  counts as 1, so listing a domain never silences the sources of other domains, and a source named in
  neither map is not drawn (``not_in_weights``). Multiplying keeps one knob per level: "code twice as much"
  at the domain level composes with "this code source half as much" at the source level.
* With ``temperature`` T the sampling share is ``p ∝ weight · n^(1/T)`` where ``n`` is the source's drawable
  tokens: T = 1 follows source size, larger T flattens toward the weights. Without a temperature (the
  default, the T → ∞ limit) weights alone set the shares, as before this lever existed.
* Floors (``min_tokens``) are reserved from the budget first and the weighted shares split what is left,
  so a floor is a guarantee that does not depend on the other weights. Floors larger than the budget are
  scaled down to it and reported.
* Targets are whole tokens split by largest remainder, so per-phase targets add up to the budget exactly
  and never depend on the seed: a new seed changes which documents are drawn, never how many tokens each
  source gets.
* Each source is drawn in its own seeded order (numpy ``Generator`` seeded from ``(seed, hash(source_id))``)
  over its documents sorted by ``doc_id``, so the selection does not depend on input row order and
  re-weighting one source never reshuffles another. The order is weighted sampling without replacement
  (Efraimidis & Spirakis 2006: key ``log(u) / w``, largest first) with ``w`` the document's length-bucket
  weight, so short documents cannot crowd out long ones when a source is only partly used.
* That order, cut to ``max_docs`` distinct documents, is one *epoch*; a source's occurrence stream is the
  epoch repeated ``max_epochs`` times (default 1, no repeats). Phases consume the stream in phase order, so
  a document reappears — in the same phase or a later one — only after every drawn document of its source
  has been used as often, and never more than ``max_epochs`` times in the whole mixture. Each output row is
  one occurrence; ``occurrence`` is its 0-based index (its epoch).
* Documents are taken until the phase target is reached (the last one may overshoot by less than its own
  length), the ``max_tokens`` hard cap would be exceeded (never overshot), or the stream ends. A source that
  cannot fill its target is reported with its shortfall; its unused budget is *not* handed to other
  sources, because that would silently change what their weights mean.
* Documents the release policy forbids (``allowed[i]`` False, decided by the caller), documents in a length
  bucket of weight 0 and documents of unweighted sources are never drawn, and are counted in the stats so
  the mixture report shows what was left out and why.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.mixture_stats import _share, composition
from mixassets.engine.mixture_weights import (
    DEFAULT_PHASE,
    _combined_weight,
    _Phase,
    _phases,
    apportion,
    doc_ids_digest,
    length_weights,
    sampling_weights,
    source_rng,
    weighted_order,
)
from mixtrain.config.data import MixtureSpec

__all__ = [
    "ADDED_COLUMNS",
    "DEFAULT_PHASE",
    "OCCURRENCE_COLUMN",
    "PHASE_COLUMN",
    "TOKENS_COLUMN",
    "UNKNOWN",
    "apportion",
    "doc_ids_digest",
    "length_weights",
    "sample_mixture",
    "sampling_weights",
    "source_rng",
    "weighted_order",
]

TOKENS_COLUMN = "tokens"
PHASE_COLUMN = "phase"
OCCURRENCE_COLUMN = "occurrence"
ADDED_COLUMNS = (TOKENS_COLUMN, PHASE_COLUMN, OCCURRENCE_COLUMN)
UNKNOWN = "unknown"  # domain / language of a document that has none


@dataclass
class _Stream:
    """A source's occurrences: its epoch order repeated ``epochs`` times, consumed front to back by phases."""

    rows: np.ndarray  # input row indices in draw order, cut to max_docs
    tokens: np.ndarray  # their token counts, same order
    epochs: int
    cap: int | None  # max_tokens over the whole mixture
    cut_by_max_docs: bool
    pos: int = 0
    prefix: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.prefix = np.concatenate([[0], np.cumsum(self.tokens, dtype=np.int64)])

    @property
    def length(self) -> int:
        """Occurrences available; documents without tokens are never worth a second epoch."""
        m = len(self.rows)
        return m * self.epochs if self.prefix[-1] > 0 else m

    def tokens_before(self, k: int) -> int:
        """Tokens in the first ``k`` occurrences."""
        epoch, r = divmod(k, len(self.rows)) if len(self.rows) else (0, 0)
        return int(epoch * self.prefix[-1] + self.prefix[r])

    def take(self, need: int) -> tuple[int, int, str]:
        """Advance past the occurrences that cover ``need`` tokens; returns ``(start, end, stop_reason)``."""
        start, n = self.pos, self.length
        positions = range(n + 1)
        before = self.tokens_before
        reach = start if need <= 0 else bisect.bisect_left(positions, before(start) + need, lo=start, key=before)
        limit = n if self.cap is None else bisect.bisect_right(positions, self.cap, key=before) - 1
        if reach <= min(n, limit):
            end, reason = reach, "target"
        elif limit < n:
            end, reason = max(start, limit), "max_tokens"
        else:
            end, reason = n, "max_docs" if self.cut_by_max_docs else "exhausted"
        self.pos = end
        return start, end, reason


def _validate(docs: pa.Table, token_counts: Sequence[int], allowed: Sequence[bool]) -> np.ndarray:
    """Raise on malformed input; returns the token counts as an int64 array."""
    for name in ("doc_id", "source_id"):
        if name not in docs.column_names:
            raise ValueError(f"mixture: input table lacks required column '{name}'; got {docs.column_names}")
        if docs.column(name).null_count:
            raise ValueError(f"mixture: column '{name}' has null values")
    clash = [c for c in ADDED_COLUMNS if c in docs.column_names]
    if clash:
        raise ValueError(f"mixture: input table already has column(s) {clash} that the mixture adds")
    if len(token_counts) != docs.num_rows:
        raise ValueError(f"mixture: {len(token_counts)} token counts for {docs.num_rows} documents")
    if len(allowed) != docs.num_rows:
        raise ValueError(f"mixture: {len(allowed)} policy flags for {docs.num_rows} documents")
    counts = np.asarray(token_counts)
    negative = np.flatnonzero(counts.reshape(-1) < 0)
    if len(negative):
        raise ValueError(f"mixture: negative token count at row(s) {negative[:10].tolist()}")
    return counts.astype(np.int64, copy=False).reshape(-1)


def _encode(values: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """(code per row, sorted distinct values): ``names[codes[i]]`` is row ``i``'s value, and codes order like names."""
    encoded = pc.dictionary_encode(values.combine_chunks())
    names = encoded.dictionary.to_pylist()
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    return rank[encoded.indices.to_numpy(zero_copy_only=False)], [names[i] for i in order]


def _labels(docs: pa.Table, name: str) -> tuple[np.ndarray, list[str]]:
    """:func:`_encode` of a label column; a missing column, a null or an empty label reads as ``unknown``."""
    if name not in docs.column_names:
        return np.zeros(docs.num_rows, dtype=np.int64), [UNKNOWN] if docs.num_rows else []
    values = docs.column(name)
    if pa.types.is_null(values.type):
        values = values.cast(pa.string())
    values = pc.fill_null(values, UNKNOWN)
    return _encode(pc.if_else(pc.equal(values, ""), UNKNOWN, values))


@dataclass(frozen=True)
class _Corpus:
    """The input columns the sampler reads, as arrays indexed by input row; labels as codes into sorted names."""

    doc_ids: pa.ChunkedArray
    doc_rank: np.ndarray  # each row's position in (doc_id, row) order: the canonical order of a source
    source: np.ndarray  # code into source_names
    source_names: list[str]
    language: np.ndarray  # code into language_names
    language_names: list[str]
    tokens: np.ndarray
    ok: np.ndarray  # allowed by the release policy
    drawable: np.ndarray  # allowed and in a length bucket of weight > 0
    rows_by_source: dict[str, np.ndarray]  # ascending rows
    domains: dict[str, str]  # per source with documents: its most common domain (ties by name)

    @classmethod
    def of(cls, docs: pa.Table, tokens: np.ndarray, allowed: Sequence[bool], spec: MixtureSpec) -> _Corpus:
        n = docs.num_rows
        source, source_names = _encode(docs.column("source_id"))
        domain, domain_names = _labels(docs, "domain")
        ok = np.asarray(allowed, dtype=bool).reshape(-1)
        # Arrow's sort is stable and compares UTF-8 bytes, which orders like Python compares str.
        doc_rank = np.empty(n, dtype=np.int64)
        doc_rank[pc.sort_indices(docs.column("doc_id")).to_numpy()] = np.arange(n)
        by_source = np.argsort(source, kind="stable")
        bounds = np.cumsum(np.bincount(source, minlength=len(source_names)))[:-1]
        return cls(
            docs.column("doc_id"),
            doc_rank,
            source,
            source_names,
            *_labels(docs, "language"),
            tokens,
            ok,
            ok & (length_weights(tokens, spec.length_buckets) > 0),
            dict(zip(source_names, np.split(by_source, bounds) if n else [], strict=True)),
            _top_domains(source, domain, source_names, domain_names),
        )

    def rows(self, sid: str) -> np.ndarray:
        return self.rows_by_source.get(sid, np.zeros(0, dtype=np.int64))

    def drawable_tokens(self, sid: str) -> int:
        rows = self.rows(sid)
        return int(self.tokens[rows[self.drawable[rows]]].sum())

    def domain_of(self, sid: str) -> str:
        """The most common domain of the source's documents (ties by name): domain weights act per source."""
        return self.domains.get(sid, UNKNOWN)


def _top_domains(
    source: np.ndarray, domain: np.ndarray, source_names: list[str], domain_names: list[str]
) -> dict[str, str]:
    """Per source, its most frequent domain code; the smallest code, i.e. the first name, among equals."""
    if not len(source):
        return {}
    pairs, counts = np.unique(source * len(domain_names) + domain, return_counts=True)
    src, dom = np.divmod(pairs, len(domain_names))
    order = np.lexsort((dom, -counts, src))
    heads = order[np.flatnonzero(np.diff(src[order], prepend=-1))]
    return {source_names[s]: domain_names[d] for s, d in zip(src[heads].tolist(), dom[heads].tolist(), strict=True)}


def _stream(corpus: _Corpus, sid: str, spec: MixtureSpec) -> _Stream:
    """The source's drawable documents, canonically sorted, in their seeded weighted order, cut to max_docs."""
    rows = corpus.rows(sid)
    rows = rows[corpus.drawable[rows]]
    canonical = rows[np.argsort(corpus.doc_rank[rows])]
    weights = length_weights(corpus.tokens[canonical], spec.length_buckets)
    order = canonical[weighted_order(weights, source_rng(spec.seed, sid))]
    cap = spec.max_docs.get(sid)
    cut = cap is not None and cap < len(order)
    order = order[:cap] if cut else order
    return _Stream(order, corpus.tokens[order], spec.max_epochs.get(sid, 1), spec.max_tokens.get(sid), cut)


@dataclass
class _Draws:
    """What the phases took, in table order, and what they report."""

    rows: list[np.ndarray] = field(default_factory=list)
    occurrences: list[np.ndarray] = field(default_factory=list)
    phase_of: list[int] = field(default_factory=list)  # per entry of rows: index of its phase in ``phases``
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    listed: set[str] = field(default_factory=set)  # sources some phase names (even with weight 0)
    sampling_share: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)


def _draw_phase(
    phase: _Phase,
    budget: int,
    floors: dict[str, int],
    streams: Mapping[str, _Stream],
    domains: Mapping[str, str],
    drawable_tokens: Mapping[str, int],
    temperature: float | None,
    draws: _Draws,
) -> None:
    """Targets of one phase (floors first, then weighted shares of the rest) and the draws that meet them."""
    combined = {sid: _combined_weight(sid, domains[sid], phase) for sid in streams}
    draws.listed |= {sid for sid, w in combined.items() if w is not None}
    p = sampling_weights({sid: w or 0.0 for sid, w in combined.items()}, drawable_tokens, temperature)
    p_total = sum(p.values())
    for sid in streams:
        draws.sampling_share[sid] += phase.share * _share(p[sid], p_total)
    if sum(floors.values()) > budget:
        draws.warnings.append(
            f"phase '{phase.name}': floors ask {sum(floors.values())} tokens of a {budget}-token budget; scaled down"
        )
        floors = apportion(budget, floors)
    rest = budget - sum(floors.values())
    shares = apportion(rest, p)
    unallocated = rest if rest > 0 and p_total <= 0 else 0
    if unallocated:
        draws.warnings.append(f"phase '{phase.name}': no source has a positive sampling share; {rest} tokens unused")
    per_source: dict[str, dict[str, Any]] = {}
    for sid, stream in streams.items():
        target = floors.get(sid, 0) + shares[sid]
        if target <= 0:
            continue
        start, end, reason = stream.take(target)
        positions = np.arange(start, end, dtype=np.int64)
        m = max(len(stream.rows), 1)
        occurrence = positions // m
        got = int(stream.tokens[positions % m].sum())
        draws.rows.append(stream.rows[positions % m])
        draws.occurrences.append(occurrence)
        draws.phase_of.append(len(draws.phases))
        per_source[sid] = {
            "weight": float(combined[sid] or 0.0),
            "sampling_share": _share(p[sid], p_total),
            "floor_tokens": int(floors.get(sid, 0)),
            "target_tokens": int(target),
            "docs": len(positions),
            "repeated_docs": int((occurrence > 0).sum()),
            "tokens": got,
            "shortfall_tokens": max(0, int(target) - got),
            "stop_reason": reason,
        }
    draws.phases[phase.name] = {
        "share": phase.share,
        "token_budget": budget,
        "floor_tokens": int(sum(floors.values())),
        "unallocated_tokens": unallocated,
        **{k: sum(s[k] for s in per_source.values()) for k in _PHASE_SUMS},
        "sources": per_source,
    }


_PHASE_SUMS = ("target_tokens", "docs", "repeated_docs", "tokens", "shortfall_tokens")


def sample_mixture(
    docs: pa.Table, token_counts: Sequence[int], spec: MixtureSpec, *, allowed: Sequence[bool]
) -> tuple[pa.Table, dict[str, Any]]:
    """Sample the mixture; returns one row per occurrence (input columns + ``tokens``, ``phase``,
    ``occurrence``) and the composition stats (JSON-ready).

    Rows are ordered by phase (spec order), then source id, then sampling order. Same inputs, spec and seed
    give the same table and stats; the input's row order does not matter. The stats hold ``sources``,
    ``domains``, ``languages`` and ``phases`` breakdowns, ``totals``, the ``doc_ids_digest`` of the chosen
    documents and human-readable ``warnings`` (shortfalls, unmet floors).
    """
    corpus = _Corpus.of(docs, _validate(docs, token_counts, allowed), allowed, spec)
    named = {sid for ids in spec.source_references().values() for sid in ids}
    source_ids = sorted(set(corpus.rows_by_source) | named)
    domains = {sid: corpus.domain_of(sid) for sid in source_ids}
    streams = {sid: _stream(corpus, sid, spec) for sid in source_ids}
    drawable_tokens = {sid: corpus.drawable_tokens(sid) for sid in source_ids}

    phases = _phases(spec)
    shares = {p.name: p.share for p in phases}
    budgets = apportion(spec.token_budget, shares)
    floor_split = {sid: apportion(n, shares) for sid, n in spec.min_tokens.items()}
    draws = _Draws()
    for phase in phases:
        floors = {sid: split[phase.name] for sid, split in floor_split.items()}
        _draw_phase(phase, budgets[phase.name], floors, streams, domains, drawable_tokens, spec.temperature, draws)

    # the table: phase order, then source id, then draw order — the order the draws were made in
    idx = np.concatenate(draws.rows) if draws.rows else np.zeros(0, dtype=np.int64)
    occ = np.concatenate(draws.occurrences) if draws.occurrences else np.zeros(0, dtype=np.int64)
    out = docs.take(pa.array(idx, type=pa.int64()))
    out = out.append_column(
        pa.field(TOKENS_COLUMN, pa.int64(), nullable=False), pa.array(corpus.tokens[idx], pa.int64())
    )
    phase_names = pa.array(list(draws.phases), pa.string())
    phase_of = np.repeat(np.asarray(draws.phase_of, dtype=np.int64), [len(r) for r in draws.rows])
    out = out.append_column(pa.field(PHASE_COLUMN, pa.string(), nullable=False), phase_names.take(phase_of))
    out = out.append_column(
        pa.field(OCCURRENCE_COLUMN, pa.int32(), nullable=False), pa.array(occ.astype(np.int32), pa.int32())
    )

    return out, composition(corpus, spec, draws, idx, domains, drawable_tokens)
