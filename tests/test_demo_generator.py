from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from eval_assets.engine import registry
from eval_assets.engine.suites import validate_items
from eval_assets.tasks import json_signature as js
from mixassets.engine.langid import detect_language
from mixassets.engine.pii import CREDIT_CARD, IBAN, SECRET, US_SSN, find_pii
from mixassets.engine.safety import HFTextClassifier, lexicon_scores
from mixtrain.config.data import SafetyConfig
from mixtrain.project import Project

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo"


def _load_generator():
    spec = importlib.util.spec_from_file_location("demo_generate", DEMO / "generate.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def project(tmp_path_factory, request) -> tuple[Path, dict[str, int]]:
    """The small demo with its moderation model. Training it takes ~10-15 s on two cores, so the model is built
    once into pytest's cache (rebuilt only when its training stamp changes) and copied in; generate() then
    finds a model with the right stamp and keeps it. Tests that only look at data pass classifier=False."""
    root = tmp_path_factory.mktemp("demo")
    shutil.copy(DEMO / "mixtrain.yaml", root / "mixtrain.yaml")
    shutil.copytree(DEMO / "sources", root / "sources")
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    cache_dir = cache.mkdir("demo-safety-classifier") if cache else tmp_path_factory.mktemp("classifier")
    cached = cache_dir / "model"
    gen.safety_classifier.build_safety_classifier(cached)
    shutil.copytree(cached, root / gen.CLASSIFIER_DIR)
    counts = gen.generate(root, scale="small")
    assert counts["classifier_built"] == 0  # the copied model's stamp matched
    return root, counts


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_small_project_loads_and_every_source_has_files(project):
    root, counts = project
    p = Project(root)
    assert set(p.source_ids()) == {
        "stdlib_code",
        "pydoc_topics",
        "signature_sft",
        "community_forum",
        "nc_tutorials",
        "mystery_dump",
        "press_releases",
        "web_crawl",
        "code_paste",
    }
    for sid in p.source_ids():
        assert p.source_paths(sid), f"{sid}: no data files"
    assert p.sources["mystery_dump"].license is None
    assert p.sources["nc_tutorials"].license == "CC-BY-NC-4.0"
    assert p.sources["press_releases"].license == "CC-BY-ND-4.0"
    assert {e.id for e in p.spec.eval_sets} == {"humaneval", "signature_holdout", "tool_holdout"}
    assert counts["files_unchanged"] == 0 and counts["files_written"] == len(list((root / "data").rglob("*.*")))
    assert counts["signature_sft"] > 0 and counts["signature_holdout"] > 0 and counts["tool_holdout"] > 0
    assert len(p.source_paths("stdlib_code")) == counts["stdlib_code"]


def test_generator_writes_only_under_data(project):
    root, _ = project
    written = {p.relative_to(root).parts[0] for p in root.rglob("*") if p.is_file()}
    assert written == {"mixtrain.yaml", "sources", "data", "models"}
    assert {p.parent for p in (root / "models").rglob("*") if p.is_file()} == {root / gen.CLASSIFIER_DIR}
    assert sorted(p.name for p in (root / "sources").iterdir()) == sorted(p.name for p in (DEMO / "sources").iterdir())


def test_rerun_is_byte_identical_and_touches_nothing(project):
    root, _ = project
    before = _snapshot(root)
    counts = gen.generate(root, scale="small")
    assert counts["files_written"] == 0 and counts["files_removed"] == 0 and counts["classifier_built"] == 0
    assert _snapshot(root) == before  # same bytes and same mtimes, the model's included


def test_holdout_is_a_loadable_eval_set_disjoint_from_training(project):
    root, _ = project
    p = Project(root)
    spec = p.eval_set("signature_holdout")
    table = registry.load_jsonl_eval_set(spec.id, p.resolve(spec.path), spec.version)
    hold_ids = set(table.column("item_id").to_pylist())
    sft = [json.loads(line) for line in (root / "data" / "signature_sft.jsonl").read_text().splitlines()]
    assert hold_ids and hold_ids.isdisjoint(r["id"] for r in sft)
    # Training answers are the ast reference of the function in the prompt.
    record = sft[0]
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
    code = record["messages"][1]["content"].split("```python\n", 1)[1].rsplit("\n```", 1)[0]
    assert json.loads(record["messages"][2]["content"]) == js.reference(code)
    # Every held-out function's module is in stdlib_code, so the contamination screen can find it there.
    modules = {Path(f).stem for f in p.source_paths("stdlib_code")}
    for row in table.to_pylist():
        meta = json.loads(row["metadata"])
        assert meta["module"] in modules
        module_text = (root / "data" / "stdlib_code" / f"{meta['module']}.txt").read_text()
        assert json.loads(row["screen_fields"])["code"].splitlines()[0].strip() in module_text


def test_tool_holdout_is_a_valid_eval_set_of_every_call_kind(project):
    root, counts = project
    p = Project(root)
    spec = p.eval_set("tool_holdout")
    table = registry.load_jsonl_eval_set(spec.id, p.resolve(spec.path), spec.version)
    assert table.num_rows == counts["tool_holdout"]
    assert validate_items(table) == []
    kinds = {json.loads(m)["kind"] for m in table.column("metadata").to_pylist()}
    assert kinds == {"single", "parallel", "irrelevance"}


def test_forum_exercises_every_gate(project):
    root, _ = project
    raw = (root / "data" / "community_forum.jsonl").read_bytes().splitlines()
    parsed, malformed, undecodable = {}, 0, 0
    for line in raw:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            undecodable += 1
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError:
            malformed += 1
            continue
        parsed[rec["id"]] = rec["text"]
    assert malformed == 1 and undecodable == 1
    topics = {
        json.loads(line)["topic"]: json.loads(line)["text"]
        for line in (root / "data" / "pydoc_topics.jsonl").read_text().splitlines()
    }
    assert parsed["forum-copy-of-docs"] == topics[gen.EXACT_DUP_TOPIC]
    near, orig = parsed["forum-near-copy-of-docs"].split(), topics[gen.NEAR_DUP_TOPIC].split()
    assert near != orig and len(near) == len(orig) and sum(a != b for a, b in zip(near, orig, strict=True)) == 3
    assert len(parsed["forum-too-short"].split()) < 5
    pii = " ".join(t for k, t in parsed.items() if k.startswith("forum-pii"))
    assert "@example.com" in pii and "192.0.2.17" in pii and "+1 202-555-0143" in pii
    he = registry.load_humaneval(limit=1).to_pylist()[0]
    assert he["prompt"] + he["reference"] in parsed["forum-leaked-benchmark"]


def test_switching_scale_removes_files_the_new_scale_does_not_own(tmp_path):
    (tmp_path / "data" / "stdlib_code").mkdir(parents=True)
    stray = tmp_path / "data" / "stdlib_code" / "not_a_demo_module.txt"
    stray.write_text("left over from another scale")
    counts = gen.generate(tmp_path, scale="small", classifier=False)
    assert not stray.exists() and counts["files_removed"] == 1 and counts["classifier_built"] == 0
    assert not (tmp_path / "models").exists()
    with pytest.raises(ValueError, match="scale"):
        gen.generate(tmp_path, scale="huge")


def _records(root: Path, name: str) -> dict[str, str]:
    rows = [json.loads(line) for line in (root / "data" / name).read_text(encoding="utf-8").splitlines()]
    return {r["id"]: r["text"] for r in rows}


def test_web_crawl_is_the_same_at_every_scale_and_big_enough_for_boilerplate(project, tmp_path):
    root, counts = project
    gen.generate(tmp_path, scale="full", classifier=False)
    for name in ("web_crawl.jsonl", "code_paste.jsonl"):
        assert (tmp_path / "data" / name).read_bytes() == (root / "data" / name).read_bytes()
    pages = _records(root, "web_crawl.jsonl")
    assert counts["web_crawl"] == len(pages) >= 30
    p = Project(root)
    spec = p.sources["web_crawl"]
    assert spec.pii_policy == "redact" and spec.domain == "web" and spec.language == "en"
    assert p.spec.mixture.weights["web_crawl"] == 0.25
    cfg = spec.gating.boilerplate
    for banner in (gen.web_crawl.CRAWL_HEADER, gen.web_crawl.CRAWL_FOOTER):
        with_banner = sum(1 for t in pages.values() if banner in t.splitlines())
        assert with_banner >= cfg.min_docs and with_banner / len(pages) >= cfg.min_doc_fraction
        assert with_banner < len(pages) and len(banner) >= cfg.min_line_chars


def test_web_crawl_pages_trip_the_detectors_they_were_written_for(project):
    root, _ = project
    pages = _records(root, "web_crawl.jsonl")
    languages = {k: detect_language(t) for k, t in pages.items() if len(t.strip()) >= 50}
    assert languages["crawl-besuch-de"][0] == "de" and languages["crawl-visite-fr"][0] == "fr"
    for k in ("crawl-besuch-de", "crawl-visite-fr"):
        assert languages[k][1] > 0.9
    for i in range(len(gen.web_crawl.CRAWL_PAGES)):
        assert languages[f"crawl-news-{i:02d}"][0] == "en"
    limits = SafetyConfig().max_scores
    heated = lexicon_scores(pages["crawl-forum-argument"])
    assert heated["toxicity"] > limits["toxicity"] and heated["malware"] > limits["malware"]
    flagged = {k for k, t in pages.items() if any(lexicon_scores(t).values())}
    assert flagged == {"crawl-forum-argument"}  # the threat in crawl-minutes-comment is left to the classifier
    found = {k: sorted({h.type for h in find_pii(t)}) for k, t in pages.items()}
    assert {k: v for k, v in found.items() if v} == {
        "crawl-shop-order": [CREDIT_CARD],
        "crawl-membership-refund": [IBAN],
        "crawl-grant-form": [US_SSN],
        "crawl-site-backup": [SECRET],
    }
    assert "-----BEGIN RSA PRIVATE KEY-----" in pages["crawl-site-backup"]
    assert pages["crawl-news-03-print"] == pages["crawl-news-03"]


def test_every_gating_rule_fires_on_the_small_demo(project):
    """Each rule is exercised by generated text, except those that need something the demo does not have."""
    from datetime import datetime, timezone

    from mixassets.engine.gating import gate
    from mixassets.engine.readers import read_source
    from mixassets.engine.rules import DEFAULT_RULES

    root, _ = project
    p = Project(root)
    fired: set[str] = set()
    classified: list[str] = []
    for sid in p.source_ids():
        spec = p.sources[sid]
        docs, _ = read_source(
            spec, p.source_paths(sid), base=str(p.root), capture_time=datetime(2024, 1, 1, tzinfo=timezone.utc)
        )
        decisions = gate(docs, spec, forbidden_tags=p.spec.forbidden_license_tags).decisions
        fired |= set(decisions.column("rule_id").to_pylist())
        text_of = dict(zip(docs.column("doc_id").to_pylist(), docs.column("text").to_pylist(), strict=True))
        classified += [text_of[d["doc_id"]] for d in decisions.to_pylist() if d["rule_id"] == "safety.classifier"]
    missing = [r.id for r in DEFAULT_RULES if not any(f == r.id or f.startswith(r.id + ".") for f in fired)]
    assert missing == []
    # The moderation model holds exactly the threat page, and no clean document of the demo.
    assert len(classified) == 1 and gen.web_crawl.CRAWL_SPECIAL["minutes-comment"] in classified[0]


def _without_banner(page: str) -> str:
    """A crawl page as the classifier sees it: the boilerplate rule has already stripped the site banner."""
    return "\n".join(
        line for line in page.splitlines() if line not in (gen.web_crawl.CRAWL_HEADER, gen.web_crawl.CRAWL_FOOTER)
    ).strip()


def test_the_demo_classifier_is_a_plain_local_model_that_separates_threat_from_code(project):
    root, _ = project
    p = Project(root)
    model_dir = root / gen.CLASSIFIER_DIR
    for sid in ("web_crawl", "community_forum"):
        assert p.sources[sid].gating.safety.classifier_path == str(model_dir)
    threshold = p.sources["web_crawl"].gating.safety.classifier_threshold
    clf = HFTextClassifier(str(model_dir))  # AutoModelForSequenceClassification, no remote code
    assert type(clf.model).__name__ == "BertForSequenceClassification" and clf.unsafe_labels == ["unsafe"]
    assert clf.model.config.id2label == {0: "safe", 1: "unsafe"}
    threat = _without_banner(_records(root, "web_crawl.jsonl")["crawl-minutes-comment"])
    clean = (root / "data" / "stdlib_code" / "bisect.txt").read_text(encoding="utf-8")
    unsafe_p, clean_p = clf.unsafe_probability([threat, clean])
    assert unsafe_p >= threshold > clean_p
    assert clean_p < 0.1 and unsafe_p > 0.99  # far from the threshold on both sides, not a coin toss


def test_classifier_training_text_is_not_the_demo_text():
    """The model is measured on the demo, so the demo's unsafe page must not be in what it learned from."""
    examples = gen.safety_classifier.training_examples()
    labels = {y for _, y in examples}
    assert labels == {0, 1} and sum(y for _, y in examples) < len(examples) / 2
    trained = " ".join(t for t, _ in examples).lower()
    threat = gen.web_crawl.CRAWL_SPECIAL["minutes-comment"]
    sentences = [s.strip().lower() for s in threat.split(".") if len(s.split()) > 3]
    assert sentences and not any(s in trained for s in sentences)
    for word in ("spineless", "cheats", "smash", "clubhouse", "chairman"):
        assert word not in trained, word
