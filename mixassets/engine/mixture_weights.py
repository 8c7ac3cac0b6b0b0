"""The arithmetic of a mixture's allocation: seeded per-source orders, length-bucket weights, temperature
shares, largest-remainder apportioning and the phases of a spec.

Why a module: these are pure functions of the spec and of token counts, independent of any table; the
sampler (:mod:`mixassets.engine.mixture`) draws documents by them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mixassets.engine.text_norm import stable_hash64
from mixtrain.config.data import LengthBucket, MixtureSpec

DEFAULT_PHASE = "all"  # the name of the single phase of a spec without phases


def source_rng(seed: int, source_id: str) -> np.random.Generator:
    """The sampling order generator of one source; independent of every other source."""
    return np.random.default_rng([seed, stable_hash64(source_id)])


def doc_ids_digest(doc_ids: Iterable[str]) -> str:
    """Digest of a set of document ids: two mixtures with equal digests hold the same documents."""
    h = hashlib.sha256()
    for d in sorted(set(doc_ids)):
        h.update(d.encode("utf-8") + b"\n")
    return h.hexdigest()[:16]


def length_weights(tokens: np.ndarray, buckets: Sequence[LengthBucket]) -> np.ndarray:
    """Draw weight of each document: its first bucket whose bound it fits under; 1 beyond every bucket."""
    weights = np.ones(len(tokens), dtype=np.float64)
    assigned = np.zeros(len(tokens), dtype=bool)
    for b in buckets:
        inside = ~assigned if b.max_tokens is None else ~assigned & (tokens <= b.max_tokens)
        weights[inside] = b.weight
        assigned |= inside
    return weights


def weighted_order(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions in Efraimidis-Spirakis order: a weighted sample without replacement of every item.

    ``log(1 - u) / w`` is the log of the classic key ``u^(1/w)`` (monotone, no underflow); ties keep the
    canonical order. All weights must be > 0.
    """
    keys = np.log1p(-rng.random(len(weights))) / weights
    return np.argsort(-keys, kind="stable")


def apportion(total: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Whole units of ``total`` in proportion to ``weights`` (largest remainder); they sum to ``total``.

    Remainders are handed out largest first, ties by key, so the split is reproducible. Keys with weight
    <= 0 get 0; with no positive weight everything is 0.
    """
    positive = {k: float(w) for k, w in weights.items() if w > 0}
    whole = sum(positive.values())
    out = dict.fromkeys(weights, 0)
    if total <= 0 or whole <= 0:
        return out
    exact = {k: total * w / whole for k, w in positive.items()}
    for k, x in exact.items():
        out[k] = math.floor(x)
    left = total - sum(out.values())
    for k in sorted(positive, key=lambda k: (-(exact[k] - out[k]), k))[:left]:
        out[k] += 1
    return out


def sampling_weights(
    weights: Mapping[str, float], sizes: Mapping[str, int], temperature: float | None
) -> dict[str, float]:
    """Unnormalised ``w · n^(1/T)``, computed in log space (``n^(1/T)`` overflows a float for small T) and
    scaled so the largest is 1; ``w`` alone without a temperature."""
    if temperature is None:
        return {k: float(w) for k, w in weights.items()}
    logs = {k: math.log(w) + math.log(sizes[k]) / temperature for k, w in weights.items() if w > 0 and sizes[k] > 0}
    top = max(logs.values(), default=0.0)
    return {k: math.exp(logs[k] - top) if k in logs else 0.0 for k in weights}


@dataclass(frozen=True)
class _Phase:
    name: str
    share: float
    weights: Mapping[str, float]
    domain_weights: Mapping[str, float]


def _phases(spec: MixtureSpec) -> list[_Phase]:
    if not spec.phases:
        return [_Phase(DEFAULT_PHASE, 1.0, spec.weights, spec.domain_weights)]
    return [
        _Phase(
            p.name,
            p.share,
            spec.weights if p.weights is None else p.weights,
            spec.domain_weights if p.domain_weights is None else p.domain_weights,
        )
        for p in spec.phases
    ]


def _combined_weight(sid: str, domain: str, phase: _Phase) -> float | None:
    """Own weight times domain weight, a missing factor counting as 1; None when the source is in neither map."""
    own, dom = phase.weights.get(sid), phase.domain_weights.get(domain)
    if own is None and dom is None:
        return None
    return (1.0 if own is None else float(own)) * (1.0 if dom is None else float(dom))
