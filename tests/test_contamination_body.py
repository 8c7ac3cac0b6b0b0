"""The code screen's whole-block test (``code_body``) on real HumanEval solutions too short for canonical n-grams."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from benchmarks.code_contamination import docs_table, stdlib_files
from benchmarks.contamination_cases import renamed
from eval_assets.engine.registry import load_humaneval
from mixassets.engine.contamination import ScreenConfig, build_index, screen
from mixassets.engine.contamination_body import code_lines

CODE_ONLY = ScreenConfig(methods=("code",))
# Solutions with no canonical 28-gram and fewer than 10 layout-free canonical 10-grams: before the whole-block
# test, a renamed copy of any of them was found by no method.
SHORT = ("HumanEval/24", "HumanEval/49", "HumanEval/90", "HumanEval/122", "HumanEval/139")


@pytest.fixture(scope="module")
def humaneval() -> pa.Table:
    return load_humaneval()


def _solution(items: pa.Table, item_id: str) -> str:
    return items.filter(pc.equal(items["item_id"], item_id)).column("reference")[0].as_py()


def _body_hits(docs: list[str], items: pa.Table) -> list[tuple[str, str, str]]:
    findings = screen(docs_table(docs, "d"), items, config=CODE_ONLY)[2]
    body = findings.filter(pc.equal(findings["match_type"], "code_body"))
    return sorted(zip(*(body[c].to_pylist() for c in ("doc_id", "item_id", "kind")), strict=True))


def test_short_solutions_are_indexed_only_by_the_whole_block_test(humaneval) -> None:
    index = build_index(humaneval, config=CODE_ONLY)
    assert index.code is not None and index.code_fuzzy is not None
    rows = {(f.item_id, f.field): k for k, f in enumerate(index.fields)}
    for item_id in SHORT:
        k = rows[(item_id, "solution")]
        assert index.code.field_counts[k] == 0 and index.code_fuzzy.field_counts[k] == 0
        assert index.bodies[k] is not None
    # Prompts are left to the word tests; a solution under the minimum (``return x + y``) is not a block.
    assert all(index.bodies[k] is None for (_, name), k in rows.items() if name != "solution")
    assert ("HumanEval/53", "solution") in {(u.item_id, u.field) for u in index.unscreenable}


def test_renamed_short_solutions_are_found_alone_and_as_a_function_body(humaneval) -> None:
    rng = random.Random(0)
    alone = [renamed(_solution(humaneval, i), rng) for i in SHORT]
    host = dict(stdlib_files())["textwrap.py"]
    cut = host.index("\ndef ", len(host) // 2) + 1
    pasted = [host[:cut] + f'def helper(a, b):\n    """Does it."""\n{s}\n\n' + host[cut:] for s in alone]
    fenced = [f"Here is my answer:\n```python\n{s}```\nIt passes." for s in alone]
    docs = alone + pasted + fenced
    expected = [(f"d{k}", SHORT[k % len(SHORT)], "target") for k in range(len(docs))]
    assert _body_hits(docs, humaneval) == sorted(expected)
    # The span is the pasted body, in the document's own characters.
    findings = screen(docs_table(pasted[:1], "d"), humaneval, config=CODE_ONLY)[2].to_pylist()
    body = next(f for f in findings if f["match_type"] == "code_body")
    assert pasted[0][body["span_start"] : body["span_end"]] == alone[0].strip()


def test_re_indented_and_re_parenthesised_copies_match(humaneval) -> None:
    solution = _solution(humaneval, "HumanEval/49")  # ret = (2 * ret) % p
    tabs = solution.replace("    ", "\t")
    formatted = solution.replace("(2 * ret) % p", "(2 * ret % p)").replace("range(n)", "range(n,)")
    assert [d for d, *_ in _body_hits([tabs, formatted], humaneval)] == ["d0", "d1"]


def test_a_block_that_is_not_whole_or_differs_in_a_literal_is_no_match(humaneval) -> None:
    solution = _solution(humaneval, "HumanEval/49")
    header = "def f(n, p):\n"
    docs = [
        header + solution + "    log(ret)\n",  # the block goes on after the solution's lines
        header + "    p = p or 7\n" + solution,  # a statement before them at the same depth
        header + solution.replace("2 * ret", "3 * ret"),  # another number: another program
        header + solution.replace("    return ret", "        return ret"),  # another nesting
    ]
    assert _body_hits(docs, humaneval) == []
    assert _body_hits([header + solution], humaneval) == [("d0", "HumanEval/49", "target")]


def test_logical_lines_join_brackets_and_continuations_and_skip_comments() -> None:
    text = "x = f(1,\n      2)  # c\n# only a comment\ny = 1 + \\\n    2\n  )\n"
    lines = code_lines(text)
    assert [line.tokens for line in lines] == [("ID", "=", "ID", "1", ",", "2"), ("ID", "=", "1", "+", "2")]
    assert [line.indent for line in lines] == [0, 0]
    assert text[lines[1].start : lines[1].end] == "y = 1 + \\\n    2"
