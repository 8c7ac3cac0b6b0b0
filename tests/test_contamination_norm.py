"""The screen against disguised leaks: invisible characters, letter-like symbols, look-alike letters, multiple-choice
answers without their options, and documents that only share an eval set's own boilerplate."""

from __future__ import annotations

import builtins
import json
import unicodedata

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval_assets.engine import registry
from mixassets.engine.contamination import ScreenConfig, build_index, screen, screen_tokens, token_spans
from mixassets.engine.mcq import McqError, parse_mcq, split_inline_options
from mixassets.engine.text_norm import _CONFUSABLE_TABLE, screen_fold
from tests.test_contamination import ITEMS, SOLUTION, docs_table, items_table

NGRAM_ONLY = ScreenConfig(methods=("ngram",))
LATIN_TO_CYRILLIC = str.maketrans("aceopxy", "\u0430\u0441\u0435\u043e\u0440\u0445\u0443")


def _disguise(text: str, every: int, insert: str) -> str:
    """``insert`` after every ``every``-th letter inside words: how zero-width and soft-hyphen leaks look."""
    out, run = [], 0
    for c in text:
        run = run + 1 if c.isalpha() else 0
        out.append(c + insert if run and run % every == 0 else c)
    return "".join(out)


def _exact_row(doc: str) -> dict:
    _, dirty, findings = screen(docs_table({"d": "Seen on a forum:\n" + doc}), ITEMS, config=NGRAM_ONLY)
    rows = [r for r in findings.to_pylist() if r["field"] == "canonical_solution"]
    assert dirty.num_rows == 1 and len(rows) == 1, findings.to_pylist()
    return rows[0]


@pytest.mark.parametrize(
    "disguise",
    [
        lambda t: _disguise(t, 2, "\u200b"),  # zero-width space
        lambda t: _disguise(t, 3, "\u00ad"),  # soft hyphen
        lambda t: _disguise(t, 2, "\u200d\u2060"),  # zero-width joiner + word joiner
        lambda t: "\ufeff" + _disguise(t, 4, "\u200e"),  # BOM, left-to-right marks
    ],
    ids=["zwsp", "soft-hyphen", "joiners", "bom-bidi"],
)
def test_format_characters_inside_words_do_not_hide_a_copy(disguise) -> None:
    doc = disguise(SOLUTION)
    assert doc != SOLUTION
    row = _exact_row(doc)
    assert row["score"] == pytest.approx(1.0)
    # The span is in the document as stored, invisible characters included.
    text = "Seen on a forum:\n" + doc
    assert screen_tokens(text[row["span_start"] : row["span_end"]]) == screen_tokens(SOLUTION)


@pytest.mark.parametrize(
    "table",
    [
        {c: chr(ord(c) - ord("a") + 0x24D0) for c in "abcdefghijklmnopqrstuvwxyz"},  # circled small letters
        {c: chr(ord(c) + 0xFEE0) for c in "abcdefghijklmnopqrstuvwxyz"},  # fullwidth
        {c: chr(ord(c) - ord("a") + 0x1D41A) for c in "abcdefghijklmnopqrstuvwxyz"},  # mathematical bold
    ],
    ids=["circled", "fullwidth", "math-bold"],
)
def test_letter_like_symbols_fold_instead_of_being_dropped(table: dict[str, str]) -> None:
    doc = SOLUTION.translate(str.maketrans(table))
    assert screen_fold(doc).split() == SOLUTION.lower().split()
    assert _exact_row(doc)["score"] == pytest.approx(1.0)


def test_cyrillic_and_greek_look_alikes_fold_to_latin() -> None:
    doc = SOLUTION.translate(LATIN_TO_CYRILLIC).replace("True", "\u03a4rue").replace("False", "F\u0391lse")
    assert doc.isascii() is False and "elem" not in doc
    row = _exact_row(doc)
    assert row["score"] == pytest.approx(1.0)
    assert row["overlap_text"] == " ".join(screen_tokens(SOLUTION))


