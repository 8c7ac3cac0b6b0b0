"""The Dagster conventions every asset follows, applied once where the code location is assembled.

Kinds, owners, tags, code references, the lineage group of shared inputs and UI-safe descriptions are set
here rather than in each ``@asset`` decorator: the asset modules stay about what they compute, and a new asset
gets the same treatment without anyone remembering a checklist.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from dagster import (
    AnchorBasedFilePathMapping,
    AssetsDefinition,
    AssetSpec,
    CodeReferencesMetadataValue,
    Definitions,
    LocalFileCodeReference,
    SourceAsset,
    link_code_references_to_git,
    with_source_code_references,
)

from mixtrain.config.ui import DagsterSection
from mixtrain.dagster_internals import as_assets_definition, with_assets

CODE_REFERENCES = "dagster/code_references"
REPO_ROOT = Path(__file__).resolve().parents[1]

# Assets that every stage reads but no stage builds from project data: in the stage that uses them they pull
# that stage to the left of the lineage (base_model feeds the mixture's tokenizer, eval_registry the screen),
# so they sit in a group of their own that lays out in the first column, next to the sources.
INPUTS_GROUP = "inputs"
SHARED_INPUTS = frozenset({"base_model", "base_model_spec", "eval_registry", "eval_spec"})

# Model assets are a JSON pointer to a versioned directory of safetensors written by transformers / peft.
MODEL_ASSETS = frozenset({"base_model", "sft_adapter", "task_adapter", "distilled_student", "student_sft_baseline"})
MODEL_KINDS = frozenset({"pytorch", "huggingface", "safetensors"})
SPEC_KINDS = {"review_sheets": {"csv"}}  # observed specs are YAML unless named here
IO_MANAGER_KINDS = {"io_manager": {"parquet"}, "json_io_manager": {"json"}}

_ANGLED = re.compile(r"<([^<>\n]*)>")


def ui_description(text: str | None) -> str | None:
    """A description as the UI should show it: Dagster renders descriptions as markdown with HTML, where
    ``reviews/<source>/*.csv`` loses ``<source>`` as an unknown tag. Angle brackets outside code spans become
    entities; code spans (between backticks) are shown verbatim by markdown already."""
    if not text:
        return text
    pieces = text.split("`")
    for i in range(0, len(pieces), 2):  # even pieces are outside backticks
        pieces[i] = _ANGLED.sub(r"&lt;\1&gt;", pieces[i])
    return "`".join(pieces)


def _kinds(name: str, io_manager: str | None, observed: bool) -> set[str]:
    if name in MODEL_ASSETS:
        return set(MODEL_KINDS)
    if observed:
        return set(SPEC_KINDS.get(name, {"yaml"}))
    kinds = IO_MANAGER_KINDS.get(io_manager or "")
    if kinds is None:
        raise ValueError(f"asset {name} uses IO manager {io_manager!r}, which has no kind in mixtrain.conventions")
    return set(kinds)


def _spec_mapper(package: str, section: DagsterSection, io_managers: Mapping[str, str | None], observed: bool):
    def apply(spec: AssetSpec) -> AssetSpec:
        name = spec.key.to_user_string()
        group = INPUTS_GROUP if name in SHARED_INPUTS else spec.group_name
        spec = spec.replace_attributes(group_name=group, description=ui_description(spec.description))
        tags = {"package": package, "stage": group or "default", **section.tags}
        kinds = _kinds(spec.key.path[-1], io_managers.get(name), observed) - set(spec.kinds)
        return spec.merge_attributes(owners=[o for o in section.owners if o not in spec.owners], tags=tags, kinds=kinds)

    return apply


def _observe_fn_reference(source_asset: SourceAsset) -> dict[str, CodeReferencesMetadataValue]:
    """A code reference to the function that observes a spec (what ``with_source_code_references`` does for
    materializable assets, which it skips for observable sources)."""
    fn = inspect.unwrap(source_asset.observe_fn)  # type: ignore[arg-type]
    path = inspect.getsourcefile(fn)
    if path is None:
        return {}
    ref = LocalFileCodeReference(file_path=str(Path(path).resolve()), line_number=inspect.getsourcelines(fn)[1])
    return {CODE_REFERENCES: CodeReferencesMetadataValue(code_references=[ref])}


def _conform(asset: object, package: str, section: DagsterSection) -> object:
    if isinstance(asset, SourceAsset):
        if asset.observe_fn is None:
            raise ValueError(f"{asset.key.to_user_string()}: an unobserved source asset has no code to reference")
        refs = _observe_fn_reference(asset)
        mapped = as_assets_definition(asset).map_asset_specs(lambda s: s.merge_attributes(metadata=refs))
        io_managers: dict[str, str | None] = {}
        observed = True
    elif isinstance(asset, AssetsDefinition):
        mapped = with_source_code_references([asset])[0]
        io_managers = {k.to_user_string(): asset.get_io_manager_key_for_asset_key(k) for k in asset.keys}
        observed = not asset.is_materializable
    else:
        raise TypeError(f"mixtrain.conventions cannot map {type(asset).__name__} {asset!r}")
    return mapped.map_asset_specs(_spec_mapper(package, section, io_managers, observed))  # type: ignore[union-attr]


def conform(defs: Definitions, package: str, section: DagsterSection | None = None) -> Definitions:
    """``defs`` of one package with every asset given its kinds, owners, tags (package, stage and the
    project's own), a code reference (a link into ``git_url`` when the project names one), its lineage group and
    a description the UI renders whole."""
    section = section or DagsterSection()
    assets = [_conform(a, package, section) for a in defs.assets or []]
    if section.git_url:  # the checkout's root is the repository's root (this file lives in <root>/mixtrain/)
        mapping = AnchorBasedFilePathMapping(local_file_anchor=REPO_ROOT, file_anchor_path_in_repository="")
        assets = list(link_code_references_to_git(assets, section.git_url, section.git_branch, mapping))
    return with_assets(defs, assets)


def conform_all(packages: Sequence[tuple[str, Definitions]], section: DagsterSection | None = None) -> Definitions:
    return Definitions.merge(*(conform(defs, name, section) for name, defs in packages))
