"""Domain-aware quality, language and safety rules: each fires on a crafted document, not on a clean one, and
reads its threshold from the source config."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pytest

from benchmarks.bench_gate_rules import top_ngram_reference
from mixassets.engine.gating import GateResult, gate
from mixassets.engine.readers import doc_id_for
from mixassets.engine.rules import DEFAULT_RULES, RULES_VERSION, rule_set_for, rules_for
from mixassets.engine.rules import safety as safety_rules
from mixassets.engine.rules.base import Rule
from mixtrain.config.data import SourceSpec
from mixtrain.schema import DOCUMENT_SCHEMA

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CLEAN = "The quick brown fox jumps over the lazy dog near the river bank."
CLEAN_CODE = "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n"
GERMAN = "Der schnelle braune Fuchs springt über den faulen Hund am Flussufer und läuft dann weiter nach Hause."


def _spec(**kw: Any) -> SourceSpec:
    return SourceSpec.model_validate({"id": "src", "path": "x", "format": "jsonl", "license": "MIT", **kw})


def _docs(texts: list[str], *, domain: str = "general", kind: str = "text") -> pa.Table:
    rows = []
    for i, text in enumerate(texts):
        messages = None
        if kind == "chat":
            parts = text.split("\n\n")
            messages = json.dumps(
                [{"role": "user" if i % 2 == 0 else "assistant", "content": p} for i, p in enumerate(parts)]
            )
        rows.append(
            {
                "doc_id": doc_id_for("src", f"f:{i}"),
                "source_id": "src",
                "locator": f"f:{i}",
                "kind": kind,
                "text": text,
                "messages": messages,
                "license": "MIT",
                "rights_tags": [],
                "domain": domain,
                "language": "en",
                "capture_time": T0,
            }
        )
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def _fired(res: GateResult, row: int) -> set[str]:
    doc = doc_id_for("src", f"f:{row}")
    return {d["rule_id"] for d in res.decisions.to_pylist() if d["doc_id"] == doc}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


PROSE = {"gating": {"disabled_rules": ["language.mismatch"]}}
CODE = {"domain": "code"}

# rule id, crafted text, spec (besides the base), config change that must stop the rule, disposition, reason part
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], str, str]] = [
    (
        "quality.lorem_ipsum",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.",
        PROSE,
        {"gating": {"quality": {"reject_lorem_ipsum": False}}},
        "rejected",
        "lorem ipsum",
    ),
    (
        "quality.mean_word_length",
        "a b c d e f g h i j k l m n o",
        PROSE,
        {"gating": {"quality": {"min_mean_word_length": 0.5}}},
        "quarantined",
        "mean word length 1.00 < 3.0",
    ),
    (
        "quality.mean_word_length",
        "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism "
        "floccinaucinihilipilification supercalifragilisticexpialidocious hippopotomonstrosesquippedaliophobia",
        PROSE,
        {"gating": {"quality": {"max_mean_word_length": 100.0}}},
        "quarantined",
        "> 10.0",
    ),
    (
        "quality.symbol_word_ratio",
        "#tag #love #sun #fun great day at the beach with friends",
        PROSE,
        {"gating": {"quality": {"max_symbol_word_ratio": 0.5}}},
        "quarantined",
        "symbol-to-word ratio 0.364 (4/11) > 0.1",
    ),
    (
        "quality.bullet_lines",
        "- apples are red\n- bananas are yellow\n- cherries are dark\n- grapes are green",
        PROSE,
        {"gating": {"quality": {"max_bullet_line_ratio": 1.0}}},
        "quarantined",
        "bullet-line ratio 1.00 (4/4 lines) > 0.9",
    ),
    (
        "quality.ellipsis_lines",
        "The first story begins here and...\nAnother story about the town...\nA third tale of the sea is told here.",
        PROSE,
        {"gating": {"quality": {"max_ellipsis_line_ratio": 0.7}}},
        "quarantined",
        "ellipsis-line ratio 0.67 (2/3 lines) > 0.3",
    ),
    (
        "quality.duplicate_lines",
        "Welcome to our lovely garden shop\nWelcome to our lovely garden shop\nWe grow roses, tulips and herbs.",
        PROSE,
        {"gating": {"quality": {"max_duplicate_line_fraction": 0.5}}},
        "quarantined",
        "duplicate line fraction 0.33 (1/3) > 0.3",
    ),
    (
        "quality.duplicate_paragraphs",
        "Our garden shop opens at nine.\n\nOur garden shop opens at nine.\n\nWe grow roses, tulips and herbs.",
        _merge(PROSE, {"gating": {"quality": {"max_duplicate_line_fraction": 1.0}}}),
        {"gating": {"quality": {"max_duplicate_paragraph_fraction": 0.5}}},
        "quarantined",
        "duplicate paragraph fraction 0.33 (1/3) > 0.3",
    ),
    (
        "quality.top_ngram",
        "best cheap shoes best cheap shoes best cheap shoes for everyone who walks around town today",
        PROSE,
        {"gating": {"quality": {"max_top_ngram_char_fraction": {2: 0.6, 3: 0.6, 4: 0.6}}}},
        "quarantined",
        "top 2-gram 'best cheap' x3 covers 0.36 of characters > 0.2",
    ),
    (
        "quality.terminal_punctuation",
        "Home page of the shop\nAbout us and our team\nContact the owners\nProducts and services page",
        _merge(PROSE, {"gating": {"quality": {"min_terminal_punctuation_ratio": 0.5}}}),
        {"gating": {"quality": {"min_terminal_punctuation_ratio": 0.0}}},
        "quarantined",
        "terminal punctuation ratio 0.00 (0/4 lines) < 0.5",
    ),
    (
        "quality.curly_braces",
        "The template {name} greets {user} from {city} in {country} every single morning.",
        PROSE,
        {"gating": {"quality": {"max_curly_brace_ratio": 0.5}}},
        "quarantined",
        "> 0.02",
    ),
    (
        "code.autogenerated",
        "// Code generated by protoc-gen-go. DO NOT EDIT.\npackage foo\n\nfunc main() { run(1, 2) }\n",
        CODE,
        {"gating": {"code_quality": {"reject_autogenerated": False}}},
        "rejected",
        "in the first 10 lines",
    ),
    (
        "code.max_line_length",
        "x = [" + "1, " * 400 + "]\nprint(x)\n" + "y = 1\n" * 20,
        CODE,
        {"gating": {"code_quality": {"max_line_length": 5000}}},
        "quarantined",
        "longest line 1206 chars > max_line_length 1000",
    ),
    (
        "code.mean_line_length",
        ("value = compute(" + ", ".join(f"arg{i}" for i in range(25)) + ")\n") * 3,
        CODE,
        {"gating": {"code_quality": {"max_mean_line_length": 500.0}}},
        "quarantined",
        "> max_mean_line_length 100.0",
    ),
    (
        "code.alnum_fraction",
        "x = 1  # ==== ---- ++++ |||| //// \\\\\\\\ ~~~~ ^^^^ &&&& **** %%%% @@@@ !!!! ;;;; ::::",
        CODE,
        {"gating": {"code_quality": {"min_alnum_fraction": 0.0}}},
        "quarantined",
        "< min_alnum_fraction 0.25",
    ),
    ("language.mismatch", GERMAN, {}, {"gating": {"language": {"expected": ["de", "en"]}}}, "quarantined", "not in"),
    (
        "safety.lexicon.toxicity",
        "you idiot, you moron, shut up you stupid loser, you are a pathetic worthless idiot",
        {},
        {"gating": {"safety": {"max_scores": {"toxicity": 10000.0}}}},
        "quarantined",
        "toxicity",
    ),
]


@pytest.mark.parametrize(("rule_id", "text", "base", "relax", "disposition", "reason"), CASES)
def test_rule_fires_and_its_threshold_comes_from_config(
    rule_id: str, text: str, base: dict[str, Any], relax: dict[str, Any], disposition: str, reason: str
) -> None:
    clean = CLEAN_CODE if base.get("domain") == "code" else CLEAN
    domain = base.get("domain", "general")
    res = gate(_docs([clean, text], domain=domain), _spec(**base))
    assert res.accepted.column("text").to_pylist() == [clean]
    assert _fired(res, 0) == set()
    q = res.quarantine.to_pylist()
    assert [(r["rule_id"], r["disposition"]) for r in q] == [(rule_id, disposition)]
    assert reason in q[0]["reason"]
    assert res.counts[f"rule.{rule_id}"] == 1

    relaxed = gate(_docs([clean, text], domain=domain), _spec(**_merge(base, relax)))
    assert rule_id not in _fired(relaxed, 1)


def test_code_is_not_judged_by_prose_rules_and_prose_not_by_code_rules() -> None:
    code = "if (x) { y(); }\nfor (i = 0; i < n; i++) { a[i] = b[i] * 2; }\nreturn {a, b, c};\n"
    as_code = gate(_docs([code], domain="code"), _spec(domain="code"))
    assert as_code.counts["accepted"] == 1
    as_prose = gate(_docs([code]), _spec())
    assert as_prose.counts["quarantined"] == 1
    assert as_prose.quarantine.column("rule_id")[0].as_py().startswith("quality.")
    forced = gate(_docs([code]), _spec(gating={"rule_set": "prose"}, domain="code"))
    assert forced.counts["accepted"] == 0

    long_prose = "Words " * 300
    prose_rules = {r.id for r in rules_for(_spec())}
    assert "code.max_line_length" not in prose_rules and "quality.curly_braces" in prose_rules
    assert gate(_docs([long_prose.strip() + "."]), _spec()).counts.get("rule.code.max_line_length") is None


def test_rules_for_picks_rule_set_skips_language_for_code_and_removes_disabled() -> None:
    assert rule_set_for(_spec()) == "prose" and rule_set_for(_spec(domain="code")) == "code"
    assert rule_set_for(_spec(domain="code", gating={"rule_set": "prose"})) == "prose"
    code_ids = [r.id for r in rules_for(_spec(domain="code"))]
    assert "language.mismatch" not in code_ids and "code.alnum_fraction" in code_ids
    assert not any(i.startswith("quality.") and i not in {"quality.empty", "quality.too_short", "quality.too_long"}
                   for i in code_ids)  # fmt: skip
    ids = [r.id for r in rules_for(_spec(gating={"disabled_rules": ["quality.top_ngram", "pii.ip_address"]}))]
    assert "quality.top_ngram" not in ids and "pii" in ids
    order = [r.id for r in DEFAULT_RULES]
    assert ids == [i for i in order if i in ids]  # the catalogue's order is kept
    with pytest.raises(ValueError, match=r"gating\.disabled_rules.*'quality\.nope'"):
        rules_for(_spec(gating={"disabled_rules": ["quality.nope"]}))


def test_disabled_finer_id_drops_only_that_kind_of_hit() -> None:
    text = CLEAN + " Mail jane@example.com from 10.1.2.3 today."
    res = gate(_docs([text]), _spec(gating={"disabled_rules": ["pii.ip_address"]}))
    assert res.accepted.column("text")[0].as_py() == CLEAN + " Mail <EMAIL> from 10.1.2.3 today."
    assert res.counts["pii_hits_ip_address"] == 0 and res.counts["pii_hits_email"] == 1


def test_rules_version_is_stable_and_changes_with_a_rule_version() -> None:
    from mixassets.engine.rules import _rules_version

    assert _rules_version(DEFAULT_RULES) == RULES_VERSION and len(RULES_VERSION) == 12

    class Bumped(type(DEFAULT_RULES[0])):  # type: ignore[misc]
        version = DEFAULT_RULES[0].version + 1

    assert _rules_version([Bumped(), *DEFAULT_RULES[1:]]) != RULES_VERSION
    assert _rules_version(list(reversed(DEFAULT_RULES))) == RULES_VERSION


def test_every_rule_has_id_version_and_a_docstring() -> None:
    ids = [r.id for r in DEFAULT_RULES]
    assert len(ids) == len(set(ids))
    for r in DEFAULT_RULES:
        assert isinstance(r, Rule) and r.version >= 1 and (type(r).__doc__ or "").strip(), r.id


def test_chat_skips_layout_rules_but_is_judged_on_its_contents() -> None:
    chat = "ok\n\nok\n\nok\n\nthanks, that answers my question about the garden."
    res = gate(_docs([chat], kind="chat"), _spec())
    assert res.counts["accepted"] == 1
    lorem = "Lorem ipsum dolor sit amet please\n\nwhat does that placeholder text mean exactly?"
    held = gate(_docs([lorem], kind="chat"), _spec(gating={"disabled_rules": ["language.mismatch"]}))
    assert held.quarantine.column("rule_id").to_pylist() == ["quality.lorem_ipsum"]


def test_language_is_not_judged_when_short_or_unsure_and_metrics_count_it() -> None:
    short = "Guten Morgen, wie geht es dir heute?"  # under min_chars 50
    res = gate(_docs([CLEAN, short, GERMAN]), _spec())
    assert res.counts["accepted"] == 2 and res.counts["lang.en"] == 2  # the short one counts as declared
    reason = res.quarantine.column("reason")[0].as_py()
    assert reason.startswith("language de (") and "not in ['en']" in reason
    unsure = gate(_docs([GERMAN]), _spec(gating={"language": {"min_confidence": 1.0}}))
    assert unsure.counts["accepted"] == 1 and unsure.counts["lang.und"] == 1
    shorter = gate(_docs([GERMAN]), _spec(gating={"language": {"min_chars": 500}}))
    assert shorter.counts["accepted"] == 1 and shorter.counts["lang.en"] == 1
    german_source = gate(_docs([GERMAN]), _spec(language="de"))
    assert german_source.counts["accepted"] == 1 and german_source.counts["lang.de"] == 1


class _FakeClassifier:
    loads = 0

    def __init__(self, path: str):
        type(self).loads += 1
        self.path = path

    def unsafe_probability(self, texts: list[str]) -> list[float]:
        return [0.95 if "dangerous" in t else 0.1 for t in texts]


def test_classifier_rule_loads_once_per_gate_call_and_uses_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safety_rules, "load_classifier", _FakeClassifier)
    _FakeClassifier.loads = 0
    texts = [CLEAN, "This is a rather dangerous sentence written for the unit test."]
    res = gate(_docs(texts), _spec(gating={"safety": {"classifier_path": "/models/mod"}}))
    assert _FakeClassifier.loads == 1
    q = res.quarantine.to_pylist()
    assert [r["rule_id"] for r in q] == ["safety.classifier"]
    assert "unsafe probability 0.950 >= classifier_threshold 0.9" in q[0]["reason"]
    relaxed = gate(_docs(texts), _spec(gating={"safety": {"classifier_path": "/m", "classifier_threshold": 0.99}}))
    assert relaxed.counts["accepted"] == 2 and _FakeClassifier.loads == 2
    assert gate(_docs(texts), _spec()).counts["accepted"] == 2 and _FakeClassifier.loads == 2  # no path: no model


def test_missing_classifier_is_a_config_error_naming_the_field(tmp_path: Any) -> None:
    spec = _spec(gating={"safety": {"classifier_path": str(tmp_path / "absent")}})
    with pytest.raises(ValueError, match=r"source 'src': field 'gating\.safety\.classifier_path'"):
        gate(_docs([CLEAN]), spec)


def test_runner_metrics() -> None:
    res = gate(_docs([CLEAN, "tiny", CLEAN, "Lorem ipsum dolor sit amet, consectetur adipiscing elit sed."]), _spec())
    c = res.counts
    assert c["ingested"] == 4 == c["accepted"] + c["quarantined"] + c["rejected"]
    assert (c["accepted"], c["rejected"]) == (1, 3)
    assert c["accepted_rate"] == 0.25 and c["rejected_rate"] == 0.75 and c["quarantined_rate"] == 0.0
    assert c["domain.general"] == 1 and c["lang.en"] == 1 and c["stripped_lines"] == 0
    assert {k for k in c if k.startswith("time_s.")} == {f"time_s.{r.id}" for r in rules_for(_spec())}
    assert all(isinstance(v, int | float) for v in c.values())
    from mixassets.engine.pii import PII_TYPES

    assert all(f"pii_hits_{t.lower()}" in c for t in PII_TYPES)


@pytest.mark.parametrize(
    "limits", [{2: 0.2, 3: 0.18, 4: 0.16}, {1: 0.05, 2: 0.02, 3: 0.3, 5: 0.01}, {3: 0.0, 4: 0.1}, {2: 1.0}]
)
def test_top_ngram_bounds_give_the_counted_outcome(limits: dict[int, float]) -> None:
    import random

    from mixassets.engine.rules.base import GateContext
    from mixassets.engine.rules.quality_prose import TopNgramRule

    rng = random.Random(0)
    vocab = ["the", "of", "a", "click", "here", "to", "buy", "now", "É", "😀", "...", "straße", "X-Y", "—"]
    texts = ["", "one", "a a", "a a a a a a a a", "Click here to buy now! " * 12, "\r\n".join(["same line"] * 9)]
    texts += [
        " ".join(rng.choice(vocab[: rng.randint(2, len(vocab))]) for _ in range(rng.randint(0, 120)))
        for _ in range(400)
    ]
    spec = SourceSpec.model_validate(
        {"id": "s", "path": "s.jsonl", "format": "jsonl", "license": "MIT",
         "gating": {"quality": {"max_top_ngram_char_fraction": limits}}}
    )  # fmt: skip
    ctx = GateContext(spec=spec)
    rule = TopNgramRule()
    assert [rule.check(t, ctx) for t in texts] == [top_ngram_reference(t, limits) for t in texts]


def test_text_helpers_are_their_comprehensions() -> None:
    """``words`` and ``nonblank_lines`` run as C loops; they must give what the plain comprehensions give."""
    import random

    from mixassets.engine.rules import base

    rng = random.Random(1)
    alphabet = ' \t\n\r\x0b\x0c\x1c\x85\u2028\u3000\u00a0ab.,!?"\u201c\u201d\u2026\u2014-\u00e9\U0001f600\ud800'
    texts = [
        "",
        " ",
        "\r\n",
        "word",
        "x" * 10_000,
        *("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(5000)),
    ]
    for text in texts:
        assert base.words(text) == [s for tok in text.split() if (s := tok.strip(base._PUNCT))]
        assert base.nonblank_lines(text) == [s for line in text.splitlines() if (s := line.strip())]
