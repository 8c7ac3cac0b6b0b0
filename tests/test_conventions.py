"""Dagster conventions on every asset of the code location (mixtrain.conventions, mixtrain.jobs) and the metadata
every table materialization carries (the table IO manager)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from dagster import AssetKey, Definitions, asset, materialize

from mixtrain.config.ui import DagsterSection
from mixtrain.conventions import INPUTS_GROUP, conform, ui_description
from mixtrain.instance import activate, load_definitions
from mixtrain.jobs import STAGE_JOBS
from mixtrain.project import ProjectError, load_project
from mixtrain.resources import project_resources
from mixtrain.runner import stage_job
from tests.conftest import DEMO

# The collapsed lineage must read left to right in this order: every edge between groups goes forward.
GROUP_ORDER = [INPUTS_GROUP, "sources", "corpus", "curation", "mixture", "training", "evaluation"]
PACKAGES = {"mixassets", "training_assets", "eval_assets"}


def edit_yaml(path: Path, change: Callable[[dict], object]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """The code location over the demo project's config (no data: loading definitions reads only the YAML)."""
    root = tmp_path_factory.mktemp("conventions")
    shutil.copy(DEMO / "mixtrain.yaml", root / "mixtrain.yaml")
    shutil.copytree(DEMO / "sources", root / "sources")
    edit_yaml(root / "mixtrain.yaml", lambda d: d.update(dagster={"owners": ["data@example.com", "team:ml"]}))
    defs = load_definitions(activate(root))
    return defs, defs.resolve_asset_graph()


def test_every_asset_has_kinds_owners_tags_and_a_code_reference(graph):
    _, g = graph
    keys = g.get_all_asset_keys()
    assert len(keys) > 40
    for key in keys:
        node = g.get(key)
        name = key.to_user_string()
        assert 1 <= len(node.kinds) <= 3, name
        assert node.owners == ["data@example.com", "team:ml"], name
        assert node.tags["package"] in PACKAGES and node.tags["stage"] == node.group_name, name
        refs = node.metadata["dagster/code_references"].code_references
        assert refs and refs[0].file_path.endswith(".py") and refs[0].line_number > 0, name
        assert not re.search(r"<[A-Za-z/]", "".join((node.description or "").split("`")[::2])), name


def test_kinds_follow_what_is_stored(graph):
    _, g = graph
    kinds = {k.to_user_string(): g.get(k).kinds for k in g.get_all_asset_keys()}
    assert kinds["gated_documents"] == {"parquet"}
    assert kinds["mixture_manifest"] == {"json"}
    assert kinds["sft_adapter"] >= {"pytorch", "huggingface"}
    assert kinds["source_spec"] == {"yaml"} and kinds["review_sheets"] == {"csv"}


def test_groups_order_the_lineage_from_sources_to_evaluation(graph):
    _, g = graph
    for key in g.get_all_asset_keys():
        child = g.get(key).group_name
        for parent in g.get(key).parent_keys:
            up = g.get(parent).group_name
            assert GROUP_ORDER.index(up) <= GROUP_ORDER.index(child), f"{parent.to_user_string()} -> {key}"
    assert g.get(AssetKey("base_model")).group_name == INPUTS_GROUP


def test_stage_jobs_resolve_and_the_runner_picks_them(graph):
    defs, _ = graph
    for name in STAGE_JOBS:
        assert defs.resolve_job_def(name).asset_layer.selected_asset_keys, name
    assert stage_job(defs, {AssetKey("mixture"), AssetKey("heldout_text")}) == "data_refresh"
    assert stage_job(defs, {AssetKey("sft_adapter")}) == "train"
    assert stage_job(defs, {AssetKey("eval_report"), AssetKey("eval_comparison")}) == "evaluate"
    assert stage_job(defs, {AssetKey("mixture"), AssetKey("sft_adapter")}) is None  # spans two stages


def test_descriptions_escape_angle_brackets_outside_code():
    assert ui_description("reviews/<source>/*.csv") == "reviews/&lt;source&gt;/*.csv"
    assert ui_description("see `a/<id>.yaml` or <id>") == "see `a/<id>.yaml` or &lt;id&gt;"
    assert ui_description(None) is None


def test_owners_must_be_emails_or_teams():
    with pytest.raises(ValueError, match="team:<name>"):
        DagsterSection(owners=["alice"])


def test_a_bad_owner_in_the_project_names_the_field(project_dir):
    edit_yaml(project_dir / "mixtrain.yaml", lambda d: d.update(dagster={"owners": ["alice"]}))
    with pytest.raises(ProjectError, match=r"dagster\.owners"):
        load_project(project_dir)


def test_code_references_link_into_the_repository_when_the_project_names_it():
    @asset
    def linked() -> int:
        return 1

    section = DagsterSection(git_url="https://github.com/acme/mixtrain", git_branch="v1")
    [spec] = conform(Definitions(assets=[linked]), "mixassets", section).assets[0].specs
    [ref] = spec.metadata["dagster/code_references"].code_references
    assert ref.url.startswith("https://github.com/acme/mixtrain/tree/v1/tests/test_conventions.py#L"), ref.url


def test_table_materialization_carries_row_count_and_column_schema(project_dir):
    schema = pa.schema([pa.field("doc_id", pa.string(), nullable=False), pa.field("score", pa.float64())])

    @asset
    def scored() -> pa.Table:
        return pa.table({"doc_id": ["a", "b", "c"], "score": [0.5, None, 1.0]}, schema=schema)

    defs = conform(Definitions(assets=[scored]), "mixassets")
    result = materialize(defs.assets, resources=project_resources(str(project_dir)))
    assert result.success
    [event] = result.get_asset_materialization_events()
    md = event.materialization.metadata
    assert md["dagster/row_count"].value == 3
    columns = md["dagster/column_schema"].value.columns
    assert [(c.name, c.type, c.constraints.nullable) for c in columns] == [
        ("doc_id", "string", False),
        ("score", "double", True),
    ]
