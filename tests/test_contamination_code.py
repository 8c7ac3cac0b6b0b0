"""The code-aware screen (``code<n>``) on real HumanEval programs renamed, and on real stdlib code."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from benchmarks.code_contamination import (
    docs_table,
    rename_map,
    rename_tokens,
    rename_unparse,
    stdlib_files,
    strip_docstrings,
)
from eval_assets.engine.registry import load_humaneval
from mixassets.engine.contamination import ScreenConfig, build_index, screen
from mixassets.engine.contamination_code import (
    PLACEHOLDER,
    DocTokens,
    _layout_free,
    compressed,
    field_fuzzy_grams,
    regex_code_tokens,
    tokenize_code_tokens,
)
from mixassets.engine.text_norm import TokenHasher

WORDS_ONLY = ScreenConfig(methods=("ngram", "containment", "jaccard"))
CODE_ONLY = ScreenConfig(methods=("code",))


@pytest.fixture(scope="module")
def humaneval() -> pa.Table:
    return load_humaneval()


@pytest.fixture(scope="module")
def stdlib() -> list[tuple[str, str]]:
    return stdlib_files()


def _program(items: pa.Table, item_id: str) -> str:
    row = items.filter(pa.compute.equal(items["item_id"], item_id)).to_pylist()[0]
    return row["prompt"] + row["reference"]


def test_regex_tokens_equal_python_tokenize_on_stdlib_and_humaneval(humaneval, stdlib) -> None:
    """Documents go through the regex tokenizer and items through ``tokenize``: they must agree on Python."""
    sample = stdlib[::25]
    checked = 0
    for path, text in sample:
        expected = tokenize_code_tokens(text)
        if expected is None:  # not tokenizable (a deliberately broken test fixture)
            continue
        assert regex_code_tokens(text) == expected, path
        checked += 1
    assert checked > 60
    for row in humaneval.to_pylist():
        for text in (row["prompt"], row["reference"]):
            assert regex_code_tokens(text) == tokenize_code_tokens(text), row["item_id"]


def test_canonical_tokens_ignore_a_rename_but_keep_keywords_builtins_and_literal_kinds() -> None:
    a = regex_code_tokens("def f(xs):\n    return sorted(x * 2 for x in xs if x > 0.5)  # note\n")
    b = regex_code_tokens("def gg(items):\n  return sorted(item*2 for item in items if item>0.5)\n")
    assert a == b
    assert a[:2] == ["def", PLACEHOLDER] and "sorted" in a and "for" in a and "N" in a
    assert regex_code_tokens("s = 'it''s' + \"x\"") == [PLACEHOLDER, "=", "S", "S", "+", "S"]


def test_regex_tokenizer_survives_prose_and_broken_code() -> None:
    for text in ("It's a \"quote that never closes", 'x = """unclosed', "\x00\x00", "∑ ≠ ∞ ü", "a\\\nb", ""):
        regex_code_tokens(text)  # never raises
        docs = DocTokens([text], TokenHasher())
        assert len(docs.char_starts) == len(regex_code_tokens(text)) == len(docs.hashes)
    assert tokenize_code_tokens('x = """unclosed') is None  # the item side falls back to the regex
    # A name glued to a string it is not a prefix of (a regex renamer's ``r'...'``) stays a name, then the string.
    assert regex_code_tokens("re.split(x2'[.?!]', s)") == regex_code_tokens("re.split(x2 '[.?!]', s)")
    assert regex_code_tokens("rb'a' f'b'") == ["S", "S"]


def test_periodic_runs_collapse_to_one_period() -> None:
    hasher = TokenHasher()
    tokens = ["ID", "=", "[", "N", ",", "N", ",", "N", ",", "N", ",", "N", "]"]
    kept = [tokens[i] for i in compressed(hasher.hashes(tokens))]
    assert kept == ["ID", "=", "[", "N", ",", "]"]


