"""Gating rules from a real plugin: the README's example rule in a distribution whose ``entry_points.txt`` registers
it (found by ``importlib.metadata`` on ``sys.path``, as an installed package is), and the same module named by import
path in a source's ``gating.extra_rules``. The rule fires in gate runs and its decisions are in the decision log;
what is not a rule, a reused id and a bad path are errors that say where; the rule's code is in the gate's version
and the source's gating fingerprint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from mixassets.engine import rules as rules_pkg
from mixassets.engine.distributed.gate import _ray_shape
from mixassets.engine.gating import gate
from mixassets.engine.gating_stream import gate_stream
from mixassets.engine.readers import doc_id_for
from mixassets.engine.rules import DEFAULT_RULES, RULES_VERSION, _rules_version, plugins, rules_for
from mixtrain.config.data import GATING_RULES_GROUP, SourceSpec
from mixtrain.config.plugins import PluginError
from mixtrain.fingerprint import gating_fingerprint
from mixtrain.project import Project, ProjectError
from mixtrain.schema import DECISION_SCHEMA
from tests.helpers import documents
from tests.plugin_dist import PluginDist, readme_example

CLEAN = "The quick brown fox jumps over the lazy dog near the river bank."
SHOUT = "BUY CHEAP WATCHES TODAY AT THE BEST PRICES ANYWHERE IN TOWN NOW"
# Beside the README's rule: objects that must be refused, each for its own reason.
EXTRAS = """
from mixassets.engine.rules import Rule


class Mentions(TextRule):
    id, version = "custom.mentions_banana", 3

    def check(self, text, ctx):
        return [Outcome("flag", "mentions banana")] if "banana" in text else []


def make_mentions():
    return Mentions()


class Whole(Rule):
    id, version, needs_prepare = "custom.whole_source", 1, True

    def evaluate(self, docs, ctx):
        return [[] for _ in range(docs.num_rows)]


NOT_A_RULE = 3


class Empty(TextRule):
    id, version = "quality.empty", 1

    def check(self, text, ctx):
        return []


class InPii(Empty):
    id = "pii.custom"


class NoVersion(TextRule):
    id = "custom.no_version"

    def check(self, text, ctx):
        return []


def returns_a_string():
    return "custom.rule"
