"""The code screen's line test (``code_lines``) on real HumanEval programs rewritten, and on real stdlib code."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pytest

from benchmarks.code_contamination import docs_table, stdlib_files
from benchmarks.contamination_cases import rewrite_edit
from eval_assets.engine.registry import load_humaneval
from mixassets.engine.contamination import ScreenConfig, build_index, screen
from mixassets.engine.contamination_code import DocTokens
from mixassets.engine.contamination_lines import line_keys
from mixassets.engine.text_norm import TokenHasher


@pytest.fixture(scope="module")
def humaneval() -> pa.Table:
    return load_humaneval()


def _keys(text: str) -> list[int]:
    keys, *_ = line_keys(DocTokens([text], TokenHasher()))
    return keys.tolist()


def test_a_line_survives_renames_comments_and_a_docstring_read_line_by_line() -> None:
    original = 'def f(xs):\n    """Sum the values in xs.\n    >>> f([30])\n    465\n    """\n    return sum(xs) + 1\n'
    renamed = 'def g(vals):  # mine\n    """Sum the items in vals.\n    >>> g([30])\n    465\n    """\n'
    renamed += "    return sum(vals) + 1\n"
    assert _keys(original) == _keys(renamed)
    # Numbers count as written: another example output is another line.
    assert _keys(original)[3] != _keys(original.replace("465", "466"))[3]
    # A dropped line leaves the others as they were; a string's lines are lines of the document (the closing
    # quotes' line is empty once they are gone).
    dropped = original.replace("    >>> f([30])\n", "")
    assert set(_keys(dropped)) < set(_keys(original)) and len(_keys(original)) == 5


def test_lines_of_a_batch_do_not_depend_on_its_grouping(humaneval) -> None:
    texts = [r["prompt"] + r["reference"] for r in humaneval.slice(0, 6).to_pylist()]
    batch = line_keys(DocTokens(texts, TokenHasher()))
    alone = [line_keys(DocTokens([t], TokenHasher())) for t in texts]
    assert batch[0].tolist() == [k for keys, *_ in alone for k in keys.tolist()]
    assert batch[2].tolist() == [d for d, (keys, *_) in enumerate(alone) for _ in range(len(keys))]


@pytest.mark.parametrize("item_id", ["HumanEval/3", "HumanEval/4"])
def test_a_rewritten_program_inside_stdlib_code_is_found_by_its_lines(humaneval, item_id) -> None:
    """Names half renamed, lines dropped, comments inserted: no other test finds these two, the line test does."""
    row = humaneval.filter(pa.compute.equal(humaneval["item_id"], item_id)).to_pylist()[0]
    fields = json.loads(row["screen_fields"])
    rewritten = rewrite_edit(fields["prompt"] + fields["solution"], random.Random(3))
    host = dict(stdlib_files())["textwrap.py"]
    cut = host.index("\ndef ", len(host) // 2) + 1
    doc = host[:cut] + rewritten + "\n\n" + host[cut:]
    items = humaneval.slice(0, 12)
    _, dirty, findings = screen(docs_table([doc], "d"), items, config=ScreenConfig())
    assert dirty.num_rows == 1
    assert {(f["item_id"], f["match_type"]) for f in findings.to_pylist()} <= {(item_id, "code_lines")}
    found = findings.to_pylist()
    assert found and all(0.3 <= f["score"] <= 1.0 for f in found)
    for f in found:  # the evidence starts inside the pasted program and covers most of it, in the text's offsets
        assert cut <= f["span_start"] < cut + len(rewritten) // 2 and f["span_end"] > cut + len(rewritten) // 2
        # A line inside a string spans the string: where the copy lost its docstring's closing quotes, its
        # "docstring" runs to the next quotes of the host (HumanEval/4 here: to the opening of the next one).
        assert f["span_end"] <= host.index('"""', cut) + len(rewritten) + 3 + 2
    off = ScreenConfig(code_lines_min_weight=10**6)  # the line test unreachable: the rest of the screen misses it
    assert screen(docs_table([doc], "d"), items, config=off)[2].num_rows == 0


def test_lines_several_items_share_are_no_evidence(humaneval) -> None:
    """``def ID(ID: List[int]) -> List[int]:`` opens a dozen HumanEval prompts: it says nothing about which leaked."""
    index = build_index(humaneval, config=ScreenConfig(methods=("code",)))
    assert index.code_lines is not None
    template = line_keys(DocTokens(["def f(numbers: List[int]) -> List[int]:\n"], index.hasher))[0]
    assert not np.isin(template, index.code_lines.keys).any()
    own = line_keys(DocTokens([humaneval.slice(3, 1).to_pylist()[0]["prompt"]], index.hasher))
    assert np.isin(own[0], index.code_lines.keys).sum() >= 2


def test_line_settings_reach_the_engine_config_with_the_same_defaults() -> None:
    from types import SimpleNamespace

    from mixassets.assets.engine_configs import screen_config
    from mixtrain.config.data import ScreenSpec

    names = ("code_lines_min_tokens", "code_lines_min_lines", "code_lines_min_weight", "code_lines_threshold")
    default = screen_config(SimpleNamespace(spec=SimpleNamespace(screen=ScreenSpec())))  # type: ignore[arg-type]
    assert [getattr(default, n) for n in names] == [getattr(ScreenConfig(), n) for n in names]
    spec = ScreenSpec(**dict(zip(names, (7, 3, 30, 0.5), strict=True)))
    config = screen_config(SimpleNamespace(spec=SimpleNamespace(screen=spec)))  # type: ignore[arg-type]
    assert [getattr(config, n) for n in names] == [7, 3, 30, 0.5]