@pytest.mark.parametrize("variant", ["tokens", "unparse", "no_docstring"])
def test_renamed_humaneval_program_inside_stdlib_code_is_found(humaneval, stdlib, variant) -> None:
    item_id = "HumanEval/0"
    program = _program(humaneval, item_id)
    mapping = rename_map(program, random.Random(0))
    renamed = {
        "tokens": rename_tokens(program, mapping),
        "unparse": rename_unparse(program, mapping),
        "no_docstring": strip_docstrings(rename_unparse(program, mapping)),
    }[variant]
    assert "def has_close_elements(numbers" not in renamed and "for idx, elem" not in renamed
    host = dict(stdlib)["textwrap.py"]
    cut = host.index("\ndef ", len(host) // 2) + 1
    doc = host[:cut] + renamed + "\n\n" + host[cut:]
    docs = docs_table([doc], "d")
    items = humaneval.slice(0, 5)
    _, dirty, findings = screen(docs, items, config=ScreenConfig())
    code = findings.filter(pa.compute.starts_with(findings["match_type"], "code"))
    assert dirty.num_rows == 1 and set(code["item_id"].to_pylist()) == {item_id}
    # The exact 28-gram test and its fuzzy half both see the copy (the latter is what survives ast.unparse).
    methods = {"code28", "code_containment", "code_body", "code_lines"}
    assert "code_containment" in set(code["match_type"].to_pylist()) <= methods
    best = max(code.to_pylist(), key=lambda f: f["span_end"] - f["span_start"])
    # The evidence span lies inside the pasted program, in the document's own offsets.
    assert cut <= best["span_start"] < best["span_end"] <= cut + len(renamed)
    assert "for" in doc[best["span_start"] : best["span_end"]]
    if variant == "no_docstring":  # nothing but the code is left: the word methods see no overlap
        assert screen(docs, items, config=WORDS_ONLY)[2].num_rows == 0


def test_no_code_finding_on_stdlib_files(humaneval, stdlib) -> None:
    """Every tenth stdlib file (real library code, full of the idioms HumanEval uses) is clean for the code test."""
    docs = docs_table([t for _, t in stdlib[::10]], "stdlib")
    _, dirty, findings = screen(docs, humaneval, config=CODE_ONLY)
    assert findings.num_rows == 0, findings.select(["doc_id", "item_id", "field"]).to_pylist()[:5]
    assert dirty.num_rows == 0


def test_code_fields_and_their_join_are_indexed(humaneval) -> None:
    index = build_index(humaneval.slice(0, 20), config=CODE_ONLY)
    names = {f.field for f in index.fields}
    assert names <= {"solution", "prompt", "prompt+solution"} and "prompt+solution" in names
    assert index.code is not None and index.code.g == 28
    joined = [f for f in index.fields if f.field == "prompt+solution"]
    assert all(f.kind == "target" for f in joined)
    # Prose is never code-screened: a question field does not parse as Python.
    question = '{"question": "' + "What is the answer? " * 20 + '"}'
    prose = pa.Table.from_pylist(
        [{**humaneval.slice(0, 1).to_pylist()[0], "screen_fields": question}], schema=humaneval.schema
    )
    assert build_index(prose, config=CODE_ONLY).unscreenable[0].field == "question"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"code_n": 0}, "code_n"),
        ({"code_min_tokens": 0}, "code_min"),
        ({"code_containment_n": 0}, "code_containment_n"),
        ({"code_containment_min_grams": 0}, "code_containment_min"),
        ({"code_containment_threshold": 0.0}, "code_containment_threshold"),
        ({"code_containment_threshold": 1.5}, "code_containment_threshold"),
        ({"code_body_min_tokens": 0}, "code_body_min_tokens"),
        ({"code_lines_min_tokens": 0}, "code_lines_min_tokens"),
        ({"code_lines_min_lines": 0}, "code_lines_min_lines"),
        ({"code_lines_min_weight": 0}, "code_lines_min_weight"),
        ({"code_lines_threshold": 0.0}, "code_lines_threshold"),
        ({"code_lines_threshold": 1.5}, "code_lines_threshold"),
    ],
)
def test_bad_code_settings_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScreenConfig(**kwargs)


def test_code_screen_matches_a_batch_split(humaneval, stdlib) -> None:
    """Findings do not depend on how documents are grouped into chunks (runs never cross documents)."""
    program = _program(humaneval, "HumanEval/0")
    texts = [t for _, t in stdlib[1:40:3]] + [program] + [t for _, t in stdlib[2:30:4]]
    docs = docs_table(texts, "d")
    whole = screen(docs, humaneval.slice(0, 5), config=CODE_ONLY)[2]
    parts = [screen(docs.slice(i, 7), humaneval.slice(0, 5), config=CODE_ONLY)[2] for i in range(0, len(texts), 7)]
    assert pa.concat_tables(parts).to_pylist() == whole.to_pylist()
    assert whole.num_rows >= 1 and np.all(np.array(whole["score"].to_pylist()) > 0)