"""


@pytest.fixture
def dist(tmp_path, monkeypatch):
    """``myrules`` (the README's rule and the extras) on sys.path; the installed-rule cache is cleared around the
    test, so no other test sees the plugin."""
    d = PluginDist(tmp_path / "site", monkeypatch)
    d.module("myrules", readme_example("**Your own rules.**") + EXTRAS)
    plugins.installed.cache_clear()
    yield d
    d.forget()
    plugins.installed.cache_clear()


def _spec(**gating: Any) -> SourceSpec:
    return SourceSpec.model_validate(
        {"id": "src", "path": "x", "format": "jsonl", "license": "MIT", "gating": gating, "pii_policy": "redact"}
    )


def _docs() -> pa.Table:
    texts = [CLEAN, SHOUT, CLEAN.replace("fox", "banana")]
    rows = [
        {"doc_id": doc_id_for("src", f"f.jsonl:{i}"), "locator": f"f.jsonl:{i}", "text": t}
        for i, t in enumerate(texts, 1)
    ]
    return documents(rows, source_id="src", license="MIT")


def _decisions(table: pa.Table, rule_id: str) -> list[dict[str, Any]]:
    return [r for r in table.to_pylist() if r["rule_id"] == rule_id]


def test_an_installed_rule_fires_in_the_gate_and_is_in_the_decision_log(dist):
    dist.distribution("myrules", {GATING_RULES_GROUP: {"no_shouting": "myrules:NoShouting"}})
    ids = [r.id for r in rules_for(_spec())]
    assert ids.index("custom.no_shouting") == len(ids) - 2 and ids[-1] == "pii"  # after the built-ins, PII last
    res = gate(_docs(), _spec())
    shouted = _decisions(res.decisions, "custom.no_shouting")
    assert [(d["doc_id"], d["action"], d["rule_version"], d["reason"]) for d in shouted] == [
        (doc_id_for("src", "f.jsonl:2"), "quarantine", 1, "100% capitals")
    ]
    assert shouted[0]["score"] == 1.0
    held = res.quarantine.to_pylist()
    assert [(r["rule_id"], r["disposition"]) for r in held] == [("custom.no_shouting", "quarantined")]
    assert res.counts["rule.custom.no_shouting"] == 1 and res.counts["accepted"] == 2
    # The streaming gate (what gated_documents runs locally) logs it the same way.
    parts: list[pa.Table] = []

    class Sink:
        def write(self, accepted: pa.Table, quarantine: pa.Table, decisions: pa.Table) -> None:
            parts.append(decisions)

    counts = gate_stream(lambda: iter([_docs()]), _spec(), sink=Sink())
    assert counts["rule.custom.no_shouting"] == 1
    assert _decisions(pa.concat_tables(parts), "custom.no_shouting")[0]["reason"] == "100% capitals"
    # Switched off by id like a built-in rule.
    assert "custom.no_shouting" not in gate(_docs(), _spec(disabled_rules=["custom.no_shouting"])).counts


def test_installed_rules_are_in_the_rules_version(dist):
    built_in = _rules_version(DEFAULT_RULES)
    assert built_in == RULES_VERSION  # the environment of the tests has no plugin rules installed
    dist.distribution("myrules", {GATING_RULES_GROUP: {"no_shouting": "myrules:NoShouting"}})
    with_plugin = _rules_version(DEFAULT_RULES, [r for r, _ in plugins.installed()])
    assert with_plugin != built_in
    code = (dist.root / "myrules.py").read_text()
    dist.module("myrules", code.replace('"custom.no_shouting", 1', '"custom.no_shouting", 2'))
    plugins.installed.cache_clear()
    bumped = _rules_version(DEFAULT_RULES, [r for r, _ in plugins.installed()])
    dist.module("myrules", code.replace("> 0.6", "> 0.7"))  # same version, other code: still another gate
    plugins.installed.cache_clear()
    edited = _rules_version(DEFAULT_RULES, [r for r, _ in plugins.installed()])
    assert len({built_in, with_plugin, bumped, edited}) == 4


def test_a_source_names_its_own_rules_by_import_path(dist):
    spec = _spec(extra_rules=["myrules:NoShouting", "myrules:make_mentions"])
    ids = [r.id for r in rules_for(spec)]
    assert ids[-3:] == ["custom.no_shouting", "custom.mentions_banana", "pii"]
    assert "custom.no_shouting" not in {r.id for r in rules_for(_spec())}  # only that source
    res = gate(_docs(), spec)
    flagged = _decisions(res.decisions, "custom.mentions_banana")
    assert [(d["doc_id"], d["action"], d["rule_version"], d["reason"]) for d in flagged] == [
        (doc_id_for("src", "f.jsonl:3"), "flag", 3, "mentions banana")
    ]
    assert res.decisions.schema.equals(DECISION_SCHEMA) and res.counts["accepted"] == 2  # a flag holds nothing


def test_an_installed_rules_module_may_be_imported_before_the_rules_package(dist):
    """The plugin imports the rules package, which loads the plugin: the gate's version is worked out on first
    use, not at the package's import, so either may come first."""
    dist.distribution("myrules", {GATING_RULES_GROUP: {"no_shouting": "myrules:NoShouting"}})
    code = (
        "import myrules\n"
        "from mixassets.engine.rules import RULES_VERSION, rules_for\n"
        "from mixtrain.config.data import SourceSpec\n"
        "spec = SourceSpec(id='s', path='x', format='jsonl')\n"
        "print(RULES_VERSION, rules_for(spec)[-2].id)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(dist.root), str(Path(__file__).resolve().parents[1])])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    version, last = out.stdout.split()
    assert last == "custom.no_shouting" and version != RULES_VERSION


def test_plugin_rules_keep_the_ray_gate_on_ray_unless_they_need_a_whole_source_pass(dist):
    assert _ray_shape(rules_for(_spec(extra_rules=["myrules:NoShouting"]))) is not None
    assert _ray_shape(rules_for(_spec(extra_rules=["myrules:Whole"]))) is None  # gated on the driver instead


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("myrules:NOT_A_RULE", "the int 3 is not a gating Rule"),
        ("myrules:returns_a_string", "returned the str 'custom.rule', not a Rule"),
        ("myrules:Empty", "duplicate rule id 'quality.empty' (also a built-in rule)"),
        ("myrules:InPii", "rule id 'pii.custom' overlaps rule 'pii'"),
        ("myrules:NoVersion", "rule 'custom.no_version' needs an int version"),
        ("myrules:Outcome", "is not a subclass of mixassets.engine.rules.Rule"),
    ],
)
def test_what_is_not_a_usable_rule_is_refused_naming_where(dist, path, message):
    with pytest.raises(PluginError) as err:
        rules_for(_spec(extra_rules=[path]))
    assert f"source 'src': field 'gating.extra_rules.0' ('{path}'): " in str(err.value)
    assert message in str(err.value)