def test_folding_keeps_case_apart_where_only_case_tells_look_alikes_apart() -> None:
    # Greek capital Nu looks like N, small nu like v; both are folded before casefolding.
    assert screen_fold("\u039dew \u03bdalue") == "new value"


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            [*"ab cD_1.\n", "\u200b", "\u00ad", "\ufeff", "\u24b6", "\u2122", "\u0301", "\u0430", "\u039d", "ß"]
        ),
        max_size=60,
    )
)
def test_token_spans_agree_with_the_fast_tokenizer_on_disguised_text(text: str) -> None:
    tokens, starts, ends = token_spans(text)
    assert tokens == screen_tokens(text)
    for token, start, end in zip(tokens, starts, ends, strict=True):
        assert token in screen_tokens(text[start:end])


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            [*"ab eE_1.\n", "\u200b", "\u00ad", "\u0301", "\u0327", "\u0430", "\ufb01", "\u2460", "ß"]
        ),
        max_size=40,
    )
)
def test_folding_only_the_non_ascii_stretch_is_folding_the_whole_text(text: str) -> None:
    """The ASCII around the stretch that holds every non-ASCII character is only lowercased; composition at the
    stretch's edges (``e`` + combining acute) and ligatures turning into ASCII still come out as for the whole."""
    whole = unicodedata.normalize("NFKC", "".join(c for c in text if unicodedata.category(c) != "Cf"))
    assert screen_fold(text) == whole.translate(_CONFUSABLE_TABLE).casefold()
    assert screen_fold("abc " + text + " XyZ") == ("abc " + whole + " xyz").translate(_CONFUSABLE_TABLE).casefold()


# --- multiple-choice items -----------------------------------------------------------------------------------------

# 11 tokens: too few for the exact test and under ``fuzzy_min_shingles``, so only the stem+answer pair screens it.
STEM = "Which built-in returns the number of items in a container?"
OPTIONS_LIST = ["sorted()", "len()", "sum()", "range()"]


def _mcq_items(options: object, answer: object, stem: str = STEM) -> pa.Table:
    value = {"stem": stem, "options": options, "answer": answer}
    return items_table({"question": value}, "mcq/7", "pyquiz")  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("options", "answer"),
    [
        (OPTIONS_LIST, "B"),
        (OPTIONS_LIST, 1),
        ({"C": "sum()", "A": "sorted()", "D": "range()", "B": "len()"}, "(b)"),
        ("A) sorted() B) len() C) sum() D) range()", "B"),
        ("(1) sorted()\n(2) len()\n(3) sum()\n(4) range()", "2"),
        (None, "len()"),
    ],
    ids=["list-label", "list-index", "dict-any-order", "inline", "inline-numbers", "no-options"],
)
def test_a_short_stem_with_its_answer_and_no_options_is_a_target_leak(options: object, answer: object) -> None:
    items = _mcq_items(options, answer)
    assert len(screen_tokens(STEM)) < 13 and build_index(items).unscreenable == []
    quiz = f"Python trivia night!\nQ: {STEM}\nA: len(). Next question: who wrote the zen of python?"
    docs = docs_table(
        {
            "quiz": quiz,
            "wrong": f"Q: {STEM}\nA: sum(), obviously.",  # the stem with a wrong option
            "stem-only": f"Can you tell me: {STEM} I always forget.",
            "answer-only": "Call len() on the list to count it; len() works on any container.",
            "far": f"{STEM} " + "We will come back to this later in the talk. " * 6 + "The answer is len().",
        }
    )
    _, dirty, findings = screen(docs, items)
    assert dirty.column("doc_id").to_pylist() == ["quiz"]
    (row,) = findings.to_pylist()
    assert (row["field"], row["kind"], row["match_type"]) == ("question+answer", "target", "stem_answer")
    assert quiz[row["span_start"] : row["span_end"]] == f"{STEM}\nA: len"


def test_an_answer_the_stem_contains_does_not_make_the_stem_alone_a_leak() -> None:
    stem = "Which built-in returns a new sorted list from an iterable?"
    items = _mcq_items(["sorted", "reversed", "list"], "A", stem=stem)
    docs = docs_table({"stem": f"Quiz: {stem} Think about it.", "pair": f"{stem} Answer: sorted"})
    _, dirty, _ = screen(docs, items)
    assert dirty.column("doc_id").to_pylist() == ["pair"]


def test_a_stem_too_short_for_a_shingle_is_listed_not_dropped() -> None:
    items = _mcq_items(OPTIONS_LIST, "B", stem="Count items?")
    names = [u.field for u in build_index(items).unscreenable]
    assert names == ["question", "question+answer"]


def test_mcq_parsing_resolves_every_answer_form_and_names_bad_items() -> None:
    assert split_inline_options("Pick one: a. e.g. this b. Fig. 2: that") == [("a", "e.g. this"), ("b", "Fig. 2: that")]
    assert parse_mcq({"question": STEM, "choices": OPTIONS_LIST, "correct": "len()"}, "x").answer == "len()"
    for bad, message in [
        ({"stem": STEM, "options": OPTIONS_LIST, "answer": "E"}, "neither an option label"),
        ({"stem": STEM, "options": OPTIONS_LIST, "answer": 9}, "outside the 4 options"),
        ({"stem": STEM, "options": "just text", "answer": "A"}, "fewer than two labelled options"),
        ({"stem": "", "answer": "x"}, "stem must be"),
        ({"stem": STEM, "answer": "x", "hint": "y"}, "unknown key"),
    ]:
        with pytest.raises(McqError, match=message):
            parse_mcq(bad, "pyquiz/mcq/7")
    with pytest.raises(ValueError, match=r"pyquiz/mcq/7.*neither an option label"):
        build_index(_mcq_items(OPTIONS_LIST, "E"))


