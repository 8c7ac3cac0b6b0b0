"""Config errors a person can act on: file, field and line, the bad value (never a secret), did-you-mean, and
enums checked when the project loads rather than deep inside a stage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mixtrain.config.errors import load_with_lines, show_value
from mixtrain.project import Project, ProjectError


def _edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _error(project_dir: Path) -> str:
    with pytest.raises(ProjectError) as err:
        Project(project_dir)
    return str(err.value)


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_misspelt_key_gets_did_you_mean_value_and_line(project_dir):
    cfg = project_dir / "mixtrain.yaml"
    _edit(cfg, lambda d: d["mixture"].update(temprature=2))
    message = _error(project_dir)
    line = _line_of(cfg, "temprature:")
    assert f"field 'mixture.temprature': unknown key (did you mean 'temperature'?); got 2 (line {line})" in message


def test_unknown_key_without_a_close_match_lists_the_known_ones(project_dir):
    _edit(project_dir / "mixtrain.yaml", lambda d: d["training"]["lora"].update(zzz=1))
    assert "field 'training.lora.zzz': unknown key (known keys here: alpha, dropout, merge, r, target_modules)" in (
        _error(project_dir)
    )


def test_bad_enum_value_is_echoed_with_a_suggestion(project_dir):
    src = project_dir / "sources" / "pydoc_topics.yaml"
    _edit(src, lambda d: d.update(format="jsnol"))
    message = _error(project_dir)
    assert re.search(
        r"pydoc_topics\.yaml: field 'format': Input should be 'jsonl', 'parquet' or 'text' "
        r"\(did you mean 'jsonl'\?\); got 'jsnol' \(line \d+\)",
        message,
    ), message
    _edit(src, lambda d: d.update(format="jsonl"))
    _edit(project_dir / "mixtrain.yaml", lambda d: d["training"].update(launcher="torchrn"))
    assert "(did you mean 'torchrun'?); got 'torchrn'" in _error(project_dir)


def test_invalid_release_policy_fails_at_load(project_dir):
    cfg = project_dir / "mixtrain.yaml"
    _edit(cfg, lambda d: d["mixture"].update(release_policy="comercial"))
    message = _error(project_dir)
    assert "field 'mixture.release_policy': unknown license policy 'comercial'" in message
    assert "(did you mean 'commercial'?)" in message and f"(line {_line_of(cfg, 'release_policy:')})" in message
    for bad in ("tenant:", "tenant: ", "open"):
        _edit(cfg, lambda d, bad=bad: d["mixture"].update(release_policy=bad))
        assert "field 'mixture.release_policy'" in _error(project_dir)
    _edit(cfg, lambda d: d["mixture"].update(release_policy="tenant:acme"))
    assert Project(project_dir).spec.mixture.release_policy == "tenant:acme"


def test_secret_values_are_masked(project_dir):
    _edit(project_dir / "mixtrain.yaml", lambda d: d["training"].update(hf_token="hf_SECRET123"))
    message = _error(project_dir)
    assert "field 'training.hf_token': unknown key" in message and "got ****" in message
    assert "SECRET123" not in message
    assert show_value("s3://AKIAXX:verysecret@bucket/p", ["storage_root"]) == "'s3://****@bucket/p'"
    assert show_value("abc", ["training", "k8s", "env", "HF_HUB"]) == "****"
    assert show_value(20000, ["mixture", "token_budget"]) == "20000"  # a count of tokens, not a credential


def test_reference_errors_carry_line_and_suggestion(project_dir):
    cfg = project_dir / "mixtrain.yaml"
    _edit(cfg, lambda d: d["mixture"]["weights"].update(web_crawel=1.0))
    message = _error(project_dir)
    assert "field 'mixture.weights': unknown source ids ['web_crawel'] (did you mean 'web_crawl'?)" in message
    assert f"(line {_line_of(cfg, '  weights:')})" in message


def test_gate_criterion_naming_an_unknown_eval_set_fails_at_load(project_dir):
    crit = {"metric": "field_accuracy", "op": ">=", "value": 0.1, "eval_set": "signature_holdot"}
    _edit(project_dir / "mixtrain.yaml", lambda d: d["release_gate"].setdefault("criteria", []).append(crit))
    assert re.search(
        r"field 'release_gate\.criteria\.\d+\.eval_set': 'signature_holdot' is not in eval_sets "
        r"\(did you mean 'signature_holdout'\?\)",
        _error(project_dir),
    )


def test_missing_field_points_at_its_mapping(project_dir):
    cfg = project_dir / "mixtrain.yaml"
    _edit(cfg, lambda d: d["mixture"].pop("token_budget"))
    message = _error(project_dir)
    assert f"field 'mixture.token_budget': Field required (line {_line_of(cfg, 'mixture:')})" in message
    assert "got" not in message.split("token_budget")[1]


def test_lines_follow_nested_keys_and_list_items():
    data, lines = load_with_lines("a:\n  b: 1\n  c:\n    - x: 2\n    - y: 3\n")
    assert data == {"a": {"b": 1, "c": [{"x": 2}, {"y": 3}]}}
    assert lines[("a", "b")] == 2 and lines[("a", "c", "1")] == 5 and lines[("a", "c", "1", "y")] == 5
    with pytest.raises(yaml.YAMLError):
        load_with_lines("a: [unclosed\n")


def test_safety_categories_and_dedupe_references_are_checked_at_load(project_dir):
    from typing import get_args

    from mixassets.engine.safety import CATEGORIES
    from mixtrain.config.data import SafetyCategory

    assert set(get_args(SafetyCategory)) == set(CATEGORIES)  # the config names exactly what the lexicon scores
    src = project_dir / "sources" / "web_crawl.yaml"
    original = src.read_text()
    _edit(src, lambda d: d.setdefault("gating", {}).setdefault("safety", {}).update(max_scores={"toxicty": 5.0}))
    message = _error(project_dir)
    assert "web_crawl.yaml: field 'gating.safety.max_scores.toxicty': bad key: Input should be 'toxicity'" in message
    assert "(did you mean 'toxicity'?)" in message
    src.write_text(original)
    cfg = project_dir / "mixtrain.yaml"
    _edit(cfg, lambda d: d.setdefault("dedupe", {}).update(source_threshold={"web_crawel": 0.6}))
    assert "field 'dedupe.source_threshold': unknown source ids ['web_crawel'] (did you mean 'web_crawl'?)" in (
        _error(project_dir)
    )
    _edit(cfg, lambda d: d["dedupe"].update(source_threshold={}, max_per_cluster={"forums": 2}))
    assert "field 'dedupe.max_per_cluster': no source or domain ['forums']" in _error(project_dir)
    _edit(cfg, lambda d: d["dedupe"].update(max_per_cluster={"web": 0}))
    assert "field 'dedupe.max_per_cluster.web': Input should be greater than or equal to 1; got 0" in (
        _error(project_dir)
    )
