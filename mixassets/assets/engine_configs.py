"""The engine configs of the cross-source stages, from the project's ``dedupe`` and ``screen`` sections.

Each stage has its own spec fingerprint, so a screen threshold edit reruns the screen and what follows, not the
dedupe (which reads every gated partition).
"""

from __future__ import annotations

from typing import NamedTuple

from mixassets.engine.contamination import DEFAULT_FIELD_KINDS, ScreenConfig
from mixassets.engine.contamination_embed import model_dir, model_identity
from mixassets.engine.dedupe import DedupeConfig
from mixtrain.identity import spec_hash
from mixtrain.project import Project


class DedupeSetup(NamedTuple):
    """What the dedupe engine is given besides the documents."""

    config: DedupeConfig
    trust: dict[str, int]  # trust tier per source, which the keeper rule ranks by
    code_sources: frozenset[str]  # sources shingled as code


def dedupe_config(proj: Project) -> DedupeSetup:
    """The dedupe engine's config, the trust tiers the keeper rule ranks by, and the sources shingled as code."""
    spec = proj.spec.dedupe
    fields = spec.model_dump(exclude={"code_domains", "keeper_rule"})
    config = DedupeConfig(**fields, keeper_rule=tuple(spec.keeper_rule))
    trust = {sid: s.trust_tier for sid, s in proj.sources.items()}
    code = frozenset(
        sid for sid, s in proj.sources.items() if s.domain in spec.code_domains or s.gating.rule_set == "code"
    )
    return DedupeSetup(config, trust, code)


def dedupe_fingerprint(proj: Project) -> str:
    _, trust, code = dedupe_config(proj)
    return spec_hash({"dedupe": proj.spec.dedupe.model_dump(mode="json"), "trust_tiers": trust, "code": sorted(code)})


def semantic_enabled(proj: Project) -> bool:
    """Whether the screen runs the semantic method: ``on`` requires the model (a clear error when it is
    missing, rather than a screen that silently checks less), ``auto`` uses it when it is installed."""
    spec = proj.spec.screen
    if spec.semantic == "on":
        model_dir(spec.semantic_model)  # raises FileNotFoundError naming what is missing
        return True
    if spec.semantic == "auto":
        try:
            model_dir(spec.semantic_model)
        except FileNotFoundError:
            return False
        return True
    return False


def screen_config(proj: Project) -> ScreenConfig:
    spec = proj.spec.screen
    same_names = spec.model_dump(
        include={
            "containment_n",
            "containment_threshold",
            "jaccard_threshold",
            "fuzzy_min_shingles",
            "code_n",
            "code_min_tokens",
            "code_containment_n",
            "code_containment_threshold",
            "code_containment_min_grams",
            "code_body_min_tokens",
            "code_lines_min_tokens",
            "code_lines_min_lines",
            "code_lines_min_weight",
            "code_lines_threshold",
            "semantic_threshold",
            "semantic_min_shared",
            "semantic_model",
            "shared_ngram_share",
            "shared_ngram_min_items",
            "stem_answer_window",
        }
    )
    field_kinds = {**DEFAULT_FIELD_KINDS, **spec.field_kinds}
    methods = (*spec.methods, "semantic") if semantic_enabled(proj) else tuple(spec.methods)
    return ScreenConfig(n=spec.ngram, methods=methods, field_kinds=field_kinds, **same_names)


def screen_fingerprint(proj: Project) -> str:
    """The screen settings, plus, when the semantic method runs, the identity of the model's weights: a
    different model finds different paraphrases, so it must rerun the screen like a threshold edit does."""
    spec = proj.spec.screen
    if not semantic_enabled(proj):
        return spec_hash({"screen": spec.model_dump(mode="json"), "semantic_model": None})
    return spec_hash({"screen": spec.model_dump(mode="json"), "semantic_model": model_identity(spec.semantic_model)})
