"""Gating rules from outside the package: installed ones (entry point group ``mixtrain.gating_rules``, applied to
every source like the built-in rules) and a source's own (``gating.extra_rules``, import paths in its YAML).

Either way the object named is a :class:`Rule` instance, a ``Rule`` subclass built without arguments, or a factory
called without arguments that returns a ``Rule``. Whatever is loaded is checked here, before a document is gated,
so a plugin that is not a rule, lacks an id or a version, or reuses a rule's id fails with a message naming where
it was registered, instead of failing inside the runner or, worse, logging its decisions under another rule's id.

A plugin rule runs after every built-in rule but PII, which stays last (redaction only matters for documents that
are kept): it sees the stripped text, and documents the built-in rules held never reach it. Its id and version
(with a hash of its module's code) are part of the gate's version, so adding, removing or changing one regates.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Sequence
from typing import Any, get_args

from mixassets.engine.rules.base import Rule, Scope
from mixtrain.config.data import GATING_RULES_GROUP, SourceSpec
from mixtrain.config.plugins import PluginError, code_sha256, describe, import_object, load_entry_points

__all__ = ["PluginError", "as_rule", "check_ids", "configured_rules", "installed", "plugin_key"]

# Lower-case dotted words, as the built-in ids are ("quality.too_short", "safety.lexicon"): the decision log,
# gating.disabled_rules and the per-rule counts all key on it.
RULE_ID = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_\-]+)*$")
_KIND = "a gating Rule (a Rule instance, a Rule subclass, or a factory returning a Rule)"


def _build(obj: Any, where: str) -> Rule:
    if isinstance(obj, Rule):
        return obj
    if inspect.isclass(obj):
        if not issubclass(obj, Rule):
            raise PluginError(f"{where}: {describe(obj)} is not a subclass of mixassets.engine.rules.Rule")
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(obj.__abstractmethods__))
            raise PluginError(f"{where}: {describe(obj)} is abstract (it does not define {missing})")
        made: Any = obj
    elif callable(obj):
        made = obj
    else:
        raise PluginError(f"{where}: {describe(obj)} is not {_KIND}")
    try:
        built = made()
    except Exception as e:
        raise PluginError(f"{where}: calling {describe(obj)} without arguments failed: {type(e).__name__}: {e}") from e
    if not isinstance(built, Rule):
        raise PluginError(f"{where}: {describe(obj)} returned {describe(built)}, not a Rule")
    return built


def as_rule(obj: Any, where: str) -> Rule:
    """The rule ``obj`` stands for, checked: an id the decision log can key on, an int version, a known scope."""
    rule = _build(obj, where)
    rule_id, version = getattr(rule, "id", None), getattr(rule, "version", None)
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        raise PluginError(
            f"{where}: the rule's id must be lower-case dotted words like 'custom.no_lorem', got {rule_id!r}"
        )
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise PluginError(f"{where}: rule '{rule_id}' needs an int version >= 0 (bump it when decisions change)")
    if rule.scope not in get_args(Scope):
        raise PluginError(f"{where}: rule '{rule_id}' has scope {rule.scope!r}; expected one of {get_args(Scope)}")
    return rule


def check_ids(named: Sequence[tuple[Rule, str]]) -> None:
    """No two rules with one id, and none inside another's family ("pii.custom" would be switched off with
    ``pii`` and counted as a PII hit), so every decision logged names exactly one rule."""
    seen: dict[str, str] = {}
    for rule, where in named:
        if rule.id in seen:
            raise PluginError(f"{where}: duplicate rule id '{rule.id}' (also {seen[rule.id]})")
        for other, other_where in seen.items():
            if rule.id.startswith(other + ".") or other.startswith(rule.id + "."):
                raise PluginError(
                    f"{where}: rule id '{rule.id}' overlaps rule '{other}' ({other_where}): one would be disabled "
                    "and counted with the other; pick an id outside that family"
                )
        seen[rule.id] = where


@functools.cache
def installed() -> tuple[tuple[Rule, str], ...]:
    """The rules of the ``mixtrain.gating_rules`` entry points, each with its entry point, in name order (loaded
    once per process; ``installed.cache_clear()`` looks again)."""
    return tuple((as_rule(obj, where), where) for _, where, obj in load_entry_points(GATING_RULES_GROUP))


def configured_rules(spec: SourceSpec) -> list[tuple[Rule, str]]:
    """The source's ``gating.extra_rules``, each with where it was named."""
    out = []
    for i, path in enumerate(spec.gating.extra_rules):
        where = f"source '{spec.id}': field 'gating.extra_rules.{i}' ('{path}')"
        try:
            obj = import_object(path)
        except PluginError as e:
            raise PluginError(f"{where}: {e}") from None
        out.append((as_rule(obj, where), where))
    return out


def plugin_key(rule: Rule) -> str:
    """What a plugin rule adds to a rules version: id, version and its module's code (a built-in rule's code
    ships with the package, whose version the run records; a plugin's may change under the same version)."""
    return f"{rule.id}@{rule.version}#{code_sha256(rule) or '-'}"
