"""The dedupe engine's settings and the LSH banding they imply.

Why a module: every other stage (sketching, banding, verification, resolution) reads the same frozen
:class:`DedupeConfig`; its :meth:`~DedupeConfig.fingerprint` decides whether stored sketches can be reused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

REQUIRED_COLUMNS = ("doc_id", "source_id", "text", "capture_time")
LSH_RECALL_AT_THRESHOLD = 0.95
KEEPER_CRITERIA = ("license", "trust_tier", "capture_time", "doc_id")
# What a chat record is compared on by default: what its people and tools said, not its system prompt.
DEFAULT_CONTENT_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"text": ("text",), "chat": ("user", "assistant", "tool", "tool_calls")}
)
_KINDS = ("text", "chat")
_META_FINGERPRINT = b"mixtrain.dedupe.fingerprint"
_META_BANDING = b"mixtrain.dedupe.banding"
_META_SKETCH_SET = b"mixtrain.dedupe.sketch_set"


def lsh_params(threshold: float, num_perm: int, recall: float = LSH_RECALL_AT_THRESHOLD) -> tuple[int, int]:
    """(bands, rows) of the most selective banding that still proposes a pair at ``threshold`` with
    probability >= ``recall``: the widest band, with as many bands as the permutations allow."""
    for rows in range(num_perm // 2, 0, -1):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


def _frozen_map(value: Mapping | None) -> Mapping:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class DedupeConfig:
    """Engine-side dedupe settings (the project's pydantic ``DedupeSpec`` maps onto this).

    ``source_threshold`` / ``domain_threshold`` override ``threshold`` per document (source first); a pair's
    threshold is the larger of its two documents'. ``max_per_cluster`` maps a source id or a domain (source
    first) to how many members of one cluster of that source/domain may stay; 1, the default, keeps only
    the keeper. The normalisation flags define the exact-duplicate key only; shingles always use
    :func:`~mixassets.engine.text_norm.dedupe_words` (prose) or ``code_tokens`` (code sources).

    ``content_fields`` says per source kind what is compared (:mod:`~mixassets.engine.dedupe.content`): ``text``
    the whole text; for chat, role names (their message contents) and ``tool_calls``. A kind left out keeps its
    default. Lines of the selected chat parts found in at least ``template_min_share`` of a source's chat
    records and in at least ``template_min_records`` of them are that source's template and are not compared.
    """

    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 5
    code_ngram: int = 7
    seed: int = 1
    lowercase: bool = True
    collapse_whitespace: bool = True
    strip_punctuation: bool = True
    strip_digits: bool = False
    source_threshold: Mapping[str, float] = field(default_factory=dict)
    domain_threshold: Mapping[str, float] = field(default_factory=dict)
    max_per_cluster: Mapping[str, int] = field(default_factory=dict)
    keeper_rule: tuple[str, ...] = KEEPER_CRITERIA
    content_fields: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_CONTENT_FIELDS))
    template_min_share: float = 0.5
    template_min_records: int = 20

    def __post_init__(self) -> None:
        fields = {**DEFAULT_CONTENT_FIELDS, **{k: tuple(v) for k, v in dict(self.content_fields).items()}}
        object.__setattr__(self, "content_fields", MappingProxyType(fields))
        self._check_content()
        for name in ("source_threshold", "domain_threshold", "max_per_cluster"):
            object.__setattr__(self, name, _frozen_map(getattr(self, name)))
        object.__setattr__(self, "keeper_rule", tuple(self.keeper_rule))
        thresholds = {"threshold": self.threshold}
        thresholds.update({f"source_threshold[{k}]": v for k, v in self.source_threshold.items()})
        thresholds.update({f"domain_threshold[{k}]": v for k, v in self.domain_threshold.items()})
        for name, value in thresholds.items():
            if not 0.0 < float(value) <= 1.0:
                raise ValueError(f"dedupe: {name} must be in (0, 1], got {value}")
        if self.ngram < 1 or self.code_ngram < 1:
            raise ValueError(f"dedupe: ngram and code_ngram must be >= 1, got {self.ngram}, {self.code_ngram}")
        if self.num_perm < 2:
            raise ValueError(f"dedupe: num_perm must be >= 2, got {self.num_perm}")
        bad_caps = {k: v for k, v in self.max_per_cluster.items() if int(v) < 1}
        if bad_caps:
            raise ValueError(f"dedupe: max_per_cluster values must be >= 1, got {bad_caps}")
        unknown = [c for c in self.keeper_rule if c not in KEEPER_CRITERIA]
        if unknown or len(set(self.keeper_rule)) != len(self.keeper_rule):
            raise ValueError(
                f"dedupe: keeper_rule must list distinct criteria from {KEEPER_CRITERIA}, got {self.keeper_rule}"
            )

    def _check_content(self) -> None:
        unknown = sorted(set(self.content_fields) - set(_KINDS))
        if unknown:
            raise ValueError(f"dedupe: content_fields names unknown source kind(s) {unknown}; kinds are {_KINDS}")
        if tuple(self.content_fields["text"]) != ("text",):
            raise ValueError("dedupe: text documents are compared whole; content_fields.text must be ['text']")
        chat = self.content_fields["chat"]
        if not chat or any(not isinstance(f, str) or not f for f in chat):
            raise ValueError(f"dedupe: content_fields.chat must name roles, 'tool_calls' or 'text'; got {list(chat)}")
        if not 0.0 < float(self.template_min_share) <= 1.0:
            raise ValueError(f"dedupe: template_min_share must be in (0, 1], got {self.template_min_share}")
        if int(self.template_min_records) < 2:
            raise ValueError(f"dedupe: template_min_records must be >= 2, got {self.template_min_records}")

    @property
    def banding(self) -> tuple[int, int]:
        """(bands, rows) for the lowest threshold any pair can have, so every pair gets the recall target."""
        lowest = min([self.threshold, *self.source_threshold.values(), *self.domain_threshold.values()])
        return lsh_params(lowest, self.num_perm)

    def fingerprint(self) -> str:
        """The settings a sketch depends on; sketches with another fingerprint cannot be compared."""
        return json.dumps(
            {
                "version": 2,
                "num_perm": self.num_perm,
                "seed": self.seed,
                "ngram": self.ngram,
                "code_ngram": self.code_ngram,
                "lowercase": self.lowercase,
                "collapse_whitespace": self.collapse_whitespace,
                "strip_punctuation": self.strip_punctuation,
                "strip_digits": self.strip_digits,
                "content_fields": {k: list(v) for k, v in sorted(self.content_fields.items())},
                "template_min_share": float(self.template_min_share),
                "template_min_records": int(self.template_min_records),
            },
            sort_keys=True,
        )

    def threshold_for(self, source_id: str, domain: str | None) -> float:
        if source_id in self.source_threshold:
            return float(self.source_threshold[source_id])
        if domain is not None and domain in self.domain_threshold:
            return float(self.domain_threshold[domain])
        return float(self.threshold)

    def cap_for(self, source_id: str, domain: str | None) -> tuple[int, str, str]:
        """(cap, "source"|"domain", value) for a document; cap 1 (keeper only) when no entry applies."""
        if source_id in self.max_per_cluster:
            return int(self.max_per_cluster[source_id]), "source", source_id
        if domain is not None and domain in self.max_per_cluster:
            return int(self.max_per_cluster[domain]), "domain", domain
        return 1, "source", source_id
