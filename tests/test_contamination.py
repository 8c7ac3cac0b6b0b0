"""Eval contamination screen: exact n-gram overlap with spans, fuzzy containment/Jaccard, holdout vs target, report."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixassets.engine import contamination
from mixassets.engine.contamination import (
    ITEM_LEAK_SCHEMA,
    REPORT_SCHEMA,
    ScreenConfig,
    build_index,
    contamination_report,
    item_leaks,
    screen,
    screen_tokens,
    token_spans,
    unscreenable_fields,
)
from mixtrain.schema import DOCUMENT_SCHEMA, EVAL_ITEM_SCHEMA, FINDING_SCHEMA

PROMPT = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    """
'''
SOLUTION = """    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2:
                distance = abs(elem - elem2)
                if distance < threshold:
                    return True

    return False
"""
# Unrelated filler whose words never occur in the item.
FILLER = "Yesterday our team shipped brand new release notes covering caching layers plus observability dashboards. "
NGRAM_ONLY = ScreenConfig(methods=("ngram",))


def items_table(fields: dict[str, str], item_id: str = "HumanEval/0", eval_set: str = "humaneval") -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "eval_set": eval_set,
                "item_id": item_id,
                "prompt": fields.get("prompt", ""),
                "reference": fields.get("canonical_solution", ""),
                "screen_fields": json.dumps(fields),
                "metadata": None,
                "checksum": "x",
                "version": "1",
            }
        ],
        schema=EVAL_ITEM_SCHEMA,
    )


def docs_table(texts: dict[str, str | None], source: str = "web") -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"doc_id": d, "source_id": source, "locator": f"f:{i}", "kind": "text", "text": t}
            for i, (d, t) in enumerate(texts.items())
        ],
        schema=DOCUMENT_SCHEMA,
    )


ITEMS = items_table({"prompt": PROMPT, "canonical_solution": SOLUTION, "entry_point": "has_close_elements"})


def reindented(code: str) -> str:
    """The same code as a blog would paste it: tabs, collapsed blank lines, trailing spaces."""
    return "\n".join("\t" + line.strip() + "  " for line in code.splitlines() if line.strip())


def merged(text: str, every: int = 14) -> str:
    """The tokens with every ``every``-th pair run together ("return True" -> "returnTrue"), so that unchanged
    runs are ``every`` - 2 tokens long: at 14, no 13-gram survives but 8 of every 14 5-grams do."""
    tokens = screen_tokens(text)
    return " ".join("".join(tokens[k : k + 2]) if k % every == 0 else t for k, t in enumerate(tokens) if k % every != 1)


def shingles(text: str, n: int = 5) -> set[str]:
    """Word n-grams as plain strings: an independent reference for the engine's hashed shingles."""
    tokens = re.findall(r"\w+", text.lower())
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def by_key(findings: pa.Table) -> dict[tuple[str, str, str], dict]:
    return {(r["doc_id"], r["field"], r["match_type"]): r for r in findings.to_pylist()}


def test_finds_embedded_function_with_overlap_span_and_kind() -> None:
    pasted = reindented(PROMPT + SOLUTION)
    leaked = FILLER * 20 + "Here is my answer:\n" + pasted + "\n" + FILLER * 20
    docs = docs_table({"clean-1": FILLER * 30, "leak-1": leaked, "clean-2": "nothing to see"})
    clean, dirty, findings = screen(docs, ITEMS)
    assert clean.schema == DOCUMENT_SCHEMA and dirty.schema == DOCUMENT_SCHEMA
    assert findings.schema == FINDING_SCHEMA
    assert clean.column("doc_id").to_pylist() == ["clean-1", "clean-2"]
    assert dirty.column("doc_id").to_pylist() == ["leak-1"]
    rows = by_key(findings)
    # entry_point is too short to screen; each method that fires gives its own row, exact first. The code
    # method also screens the item's Python fields joined (prompt+canonical_solution); its fuzzy half
    # (code_containment) also screens the prompt, whose signature alone is too short for 28-grams; its line test
    # (code_lines) screens each field, not the joined one (lines do not cross fields).
    assert list(rows) == [
        ("leak-1", "prompt", "ngram13"),
        ("leak-1", "prompt", "containment"),
        ("leak-1", "prompt", "code_containment"),
        ("leak-1", "prompt", "code_lines"),
        ("leak-1", "canonical_solution", "ngram13"),
        ("leak-1", "canonical_solution", "containment"),
        ("leak-1", "canonical_solution", "code28"),
        ("leak-1", "canonical_solution", "code_containment"),
        ("leak-1", "canonical_solution", "code_lines"),
        ("leak-1", "prompt+canonical_solution", "code28"),
        ("leak-1", "prompt+canonical_solution", "code_containment"),
    ]
    for (_, name, _), r in rows.items():
        assert (r["source_id"], r["eval_set"], r["item_id"]) == ("web", "humaneval", "HumanEval/0")
        assert r["kind"] == {"prompt": "holdout", "canonical_solution": "target"}.get(name, "target")
        if r["match_type"] != "code_containment":
            assert r["score"] == pytest.approx(1.0)
    # The fuzzy code test is approximate by design: at most a k-gram or two at the copy's seams may not match.
    assert all(r["score"] >= 0.8 for (_, _, m), r in rows.items() if m == "code_containment")
    exact = rows[("leak-1", "canonical_solution", "ngram13")]
    assert exact["overlap_text"] == " ".join(screen_tokens(SOLUTION))
    # The span is in the original text: it starts at the first solution token and ends after the last.
    start = leaked.index("for idx, elem")
    assert (exact["span_start"], exact["span_end"]) == (start, leaked.index("return False") + len("return False"))
    assert rows[("leak-1", "prompt", "ngram13")]["overlap_text"].startswith("from typing import list def has_close")
    assert len(rows[("leak-1", "prompt", "ngram13")]["overlap_text"]) <= 310
    contained = rows[("leak-1", "prompt", "containment")]
    assert leaked[contained["span_start"] : contained["span_end"]].startswith("from typing")
    assert leaked.index(pasted) <= contained["span_start"] < contained["span_end"] <= leaked.index(pasted) + len(pasted)


def test_partial_copy_scores_its_share() -> None:
    tokens = screen_tokens(SOLUTION)
    half = " ".join(tokens[: len(tokens) // 2])
    _, dirty, findings = screen(docs_table({"d": FILLER + half + " " + FILLER}), ITEMS, config=NGRAM_ONLY)
    assert dirty.num_rows == 1
    (row,) = findings.to_pylist()
    assert row["field"] == "canonical_solution"
    assert row["overlap_text"] == half
    n_item = len(tokens) - 13 + 1
    assert row["score"] == pytest.approx((len(tokens) // 2 - 13 + 1) / n_item)


def test_twelve_shared_tokens_are_not_flagged_but_thirteen_are() -> None:
    tokens = screen_tokens(SOLUTION)
    twelve = FILLER + " ".join(tokens[:12]) + " " + FILLER
    thirteen = FILLER + " ".join(tokens[:13]) + " " + FILLER
    clean, dirty, findings = screen(docs_table({"t12": twelve, "t13": thirteen}), ITEMS)
    assert clean.column("doc_id").to_pylist() == ["t12"]
    assert dirty.column("doc_id").to_pylist() == ["t13"]
    assert findings.column("overlap_text").to_pylist() == [" ".join(tokens[:13])]
    (row,) = findings.to_pylist()
    assert thirteen[row["span_start"] : row["span_end"]] == " ".join(tokens[:13])


def test_n_is_configurable_and_named_in_match_type() -> None:
    tokens = screen_tokens(SOLUTION)
    doc = docs_table({"d": FILLER + " ".join(tokens[:8]) + " " + FILLER})
    assert screen(doc, ITEMS)[1].num_rows == 0
    _, dirty, findings = screen(doc, ITEMS, n=8)
    assert dirty.num_rows == 1
    assert set(findings.column("match_type").to_pylist()) == {"ngram8"}
    assert screen(doc, ITEMS, config=ScreenConfig(n=8))[1].num_rows == 1
    with pytest.raises(ValueError, match=r"conflicts with config\.n"):
        screen(doc, ITEMS, n=8, config=ScreenConfig(n=9))


def test_ngrams_never_span_two_documents_even_across_chunks() -> None:
    """Documents are hashed as one concatenated array per chunk; an n-gram may not bridge two of them."""
    tokens = screen_tokens(SOLUTION)
    first, second = " ".join(tokens[:7]), " ".join(tokens[7:14])
    texts: dict[str, str | None] = {f"f{k}": FILLER for k in range(contamination._CHUNK * 2 + 10)}
    texts["f2"], texts["f3"] = FILLER + first, second + FILLER  # split halves inside a chunk
    last = contamination._CHUNK - 1
    texts[f"f{last}"], texts[f"f{last + 1}"] = FILLER + first, second + FILLER  # and across the chunk boundary
    texts[f"f{last + 5}"] = FILLER + " ".join(tokens[:13])  # a real hit in the second chunk
    texts["f7"] = None
    clean, dirty, findings = screen(docs_table(texts), ITEMS)
    assert dirty.column("doc_id").to_pylist() == [f"f{last + 5}"]
    assert clean.num_rows == len(texts) - 1  # the null-text document is screened as empty, so it is clean
    assert findings.column("span_end").to_pylist() == [len(texts[f"f{last + 5}"])]


def test_containment_catches_an_edited_copy_that_breaks_every_13gram() -> None:
    edited = merged(PROMPT + SOLUTION)
    doc = FILLER * 40 + edited + FILLER * 40
    docs = docs_table({"d": doc})
    assert screen(docs, ITEMS, config=NGRAM_ONLY)[1].num_rows == 0
    _, dirty, findings = screen(docs, ITEMS)
    assert dirty.num_rows == 1
    rows = by_key(findings)
    assert set(rows) == {("d", "prompt", "containment"), ("d", "canonical_solution", "containment")}
    for name, text in (("prompt", PROMPT), ("canonical_solution", SOLUTION)):
        item = shingles(text)
        assert rows[("d", name, "containment")]["score"] == pytest.approx(len(item & shingles(doc)) / len(item))
        assert rows[("d", name, "containment")]["score"] >= 0.5
    span = rows[("d", "prompt", "containment")]
    start = doc.index(edited)
    assert start <= span["span_start"] < span["span_end"] <= start + len(edited)


def test_below_containment_threshold_is_clean_and_threshold_is_configurable() -> None:
    tokens = screen_tokens(SOLUTION)
    part = " ".join(tokens[:12])  # 8 of the solution's 22 shingles: 0.36
    docs = docs_table({"d": FILLER + part + " " + FILLER})
    assert screen(docs, ITEMS)[1].num_rows == 0
    findings = screen(docs, ITEMS, config=ScreenConfig(containment_threshold=0.3))[2]
    (row,) = findings.to_pylist()
    assert (row["match_type"], row["field"], row["score"]) == (
        "containment",
        "canonical_solution",
        pytest.approx(8 / 22),
    )


def test_jaccard_labels_a_near_copy_with_the_exact_similarity() -> None:
    copy = SOLUTION.replace("abs", "absolute")
    expected = len(shingles(SOLUTION) & shingles(copy)) / len(shingles(SOLUTION) | shingles(copy))
    assert 0.6 < expected < 0.8
    docs = docs_table({"copy": copy, "long": FILLER * 5 + SOLUTION})
    assert ("copy", "canonical_solution", "jaccard") not in by_key(screen(docs, ITEMS)[2])  # default 0.8
    rows = by_key(screen(docs, ITEMS, config=ScreenConfig(jaccard_threshold=0.6))[2])
    assert rows[("copy", "canonical_solution", "jaccard")]["score"] == pytest.approx(expected)
    assert rows[("copy", "canonical_solution", "jaccard")]["kind"] == "target"
    assert rows[("copy", "canonical_solution", "containment")]["score"] > expected
    # The long document contains the whole solution but is mostly something else: containment, no Jaccard.
    assert rows[("long", "canonical_solution", "containment")]["score"] == 1.0
    assert ("long", "canonical_solution", "jaccard") not in rows


def test_jaccard_alone_screens_when_containment_is_disabled() -> None:
    only = ScreenConfig(methods=("jaccard",))
    _, dirty, findings = screen(docs_table({"copy": SOLUTION, "long": FILLER * 5 + SOLUTION}), ITEMS, config=only)
    assert dirty.column("doc_id").to_pylist() == ["copy"]
    assert findings.column("match_type").to_pylist() == ["jaccard"]
    assert findings.column("score").to_pylist() == [pytest.approx(1.0)]


def test_field_kinds_default_override_and_unknown() -> None:
    fields = {"question": SOLUTION, "Answer": PROMPT, "code": PROMPT + SOLUTION}
    items = items_table(fields)
    doc = docs_table({"d": PROMPT + SOLUTION})
    kinds = {r["field"]: r["kind"] for r in screen(doc, items)[2].to_pylist()}
    # Field names match case-insensitively; a name the mapping lacks is a holdout (see the module docstring).
    assert kinds == {"question": "holdout", "Answer": "target", "code": "holdout"}
    custom = ScreenConfig(field_kinds={"code": "target", "answer": "target"})
    kinds = {r["field"]: r["kind"] for r in screen(doc, items, config=custom)[2].to_pylist()}
    assert kinds == {"question": "holdout", "Answer": "target", "code": "target"}
    with pytest.raises(ValueError, match="field_kinds"):
        ScreenConfig(field_kinds={"code": "answer"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be >= 1"),
        ({"containment_threshold": 0.0}, "containment_threshold"),
        ({"jaccard_threshold": 1.5}, "jaccard_threshold"),
        ({"methods": ()}, "methods"),
        ({"methods": ("ngram", "minhash")}, "methods"),
        ({"fuzzy_min_shingles": 0}, "fuzzy_min_shingles"),
    ],
)
def test_bad_config_is_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScreenConfig(**kwargs)


def test_unscreenable_fields_depend_on_the_enabled_methods() -> None:
    short = unscreenable_fields(ITEMS)
    assert [(u.item_id, u.field, u.tokens) for u in short] == [("HumanEval/0", "entry_point", 1)]
    assert unscreenable_fields(ITEMS, n=1) == []
    index = build_index(ITEMS)
    assert len(index.fields) == 3 and len(index.unscreenable) == 1  # prompt, solution, the two joined (code)
    twelve = items_table({"solution": " ".join(screen_tokens(SOLUTION)[:12])})
    assert unscreenable_fields(twelve) == []  # 8 shingles: enough for containment
    assert [u.tokens for u in unscreenable_fields(twelve, config=NGRAM_ONLY)] == [12]
    assert [u.tokens for u in unscreenable_fields(twelve, config=ScreenConfig(fuzzy_min_shingles=9))] == [12]


def test_malformed_screen_fields_names_the_item() -> None:
    bad = items_table({"prompt": PROMPT}, item_id="HumanEval/7").set_column(
        4, "screen_fields", pa.array(["{not json"], pa.string())
    )
    with pytest.raises(ValueError, match=r"humaneval/HumanEval/7.*screen_fields"):
        screen(docs_table({"d": "x"}), bad)
    not_text = items_table({"prompt": PROMPT}).set_column(4, "screen_fields", pa.array(['{"prompt": 3}']))
    with pytest.raises(ValueError, match="not a string"):
        screen(docs_table({"d": "x"}), not_text)
    with pytest.raises(ValueError, match=r"document table lacks required column\(s\) \['text'\]"):
        screen(docs_table({"d": "x"}).drop_columns(["text"]), ITEMS)


def test_no_items_means_everything_is_clean() -> None:
    docs = docs_table({"a": reindented(SOLUTION)})
    clean, dirty, findings = screen(docs, EVAL_ITEM_SCHEMA.empty_table())
    assert clean.num_rows == 1 and dirty.num_rows == 0 and findings.num_rows == 0


def test_spans_point_into_non_ascii_text() -> None:
    """NFKC and case folding can change lengths; spans must still index the document as stored."""
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "Fullwidth")
    prefix = f"{fullwidth} \ufb01le naïve cafe\u0301 — İstanbul ß "
    doc = prefix + SOLUTION.upper() + " \ufb01n"
    _, _, findings = screen(docs_table({"d": doc}), ITEMS, config=NGRAM_ONLY)
    (row,) = findings.to_pylist()
    assert row["span_start"] == doc.index("FOR IDX")
    assert doc[row["span_start"] : row["span_end"]] == SOLUTION.upper().strip()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80))
def test_token_spans_agree_with_the_fast_tokenizer(text: str) -> None:
    tokens, starts, ends = token_spans(text)
    assert tokens == screen_tokens(text)
    for token, start, end in zip(tokens, starts, ends, strict=True):
        assert 0 <= start < end <= len(text)
        assert token in "".join(screen_tokens(text[start:end]))


def test_ascii_tokens_are_the_lowercased_word_runs() -> None:
    text = "def f(x_1, Y2):\n\treturn x_1+Y2  # Mixed-Case, punctuation!?"
    assert screen_tokens(text) == re.findall(r"\w+", text.lower()) == token_spans(text)[0]


def _two_set_items() -> pa.Table:
    other = items_table(
        {"question": "What is the airspeed velocity of an unladen swallow in furlongs?"}, "q1", "trivia"
    )
    short = items_table({"question": "Why?"}, "q2", "trivia")
    return pa.concat_tables([ITEMS, other, short])


def test_contamination_report_counts_items_kinds_sources_and_documents() -> None:
    items = _two_set_items()
    web = docs_table({"w1": FILLER + SOLUTION, "w2": PROMPT + FILLER, "w3": FILLER})
    forum = docs_table({"f1": PROMPT + SOLUTION}, source="forum")
    _, _, findings = screen(pa.concat_tables([web, forum]), items)
    report = contamination_report(findings, items)
    assert report.schema == REPORT_SCHEMA
    humaneval, trivia = report.to_pylist()
    assert humaneval == {
        "eval_set": "humaneval",
        "items": 1,
        "items_leaked": 1,
        "holdout_leaked": 1,
        "target_leaked": 1,
        "leaked_share": 1.0,
        "sources": ["forum", "web"],
        "documents_hit": 3,
        "fields_unscreenable": 1,
    }
    assert trivia == {
        "eval_set": "trivia",
        "items": 2,
        "items_leaked": 0,
        "holdout_leaked": 0,
        "target_leaked": 0,
        "leaked_share": 0.0,
        "sources": [],
        "documents_hit": 0,
        "fields_unscreenable": 2,  # q1 has 11 tokens (< 13, < 8 shingles), q2 one
    }
    target_only = findings.filter(pc.equal(findings["kind"], "target"))
    (row, _) = contamination_report(target_only, items).to_pylist()
    assert (row["holdout_leaked"], row["target_leaked"], row["documents_hit"]) == (0, 1, 2)


def test_a_prebuilt_index_gives_the_same_screen_and_report() -> None:
    items = _two_set_items()
    docs = pa.concat_tables([docs_table({"w1": FILLER + SOLUTION, "w2": PROMPT}), docs_table({"f": PROMPT}, "forum")])
    index = build_index(items, config=NGRAM_ONLY)
    fresh = screen(docs, items, config=NGRAM_ONLY)
    reused = screen(docs, items, config=NGRAM_ONLY, index=index)
    assert all(a.equals(b) for a, b in zip(fresh, reused, strict=True))
    assert screen(docs, items, index=index)[2].equals(fresh[2])
    report = contamination_report(fresh[2], items, config=NGRAM_ONLY)
    assert contamination_report(fresh[2], items, unscreenable=index.unscreenable).equals(report)
    assert [r["fields_unscreenable"] for r in report.to_pylist()] == [1, 2]
    with pytest.raises(ValueError, match="index was built with"):
        screen(docs, items, config=ScreenConfig(), index=index)
    with pytest.raises(ValueError, match="index was built with"):
        screen(docs, items, n=7, index=index)
    with pytest.raises(ValueError, match="eval set 'trivia', not in the items"):
        contamination_report(fresh[2].slice(0, 0), ITEMS, unscreenable=index.unscreenable)


def test_contamination_report_rejects_findings_of_unknown_items() -> None:
    _, _, findings = screen(docs_table({"d": PROMPT}), ITEMS)
    with pytest.raises(ValueError, match=r"not in the items table.*HumanEval/0"):
        contamination_report(findings, _two_set_items().slice(1))


def test_item_leaks_lists_each_leaked_item_once() -> None:
    docs = pa.concat_tables(
        [docs_table({"w1": FILLER + SOLUTION}), docs_table({"f1": PROMPT + SOLUTION + FILLER}, source="forum")]
    )
    leaks = item_leaks(screen(docs, ITEMS)[2])
    assert leaks.schema == ITEM_LEAK_SCHEMA
    (row,) = leaks.to_pylist()
    assert row["item_id"] == "HumanEval/0"
    assert row["kinds"] == ["holdout", "target"]
    assert row["fields"] == ["canonical_solution", "prompt", "prompt+canonical_solution"]
    # f1 holds the solution as the whole body of the function (code_body); in w1 it follows prose on its line.
    # Both hold the solution's lines (code_lines).
    assert row["match_types"] == ["code28", "code_body", "code_containment", "code_lines", "containment", "ngram13"]
    assert (row["documents"], row["sources"]) == (2, ["forum", "web"])
    assert row["example_doc_id"] == "f1" and row["example_overlap"].lower().startswith("from typing import list")
    assert item_leaks(FINDING_SCHEMA.empty_table()).num_rows == 0