def test_a_broken_or_clashing_entry_point_names_itself(dist):
    dist.distribution("myrules", {GATING_RULES_GROUP: {"broken": "myrules:Nope", "two": "myrules:NoShouting"}})
    with pytest.raises(PluginError, match=r"entry point 'broken = myrules:Nope' \(group 'mixtrain.gating_rules', "
                       r"distribution 'myrules'\): 'myrules' has no attribute 'Nope'"):  # fmt: skip
        rules_for(_spec())
    dist.distribution("myrules", {GATING_RULES_GROUP: {"two": "myrules:NoShouting"}})
    plugins.installed.cache_clear()
    with pytest.raises(PluginError, match=r"duplicate rule id 'custom.no_shouting' \(also entry point 'two"):
        rules_for(_spec(extra_rules=["myrules:NoShouting"]))


def _source(project_dir: Path, **gating: Any) -> Path:
    path = project_dir / "sources" / "press_releases.yaml"
    data = yaml.safe_load(path.read_text())
    data.setdefault("gating", {}).update(gating)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_bad_import_path_fails_the_project_load_with_file_field_and_line(dist, project_dir):
    for path, expected in [
        ("nopkg.rules:X", "cannot import 'nopkg.rules': no module named 'nopkg'"),
        ("myrules:NoShoutin", "'myrules' has no attribute 'NoShoutin' (did you mean 'NoShouting'?)"),
        ("myrules.NoShouting", "'myrules.NoShouting' is not an import path of the form 'package.module:name'"),
    ]:
        source = _source(project_dir, extra_rules=[path])
        with pytest.raises(ProjectError) as err:
            Project(project_dir)
        line = next(i for i, text in enumerate(source.read_text().splitlines(), 1) if path in text)
        message = str(err.value)
        assert f"press_releases.yaml: field 'gating.extra_rules.0': {expected}" in message
        assert f"got '{path}' (line {line})" in message


def test_a_sources_rules_and_their_code_are_in_its_gating_fingerprint(dist, project_dir):
    before = gating_fingerprint(Project(project_dir), "press_releases")
    _source(project_dir, extra_rules=[])
    assert gating_fingerprint(Project(project_dir), "press_releases") == before  # an empty list changes nothing
    _source(project_dir, extra_rules=["myrules:NoShouting"])
    added = gating_fingerprint(Project(project_dir), "press_releases")
    other = gating_fingerprint(Project(project_dir), "pydoc_topics")
    code = (dist.root / "myrules.py").read_text()
    dist.module("myrules", code.replace("> 0.6", "> 0.7"))  # the rule's code changed, its version did not
    edited = gating_fingerprint(Project(project_dir), "press_releases")
    assert len({before, added, edited}) == 3
    assert gating_fingerprint(Project(project_dir), "pydoc_topics") == other  # only that source regates
    assert rules_pkg.rules_for(Project(project_dir).sources["press_releases"])[-2].id == "custom.no_shouting"


@pytest.mark.ray
def test_a_sources_plugin_rule_fires_on_ray_workers(dist, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import pyarrow.parquet as pq

    from mixassets.engine.distributed import gate_ray
    from mixtrain.compute import ComputeResource

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(dist.root), os.environ.get("PYTHONPATH")])))
    path = str(tmp_path / "docs.parquet")
    pq.write_table(_docs(), path)
    spec = _spec(extra_rules=["myrules:NoShouting", "myrules:make_mentions"])
    compute = ComputeResource(backend="ray", num_cpus=2, shuffle_partitions=2)
    compute.ensure_ray()
    try:
        out = gate_ray([path], spec, num_partitions=2)
    finally:
        compute.shutdown()
    assert out.on_ray
    fired = [
        (d["doc_id"], d["rule_id"], d["reason"])
        for d in out.decisions.to_pylist()
        if d["rule_id"].startswith("custom.")
    ]
    assert fired == [
        (doc_id_for("src", "f.jsonl:2"), "custom.no_shouting", "100% capitals"),
        (doc_id_for("src", "f.jsonl:3"), "custom.mentions_banana", "mentions banana"),
    ]
    assert out.counts["rule.custom.no_shouting"] == 1 and out.counts["accepted"] == 2
