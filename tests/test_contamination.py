"""Eval contamination screen: 13-gram overlap of normalised word tokens."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from mixassets.engine.contamination import build_index, screen, unscreenable_fields
from mixassets.engine.text_norm import word_tokens
from mixassets.schema import DOCUMENT_SCHEMA, EVAL_ITEM_SCHEMA, FINDING_SCHEMA

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


def items_table(fields: dict[str, str], item_id: str = "HumanEval/0") -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "eval_set": "humaneval",
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


def docs_table(texts: dict[str, str]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"doc_id": d, "source_id": "web", "locator": f"f:{i}", "kind": "text", "text": t}
            for i, (d, t) in enumerate(texts.items())
        ],
        schema=DOCUMENT_SCHEMA,
    )


ITEMS = items_table({"prompt": PROMPT, "canonical_solution": SOLUTION, "entry_point": "has_close_elements"})


def reindented(code: str) -> str:
    """The same code as a blog would paste it: tabs, collapsed blank lines, trailing spaces."""
    return "\n".join("\t" + line.strip() + "  " for line in code.splitlines() if line.strip())


def test_finds_embedded_function_with_overlap_and_item_id() -> None:
    leaked = FILLER * 20 + "Here is my answer:\n" + reindented(PROMPT + SOLUTION) + "\n" + FILLER * 20
    docs = docs_table({"clean-1": FILLER * 30, "leak-1": leaked, "clean-2": "nothing to see"})
    clean, dirty, findings = screen(docs, ITEMS)
    assert clean.schema == DOCUMENT_SCHEMA and dirty.schema == DOCUMENT_SCHEMA
    assert findings.schema == FINDING_SCHEMA
    assert clean.column("doc_id").to_pylist() == ["clean-1", "clean-2"]
    assert dirty.column("doc_id").to_pylist() == ["leak-1"]
    rows = {r["field"]: r for r in findings.to_pylist()}
    assert set(rows) == {"prompt", "canonical_solution"}  # entry_point is too short to screen
    for r in rows.values():
        where = (r["doc_id"], r["source_id"], r["eval_set"], r["item_id"])
        assert where == ("leak-1", "web", "humaneval", "HumanEval/0")
        assert r["match_type"] == "ngram13"
        assert r["score"] == pytest.approx(1.0)
    assert rows["canonical_solution"]["overlap_text"] == " ".join(word_tokens(SOLUTION))
    assert rows["prompt"]["overlap_text"].startswith("from typing import list def has_close_elements")
    assert len(rows["prompt"]["overlap_text"]) <= 310


def test_partial_copy_scores_its_share() -> None:
    tokens = word_tokens(SOLUTION)
    half = " ".join(tokens[: len(tokens) // 2])
    _, dirty, findings = screen(docs_table({"d": FILLER + half + " " + FILLER}), ITEMS)
    assert dirty.num_rows == 1
    (row,) = findings.to_pylist()
    assert row["field"] == "canonical_solution"
    assert row["overlap_text"] == half
    n_item = len(tokens) - 13 + 1
    assert row["score"] == pytest.approx((len(tokens) // 2 - 13 + 1) / n_item)


def test_twelve_shared_tokens_are_not_flagged_but_thirteen_are() -> None:
    tokens = word_tokens(SOLUTION)
    twelve = FILLER + " ".join(tokens[:12]) + " " + FILLER
    thirteen = FILLER + " ".join(tokens[:13]) + " " + FILLER
    clean, dirty, findings = screen(docs_table({"t12": twelve, "t13": thirteen}), ITEMS)
    assert clean.column("doc_id").to_pylist() == ["t12"]
    assert dirty.column("doc_id").to_pylist() == ["t13"]
    assert findings.column("overlap_text").to_pylist() == [" ".join(tokens[:13])]


def test_n_is_configurable_and_named_in_match_type() -> None:
    tokens = word_tokens(SOLUTION)
    doc = docs_table({"d": FILLER + " ".join(tokens[:8]) + " " + FILLER})
    assert screen(doc, ITEMS)[1].num_rows == 0
    _, dirty, findings = screen(doc, ITEMS, n=8)
    assert dirty.num_rows == 1
    assert set(findings.column("match_type").to_pylist()) == {"ngram8"}


def test_unscreenable_fields_are_counted() -> None:
    short = unscreenable_fields(ITEMS)
    assert [(u.item_id, u.field, u.tokens) for u in short] == [("HumanEval/0", "entry_point", 1)]
    assert unscreenable_fields(ITEMS, n=1) == []
    index = build_index(ITEMS)
    assert len(index.fields) == 2 and len(index.unscreenable) == 1


def test_malformed_screen_fields_names_the_item() -> None:
    bad = items_table({"prompt": PROMPT}, item_id="HumanEval/7").set_column(
        4, "screen_fields", pa.array(["{not json"], pa.string())
    )
    with pytest.raises(ValueError, match=r"humaneval/HumanEval/7.*screen_fields"):
        screen(docs_table({"d": "x"}), bad)
    not_text = items_table({"prompt": PROMPT}).set_column(4, "screen_fields", pa.array(['{"prompt": 3}']))
    with pytest.raises(ValueError, match="not a string"):
        screen(docs_table({"d": "x"}), not_text)


def test_no_items_means_everything_is_clean() -> None:
    docs = docs_table({"a": reindented(SOLUTION)})
    clean, dirty, findings = screen(docs, EVAL_ITEM_SCHEMA.empty_table())
    assert clean.num_rows == 1 and dirty.num_rows == 0 and findings.num_rows == 0
