"""Project YAML validation: every error names the file and the field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mixtrain.project import Project, ProjectError


def _edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


def test_the_demo_project_validates(project_dir):
    project = Project(project_dir)
    assert "stdlib_code" in project.sources and project.spec.mixture.release_policy == "commercial"
    assert project.storage_root == str(project_dir.resolve() / "storage")


def test_bad_source_field_names_file_and_field(project_dir):
    _edit(project_dir / "sources" / "pydoc_topics.yaml", lambda d: d.update(format="csv"))
    with pytest.raises(ProjectError, match=r"pydoc_topics\.yaml: field 'format'"):
        Project(project_dir)


def test_nested_field_is_named_with_its_path(project_dir):
    _edit(project_dir / "mixtrain.yaml", lambda d: d["training"]["lora"].update(r=0))
    with pytest.raises(ProjectError, match=r"mixtrain\.yaml: field 'training\.lora\.r'"):
        Project(project_dir)


def test_unknown_key_is_rejected(project_dir):
    _edit(project_dir / "mixtrain.yaml", lambda d: d["mixture"].update(temprature=2))
    with pytest.raises(ProjectError, match=r"field 'mixture\.temprature'"):
        Project(project_dir)


def test_mixture_weight_for_unknown_source(project_dir):
    _edit(project_dir / "mixtrain.yaml", lambda d: d["mixture"]["weights"].update(nope=1.0))
    with pytest.raises(ProjectError, match=r"field 'mixture\.weights': unknown source ids \['nope'\]"):
        Project(project_dir)


def test_duplicate_source_id(project_dir):
    shutil.copy(project_dir / "sources" / "pydoc_topics.yaml", project_dir / "sources" / "copy.yaml")
    with pytest.raises(
        ProjectError,
        match=r"pydoc_topics\.yaml: field 'id': duplicate source id 'pydoc_topics' \(also in .*copy\.yaml\)",
    ):
        Project(project_dir)


def test_invalid_yaml_and_missing_file(project_dir):
    (project_dir / "sources" / "broken.yaml").write_text("id: [unclosed\n")
    with pytest.raises(ProjectError, match=r"broken\.yaml: not valid YAML"):
        Project(project_dir)
    with pytest.raises(ProjectError, match=r"mixtrain\.yaml: file not found"):
        Project(project_dir / "nowhere")


def test_classifier_path_is_project_relative_and_its_files_are_part_of_the_policy(project_dir, monkeypatch):
    from mixtrain.fingerprint import gating_fingerprint

    src = project_dir / "sources" / "web_crawl.yaml"
    _edit(src, lambda d: d.setdefault("gating", {}).setdefault("safety", {}).update(classifier_path="models/mod"))
    model = project_dir / "models" / "mod"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    monkeypatch.chdir(project_dir.parent)  # resolution must not depend on where the run starts
    proj = Project(project_dir)
    assert proj.sources["web_crawl"].gating.safety.classifier_path == str(model)
    before = gating_fingerprint(proj, "web_crawl")
    assert gating_fingerprint(Project(project_dir), "web_crawl") == before
    (model / "model.safetensors").write_bytes(b"retrained")
    assert gating_fingerprint(Project(project_dir), "web_crawl") != before


def test_adapter_naming_an_unknown_source_or_domain_fails_with_its_field(project_dir):
    _edit(project_dir / "mixtrain.yaml", lambda d: d["adapters"]["python-docs"].update(sources=["nope"]))
    with pytest.raises(ProjectError, match=r"field 'adapters\.python-docs\.sources': unknown source ids \['nope'\]"):
        Project(project_dir)
    _edit(project_dir / "mixtrain.yaml", lambda d: d["adapters"]["python-docs"].update(sources=[], domains=["x"]))
    with pytest.raises(ProjectError, match=r"field 'adapters\.python-docs\.domains': no source has domain"):
        Project(project_dir)


def test_an_adapter_recipe_is_the_training_recipe_with_its_own_fields():
    from mixtrain.config.training import AdapterSpec, LoraSpec, TrainingRecipe

    training = TrainingRecipe(steps=30, lr=1e-3, seed=0)
    recipe = AdapterSpec(lora=LoraSpec(r=4, alpha=8), steps=5).recipe(training)
    assert recipe["steps"] == 5 and recipe["lora"]["r"] == 4 and recipe["lr"] == 1e-3
    assert {k: v for k, v in recipe.items() if k not in ("steps", "lora")} == {
        k: v for k, v in training.model_dump(mode="json").items() if k not in ("steps", "lora")
    }


def test_perplexity_without_held_out_documents_fails_fast(project_dir):
    def edit(d):
        d["mixture"]["heldout_docs"] = 0

    _edit(project_dir / "mixtrain.yaml", edit)
    with pytest.raises(ProjectError, match=r"field 'evaluation\.suites': perplexity .* 'mixture\.heldout_docs' is 0"):
        Project(project_dir)
