"""The gating rules, one module per concern, and the choice of which apply to a source.

Order matters: the runner holds a document at the first rule that blocks it, and later rules only see the
documents still standing. Record shape and rights come first (nothing else is worth computing for data we
may not use), then encoding, then boilerplate stripping, so that the length rules, the in-source exact
duplicate check and every quality rule judge the stripped text; quality rules before language and safety
(cheap before expensive); PII last, because redaction only matters for documents that are kept. Rules from
outside the package (:mod:`~mixassets.engine.rules.plugins`: installed entry points, a source's
``gating.extra_rules``) run after the built-in ones, before PII.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from mixassets.engine.readers import CHAT_JOINER
from mixassets.engine.rules.base import (
    BLOCKING_ACTIONS,
    Action,
    DocOutcomes,
    GateContext,
    Outcome,
    Rule,
    TextRule,
    chat_contents,
)
from mixassets.engine.rules.boilerplate import RepeatedLineRule
from mixassets.engine.rules.encoding import UndecodableRule
from mixassets.engine.rules.exact_duplicates import ExactDedupeRule, normalize_for_dedupe
from mixassets.engine.rules.language import LanguageMismatchRule
from mixassets.engine.rules.length import EmptyRule, TooLongRule, TooShortRule
from mixassets.engine.rules.pii import PiiRule, pii_rule_id
from mixassets.engine.rules.plugins import check_ids, configured_rules, installed, plugin_key
from mixassets.engine.rules.quality_code import CODE_RULES
from mixassets.engine.rules.quality_prose import PROSE_RULES
from mixassets.engine.rules.record import MalformedChatRule
from mixassets.engine.rules.rights import ForbiddenTagRule, UnknownLicenseRule
from mixassets.engine.rules.safety import SafetyClassifierRule, SafetyLexiconRule
from mixtrain.config.data import SourceSpec

__all__ = [
    "BLOCKING_ACTIONS",
    "CHAT_JOINER",
    "DEFAULT_RULES",
    "RULES_VERSION",
    "Action",
    "DocOutcomes",
    "GateContext",
    "Outcome",
    "Rule",
    "TextRule",
    "all_rules",
    "chat_contents",
    "normalize_for_dedupe",
    "pii_rule_id",
    "rule_set_for",
    "rules_for",
    "rules_version",
]

# Every rule, in the order the runner applies them; ``rules_for`` picks a source's subset.
DEFAULT_RULES: Sequence[Rule] = (
    MalformedChatRule(),
    UnknownLicenseRule(),
    ForbiddenTagRule(),
    UndecodableRule(),
    RepeatedLineRule(),
    EmptyRule(),
    TooShortRule(),
    TooLongRule(),
    ExactDedupeRule(),
    *PROSE_RULES,
    *CODE_RULES,
    LanguageMismatchRule(),
    SafetyLexiconRule(),
    SafetyClassifierRule(),
    PiiRule(),
)


def _rules_version(rules: Sequence[Rule], plugins: Sequence[Rule] = ()) -> str:
    payload = "\n".join(sorted([*(f"{r.id}@{r.version}" for r in rules), *(plugin_key(r) for r in plugins)]))
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


_BUILT_IN = [(r, "a built-in rule") for r in DEFAULT_RULES]


def rules_version() -> str:
    """The gating asset's code version: bumping any rule's version, or installing, removing or changing a rule of
    the ``mixtrain.gating_rules`` entry points, makes every gated partition stale. (A source's own
    ``gating.extra_rules`` are in its gating fingerprint instead: changing one regates that source only.) An
    installed rule that reuses an id fails here, when the code location loads."""
    plugins = installed()
    check_ids([*_BUILT_IN, *plugins])
    return _rules_version(DEFAULT_RULES, [r for r, _ in plugins])


def __getattr__(name: str) -> str:
    # RULES_VERSION is worked out when first read, not when this package is imported: an installed rule's module
    # imports this package, and may well be imported first.
    if name == "RULES_VERSION":
        return rules_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def rule_set_for(spec: SourceSpec) -> str:
    """Either "prose" or "code": the source's ``gating.rule_set``, with "auto" meaning code for domain "code"."""
    chosen = spec.gating.rule_set
    if chosen == "auto":
        return "code" if spec.domain == "code" else "prose"
    return chosen


def _is_known(rule_id: str, rules: Sequence[Rule]) -> bool:
    # A finer id ("pii.email", "safety.lexicon.weapons") is known when its family is a rule.
    return any(rule_id == r.id or rule_id.startswith(r.id + ".") for r in rules)


def all_rules(spec: SourceSpec) -> list[Rule]:
    """Every rule that could apply to ``spec``, in the runner's order: the built-in ones, the installed ones and the
    source's ``gating.extra_rules`` (checked: see :mod:`~mixassets.engine.rules.plugins`), PII last."""
    plugins = [*installed(), *configured_rules(spec)]
    if plugins:
        check_ids([*_BUILT_IN, *plugins])
    last = next(i for i, r in enumerate(DEFAULT_RULES) if isinstance(r, PiiRule))
    return [*DEFAULT_RULES[:last], *(r for r, _ in plugins), *DEFAULT_RULES[last:]]


def rules_for(spec: SourceSpec) -> list[Rule]:
    """The rules that apply to ``spec``, in order: the quality rules of its rule set (the language check only
    with prose rules) and the plugin rules of its scope, without the rules named in ``gating.disabled_rules``.

    A disabled id that names no rule is an error: a typo there would silently leave a rule on. Finer ids
    ("pii.ip_address") are accepted here and honoured by the runner, which drops those outcomes.
    """
    rules = all_rules(spec)
    unknown = [r for r in spec.gating.disabled_rules if not _is_known(r, rules)]
    if unknown:
        known = sorted(r.id for r in rules)
        raise ValueError(
            f"source '{spec.id}': field 'gating.disabled_rules': unknown rule ids {unknown} (known: {known})"
        )
    scope = rule_set_for(spec)
    disabled = set(spec.gating.disabled_rules)
    return [r for r in rules if r.scope in ("any", scope) and r.id not in disabled]