def test_layout_free_stream_ignores_parentheses_and_trailing_commas() -> None:
    """What ``ast.unparse`` and formatters change freely is out of the fuzzy stream; brackets with meaning stay."""
    hasher = TokenHasher()

    def stream(text: str) -> list[str]:
        tokens = regex_code_tokens(text)
        return [t for t, keep in zip(tokens, _layout_free(hasher.hashes(tokens), hasher), strict=True) if keep]

    assert stream("return (a, b)") == stream("return a, b")
    assert stream("x = [1, 2,]") == stream("x = [1, 2]") == ["ID", "=", "[", "N", ",", "N", "]"]
    assert stream("y = (a +\n     b)") == stream("y = a + b")
    assert stream("f(x)[0]") != stream("f(x)")


def test_renamed_solution_bodies_are_found_by_the_fuzzy_code_test(humaneval) -> None:
    """Every HumanEval solution body, renamed and on its own (the hardest leak: no signature, no docstring), and
    every renamed program through ``ast.unparse`` without its docstring: the fuzzy test finds >= 95% of those whose
    solution it indexes, and more bodies than the exact 28-gram test (which finds 90% of them here, fewer in a host)."""
    index = build_index(humaneval, config=CODE_ONLY)
    assert index.code_fuzzy is not None and index.code_fuzzy.g == 10
    indexed = {
        f.item_id
        for f, count in zip(index.fields, index.code_fuzzy.field_counts, strict=True)
        if count and f.field == "solution"
    }
    assert len(indexed) >= 0.7 * humaneval.num_rows  # the rest are one- or two-line idioms: unscreenable
    rng = random.Random(0)
    texts, owners = [], []
    for row in humaneval.to_pylist():
        if row["item_id"] not in indexed:
            continue
        program = row["prompt"] + row["reference"]
        mapping = rename_map(program, rng)
        body = rename_tokens(program, mapping)[len(rename_tokens(row["prompt"], mapping)) :]
        texts += [body, strip_docstrings(rename_unparse(program, mapping))]
        owners += [row["item_id"]] * 2
    _, _, findings = screen(docs_table(texts, "d"), humaneval, config=CODE_ONLY, index=index)
    by_method: dict[str, set[tuple[str, str]]] = {}
    for f in findings.to_pylist():
        by_method.setdefault(f["match_type"], set()).add((f["doc_id"], f["item_id"]))
    fuzzy = by_method.get("code_containment", set())
    exact = by_method.get("code28", set())
    bodies = [(f"d{i}", o) for i, o in enumerate(owners) if i % 2 == 0]
    unparsed = [(f"d{i}", o) for i, o in enumerate(owners) if i % 2 == 1]
    assert sum(b in fuzzy for b in bodies) >= 0.95 * len(bodies)
    assert sum(u in fuzzy for u in unparsed) >= 0.95 * len(unparsed)
    assert sum(b in exact for b in bodies) < sum(b in fuzzy for b in bodies)
    assert all(0.8 <= f["score"] <= 1.0 for f in findings.to_pylist() if f["match_type"] == "code_containment")


def test_fuzzy_code_test_counts_only_a_window_of_a_long_file(humaneval) -> None:
    """The two halves of a renamed solution at the two ends of a long file hold most of its k-grams between them,
    but no window of the file does: that is code sharing idioms, not a copy. Together, they are a copy."""
    hasher = TokenHasher()
    rows = {r["item_id"]: r for r in humaneval.to_pylist()}
    item_id = max(rows, key=lambda i: len(field_fuzzy_grams(rows[i]["reference"], 10, 1, hasher)))
    row = rows[item_id]
    body = rename_tokens(row["reference"], rename_map(row["prompt"] + row["reference"], random.Random(0)))
    lines = body.splitlines(keepends=True)
    head, tail = "".join(lines[: len(lines) // 2]), "".join(lines[len(lines) // 2 :])
    filler = "".join(f"value_{k} = compute_{k}(alpha, beta[{k}]) * {k}\n" for k in range(300))
    apart = "def f():\n" + head + filler + tail
    together = "def f():\n" + head + tail + filler
    items = humaneval.filter(pa.compute.equal(humaneval["item_id"], item_id))
    findings = screen(docs_table([apart, together], "d"), items, config=CODE_ONLY)[2].to_pylist()
    fuzzy = [f for f in findings if f["match_type"] == "code_containment"]
    assert {f["doc_id"] for f in fuzzy} == {"d1"}, [(f["doc_id"], f["match_type"], f["score"]) for f in findings]
