"""The composition stats of a sampled mixture: per source, domain, language and phase, and the totals.

Why a module: the stats are the mixture's report (persisted as JSON beside the table); they are computed
from what the sampler drew (:mod:`mixassets.engine.mixture`) and never change the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from mixassets.engine.mixture_weights import doc_ids_digest
from mixtrain.config.data import MixtureSpec

if TYPE_CHECKING:
    from mixassets.engine.mixture import _Corpus, _Draws

# Counts that add up across sources (per domain, per language, totals); shares are derived afterwards.
_ADDITIVE = (
    "available_docs",
    "available_tokens",
    "excluded_by_policy",
    "excluded_by_length",
    "excluded_by_weight",
    "docs",
    "unique_docs",
    "repeated_docs",
    "tokens",
)
_TARGETED = ("target_tokens", "shortfall_tokens")


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def _sum_by(codes: np.ndarray, values: np.ndarray, n: int) -> list[int]:
    """Integer sums of ``values`` per code (bincount's weights would go through float64)."""
    out = np.zeros(n, dtype=np.int64)
    np.add.at(out, codes, values)
    return out.tolist()


def _derive(group: dict[str, Any], mixture_tokens: int, available_tokens: int, budget: int) -> dict[str, Any]:
    group["repeat_factor"] = _share(group["docs"], group["unique_docs"])
    group["effective_weight"] = _share(group["tokens"], mixture_tokens)
    group["raw_share"] = _share(group["available_tokens"], available_tokens)
    if "target_tokens" in group:
        group["target_share"] = _share(group["target_tokens"], budget)
    return group


def _group(per_source: Mapping[str, Mapping[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for s in per_source.values():
        g = groups.setdefault(s[key], dict.fromkeys((*_ADDITIVE, *_TARGETED), 0))
        for k in g:
            g[k] += s[k]
    return dict(sorted(groups.items()))


def _source_stats(
    sid: str,
    corpus: _Corpus,
    spec: MixtureSpec,
    draws: _Draws,
    times_picked: np.ndarray,
    domain: str,
    drawable_tokens: int,
) -> dict[str, Any]:
    rows = corpus.rows(sid)
    tokens, ok = corpus.tokens[rows], corpus.ok[rows]
    picked = times_picked[rows]
    in_phases = [ph["sources"][sid] for ph in draws.phases.values() if sid in ph["sources"]]
    n_allowed, n_drawable = int(ok.sum()), int(corpus.drawable[rows].sum())
    docs, unique, got = int(picked.sum()), int((picked > 0).sum()), int((picked * tokens).sum())
    stop = in_phases[-1]["stop_reason"] if in_phases else "weight_zero" if sid in draws.listed else "not_in_weights"
    floor = spec.min_tokens.get(sid)
    return {
        "domain": domain,
        "weight": float(spec.weights.get(sid, 0.0)),
        "domain_weight": spec.domain_weights.get(domain),
        "sampling_share": draws.sampling_share[sid],
        "available_docs": n_allowed,
        "available_tokens": int(tokens[ok].sum()),
        "drawable_tokens": drawable_tokens,
        "excluded_by_policy": int(rows.size - n_allowed),
        "excluded_by_length": n_allowed - n_drawable,
        "excluded_by_weight": 0 if in_phases else n_drawable,
        "max_docs": spec.max_docs.get(sid),
        "max_tokens": spec.max_tokens.get(sid),
        "min_tokens": floor,
        "max_epochs": spec.max_epochs.get(sid, 1),
        "target_tokens": sum(ph["target_tokens"] for ph in in_phases),
        "docs": docs,
        "unique_docs": unique,
        "repeated_docs": docs - unique,
        "tokens": got,
        "shortfall_tokens": sum(ph["shortfall_tokens"] for ph in in_phases),
        "floor_shortfall_tokens": max(0, floor - got) if floor else 0,
        "stop_reason": stop,
    }


def _languages(
    corpus: _Corpus, times_picked: np.ndarray, per_source: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per-document language counts; no targets, because targets are set per source."""
    k = len(corpus.language_names)
    ok = corpus.ok
    lang, tokens, picked = corpus.language[ok], corpus.tokens[ok], times_picked[ok].astype(np.int64)
    unweighted = np.array([bool(per_source[s]["excluded_by_weight"]) for s in corpus.source_names], dtype=bool)
    drawable = corpus.drawable[ok]
    sums = {
        "available_docs": np.bincount(lang, minlength=k).tolist(),
        "available_tokens": _sum_by(lang, tokens, k),
        "excluded_by_policy": np.bincount(corpus.language[~ok], minlength=k).tolist(),
        "excluded_by_length": np.bincount(lang[~drawable], minlength=k).tolist(),
        "excluded_by_weight": np.bincount(lang[drawable & unweighted[corpus.source[ok]]], minlength=k).tolist(),
        "docs": _sum_by(lang, picked, k),
        "unique_docs": np.bincount(lang[picked > 0], minlength=k).tolist(),
        "repeated_docs": _sum_by(lang, np.maximum(picked - 1, 0), k),
        "tokens": _sum_by(lang, picked * tokens, k),
    }
    return {name: {key: sums[key][i] for key in _ADDITIVE} for i, name in enumerate(corpus.language_names)}


def composition(
    corpus: _Corpus,
    spec: MixtureSpec,
    draws: _Draws,
    idx: np.ndarray,
    domains: Mapping[str, str],
    drawable_tokens: Mapping[str, int],
) -> dict[str, Any]:
    """The stats of the occurrences ``idx`` (input rows, in table order) drawn by ``draws``; JSON-ready.

    Also appends the shortfall and unmet-floor warnings of each source to ``draws.warnings``.
    """
    source_ids = list(domains)
    times_picked = np.bincount(idx, minlength=len(corpus.tokens))
    mixture_tokens = int(corpus.tokens[idx].sum())
    total_available = int(corpus.tokens[corpus.ok].sum())
    per_source: dict[str, dict[str, Any]] = {}
    for sid in source_ids:
        s = _source_stats(sid, corpus, spec, draws, times_picked, domains[sid], drawable_tokens[sid])
        why = f"({s['stop_reason']})"
        if s["shortfall_tokens"]:
            draws.warnings.append(f"source '{sid}': {s['tokens']} of {s['target_tokens']} target tokens {why}")
        if s["floor_shortfall_tokens"]:
            draws.warnings.append(f"source '{sid}': min_tokens {s['min_tokens']} not met, got {s['tokens']} {why}")
        per_source[sid] = _derive(s, mixture_tokens, total_available, spec.token_budget)

    def derive_all(groups: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {k: _derive(g, mixture_tokens, total_available, spec.token_budget) for k, g in groups.items()}

    for ph in draws.phases.values():
        ph["effective_weight"] = _share(ph["tokens"], mixture_tokens)
    unallocated = sum(ph["unallocated_tokens"] for ph in draws.phases.values())
    totals: dict[str, Any] = {k: sum(s[k] for s in per_source.values()) for k in (*_ADDITIVE, *_TARGETED)}
    totals["floor_shortfall_tokens"] = sum(s["floor_shortfall_tokens"] for s in per_source.values())
    totals["unallocated_tokens"] = unallocated
    totals["shortfall_tokens"] += unallocated
    totals["token_budget"] = spec.token_budget
    totals["repeat_factor"] = _share(totals["docs"], totals["unique_docs"])
    return {
        "mixture_id": spec.id,
        "seed": spec.seed,
        "temperature": spec.temperature,
        "doc_ids_digest": doc_ids_digest(corpus.doc_ids.take(np.unique(idx)).to_pylist()),
        "sources": per_source,
        "domains": derive_all(_group(per_source, "domain")),
        "languages": derive_all(_languages(corpus, times_picked, per_source)),
        "phases": draws.phases,
        "totals": totals,
        "warnings": draws.warnings,
    }
