"""The mixture section of mixtrain.yaml: new levers default to the old behaviour, and every bad value or
unknown name is reported with the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from mixtrain.config.data import MixtureSpec
from mixtrain.project import Project, ProjectError


def _mixture(project_dir: Path, **update) -> None:
    path = project_dir / "mixtrain.yaml"
    data = yaml.safe_load(path.read_text())
    data["mixture"].update(update)
    path.write_text(yaml.safe_dump(data))


def test_demo_mixture_keeps_the_old_behaviour(project_dir) -> None:
    spec = Project(project_dir).spec.mixture
    assert (spec.temperature, spec.phases, spec.length_buckets, spec.domain_weights) == (None, [], [], {})
    assert (spec.max_tokens, spec.min_tokens, spec.max_epochs) == ({}, {}, {})


def test_new_levers_validate_in_the_demo_project(project_dir) -> None:
    _mixture(
        project_dir,
        domain_weights={"code": 2.0, "docs": 0.5},
        max_tokens={"stdlib_code": 5000},
        min_tokens={"pydoc_topics": 1000},
        max_epochs={"signature_sft": 3},
        temperature=2.0,
        length_buckets=[
            {"max_tokens": 32, "weight": 0.2},
            {"max_tokens": 256, "weight": 0.6},
            {"max_tokens": None, "weight": 1.0},
        ],
        phases=[{"name": "warmup", "share": 0.2, "weights": {"pydoc_topics": 1.0}}, {"name": "main", "share": 0.8}],
    )
    spec = Project(project_dir).spec.mixture
    assert [p.name for p in spec.phases] == ["warmup", "main"] and spec.phases[1].weights is None


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({"max_tokens": {"nosuch": 10}}, "mixture.max_tokens"),
        ({"min_tokens": {"nosuch": 10}}, "mixture.min_tokens"),
        ({"max_docs": {"nosuch": 10}}, "mixture.max_docs"),
        ({"max_epochs": {"nosuch": 2}}, "mixture.max_epochs"),
        ({"phases": [{"name": "a", "share": 1.0, "weights": {"nosuch": 1.0}}]}, "mixture.phases.0.weights"),
    ],
)
def test_unknown_source_names_the_field(project_dir, update, field) -> None:
    _mixture(project_dir, **update)
    with pytest.raises(ProjectError, match=rf"mixtrain\.yaml: field '{field}': unknown source ids \['nosuch'\]"):
        Project(project_dir)


def test_unknown_domain_names_the_field(project_dir) -> None:
    _mixture(project_dir, domain_weights={"cooking": 1.0})
    with pytest.raises(ProjectError, match=r"field 'mixture\.domain_weights': no source has domain\(s\) \['cooking'\]"):
        Project(project_dir)


@pytest.mark.parametrize(
    ("update", "field", "message"),
    [
        ({"weights": {"stdlib_code": -1.0}}, "mixture.weights.stdlib_code", "greater than or equal to 0"),
        ({"weights": {"stdlib_code": 0.0, "web_crawl": 0}}, "mixture.weights", "all weights are zero"),
        ({"domain_weights": {"code": -2}}, "mixture.domain_weights.code", "greater than or equal to 0"),
        ({"max_epochs": {"stdlib_code": 0}}, "mixture.max_epochs.stdlib_code", "greater than or equal to 1"),
        ({"min_tokens": {"stdlib_code": -5}}, "mixture.min_tokens.stdlib_code", "greater than or equal to 0"),
        ({"temperature": 0}, "mixture.temperature", "greater than 0"),
        (
            {"phases": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.4}]},
            "mixture.phases",
            "phase shares must sum to 1",
        ),
        (
            {"phases": [{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}]},
            "mixture.phases",
            "phase names must be unique",
        ),
        (
            {"phases": [{"name": "a", "share": 1.0, "weights": {"stdlib_code": 0}}]},
            "mixture.phases",
            "phases.0.weights: all weights of phase 'a' are zero",
        ),
        (
            {"length_buckets": [{"max_tokens": 100, "weight": 1}, {"max_tokens": 50, "weight": 1}]},
            "mixture.length_buckets",
            "strictly ascending",
        ),
        (
            {"length_buckets": [{"max_tokens": None, "weight": 1}, {"max_tokens": 50, "weight": 1}]},
            "mixture.length_buckets",
            "only the last bucket",
        ),
        ({"length_buckets": [{"max_tokens": 10, "weight": 0}]}, "mixture.length_buckets", "weight must be > 0"),
    ],
)
def test_bad_values_name_the_field(project_dir, update, field, message) -> None:
    _mixture(project_dir, **update)
    with pytest.raises(ProjectError) as err:
        Project(project_dir)
    assert f"mixtrain.yaml: field '{field}'" in str(err.value)
    assert message in str(err.value)


def test_shares_within_tolerance_are_accepted() -> None:
    spec = MixtureSpec(
        weights={"a": 1}, token_budget=10, phases=[{"name": "x", "share": 1 / 3}, {"name": "y", "share": 2 / 3}]
    )
    assert len(spec.phases) == 2
    with pytest.raises(ValidationError, match="sum to 1"):
        phases = [{"name": "x", "share": 0.5 + 1e-5}, {"name": "y", "share": 0.5}]
        MixtureSpec(weights={"a": 1}, token_budget=10, phases=phases)


def test_domain_weights_alone_may_carry_the_mixture() -> None:
    spec = MixtureSpec(weights={"a": 0}, domain_weights={"code": 1}, token_budget=10)
    assert spec.domain_weights == {"code": 1}