def test_registry_loads_a_multiple_choice_screen_field_and_rejects_an_unresolvable_answer(tmp_path) -> None:
    good = {"stem": STEM, "options": OPTIONS_LIST, "answer": "B"}
    line = {"id": "q1", "messages": [{"role": "user", "content": STEM}], "reference": "B", "screen": {"question": good}}
    path = tmp_path / "quiz.jsonl"
    path.write_text(json.dumps(line) + "\n")
    table = registry.load_jsonl_eval_set("pyquiz", str(path), "1")
    assert json.loads(table.column("screen_fields")[0].as_py()) == {"question": good}
    line["screen"] = {"question": {**good, "answer": "Z"}}
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(registry.EvalRegistryError, match=r"quiz.jsonl:1: screen field 'question'.*'Z'"):
        registry.load_jsonl_eval_set("pyquiz", str(path), "1")


# --- eval-set boilerplate --------------------------------------------------------------------------------------------

OPENER = (
    "The following are questions about Python programs. Think step by step before you answer. "
    "Example: what does the expression sorted(set(xs)) return? Let's think step by step. set(xs) drops the "
    "duplicates, and sorted returns a new list in ascending order, so the answer is the distinct items of xs in "
    "ascending order.\n\n"
)
# Thirty distinct questions from the builtins' own docstrings (real text, different per item).
_BUILTINS = [
    name
    for name in sorted(dir(builtins))
    if name.islower() and not name.startswith("_") and len((getattr(builtins, name).__doc__ or "").split()) >= 30
]
QUESTIONS = [
    f"Question {k}: which builtin is described here? " + " ".join(getattr(builtins, name).__doc__.split()[:30])
    for k, name in enumerate(_BUILTINS[:30])
]


def _fewshot_items() -> pa.Table:
    return pa.concat_tables([items_table({"prompt": OPENER + q}, f"cot/{k}", "cot") for k, q in enumerate(QUESTIONS)])


def test_an_eval_sets_shared_fewshot_opener_is_never_evidence() -> None:
    items = _fewshot_items()
    assert build_index(items).shared_ngrams["cot"] > 0
    docs = docs_table(
        {
            "opener-blog": "My favourite prompt for code models:\n\n" + OPENER + "Question: what is 2 ** 10?",
            "leak": "Dump of the test set: " + OPENER + QUESTIONS[4],
        }
    )
    _, dirty, findings = screen(docs, items)
    assert dirty.column("doc_id").to_pylist() == ["leak"]
    assert {r["item_id"] for r in findings.to_pylist()} == {"cot/4"}
    # With the floor above the set's size nothing is suppressed, and the opener alone flags every item.
    loose = ScreenConfig(shared_ngram_min_items=len(QUESTIONS) + 1)
    _, dirty, findings = screen(docs, items, config=loose)
    assert "opener-blog" in dirty.column("doc_id").to_pylist()
    assert len({r["item_id"] for r in findings.to_pylist() if r["doc_id"] == "opener-blog"}) == len(QUESTIONS)


def test_shared_ngram_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="shared_ngram_min_items"):
        ScreenConfig(shared_ngram_min_items=1)
    with pytest.raises(ValueError, match="shared_ngram_share"):
        ScreenConfig(shared_ngram_share=0)


def test_project_screen_settings_reach_the_engine_config() -> None:
    from types import SimpleNamespace

    from mixassets.assets.engine_configs import screen_config
    from mixtrain.config.data import ScreenSpec

    spec = ScreenSpec(shared_ngram_share=0.25, shared_ngram_min_items=4, stem_answer_window=10)
    config = screen_config(SimpleNamespace(spec=SimpleNamespace(screen=spec)))  # type: ignore[arg-type]
    assert (config.shared_ngram_share, config.shared_ngram_min_items, config.stem_answer_window) == (0.25, 4, 10)
    from mixassets.engine.contamination_embed import model_installed

    semantic = ("semantic",) if model_installed() else ()  # screen.semantic: auto
    assert "stem_answer" in ScreenSpec().methods and config.methods == (*ScreenConfig().methods, *semantic)
