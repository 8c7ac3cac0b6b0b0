"""Calibration of the semantic screen: paraphrased HumanEval descriptions versus same-topic CPython help text.

Run: ``python benchmarks/semantic_contamination.py [--negatives 2000] [--seed 0]``

Positives: each HumanEval item's prose (its docstring up to the examples) paraphrased by three programmatic
edits, all applied: sentences reordered, words replaced from a small synonym table, and imperative or
"you are given" sentences turned passive. The paraphrase sits inside ~1.5 KB of pydoc help text, as a
paraphrased task would sit inside a tutorial or forum page. Negatives: ~1 KB chunks of pydoc topics and of
stdlib docstrings over 150 characters (prose about lists, strings, numbers and sorting, the subjects of
HumanEval), which are exactly the documents the candidate stage lets through. Reported: the score (cosine
and word share) of every (document, item) candidate, the threshold that keeps false positives at or under
0.1% of the negatives, and recall there.
"""

from __future__ import annotations

import argparse
import ast
import random
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from benchmarks.code_contamination import docs_table, stdlib_files  # noqa: E402
from mixassets.engine.contamination import ScreenConfig, build_index, screen  # noqa: E402
from mixassets.engine.contamination_semantic import field_prose  # noqa: E402

SYNONYMS = {
    "return": "give back",
    "returns": "gives back",
    "list": "sequence",
    "number": "value",
    "numbers": "values",
    "given": "provided",
    "check": "verify",
    "string": "text",
    "strings": "texts",
    "find": "determine",
    "count": "tally",
    "largest": "biggest",
    "smallest": "tiniest",
    "function": "routine",
    "integer": "whole number",
    "integers": "whole numbers",
    "each": "every",
    "element": "item",
    "elements": "items",
    "write": "implement",
    "create": "build",
    "sum": "total",
    "characters": "letters",
    "character": "letter",
    "separate": "split",
    "input": "argument",
    "output": "result",
    "determine": "decide",
    "whether": "if",
    "sorted": "ordered",
    "sort": "order",
    "positive": "above-zero",
    "negative": "below-zero",
}
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_IMPERATIVE = re.compile(r"^(Return|Check|Find|Write|Create|Given|Implement|Count) (.+?)([.!?]?)$")


def _passive(sentence: str) -> str:
    """'Return the sum of x.' -> 'The sum of x should be returned.'; 'You are given x.' -> 'X is given to you.'"""
    m = re.match(r"^You are given (.+?)([.!?]?)$", sentence)
    if m:
        return f"{m.group(1)[0].upper()}{m.group(1)[1:]} is given to you{m.group(2) or '.'}"
    m = _IMPERATIVE.match(sentence)
    if m and m.group(1) not in ("Given",):
        verb = {"Return": "returned", "Check": "checked", "Find": "found", "Write": "written"}.get(m.group(1), "made")
        obj = m.group(2)
        return f"{obj[0].upper()}{obj[1:]} should be {verb}{m.group(3) or '.'}"
    return sentence


def paraphrase(text: str, rng: random.Random) -> str:
    """Reorder the sentences, turn imperatives passive, then swap words for synonyms (case kept)."""
    sentences = [s.strip() for s in _SENTENCE.split(text) if s.strip()]
    sentences = [_passive(s) for s in sentences]
    if len(sentences) > 1:
        rng.shuffle(sentences)

    def swap(m: re.Match[str]) -> str:
        word = m.group()
        new = SYNONYMS.get(word.lower())
        if new is None:
            return word
        return new[0].upper() + new[1:] if word[0].isupper() else new

    return re.sub(r"[A-Za-z]+", swap, " ".join(sentences))


def prose_chunks(size: int = 1000) -> list[str]:
    """~``size``-character chunks of pydoc topics and of stdlib docstrings, cut at paragraph boundaries."""
    from pydoc_data.topics import topics

    texts = list(topics.values())
    for _, source in stdlib_files():
        try:
            with warnings.catch_warnings():  # a few stdlib test files hold invalid escapes on purpose
                warnings.simplefilter("ignore", SyntaxWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 150:
                    texts.append(doc)
    out = []
    for text in texts:
        piece = ""
        for para in text.split("\n\n"):
            piece += para + "\n\n"
            if len(piece) >= size:
                out.append(piece)
                piece = ""
        if len(piece) > size // 3:
            out.append(piece)
    return out


def main(argv: list[str] | None = None) -> None:
    from eval_assets.engine.registry import load_humaneval

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--negatives", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-shared", type=float, default=ScreenConfig().semantic_min_shared)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    items = load_humaneval()
    pool = prose_chunks()
    rng.shuffle(pool)
    if len(pool) < args.negatives + 200:
        raise SystemExit(f"only {len(pool)} prose chunks: ask for at most {len(pool) - 200} negatives")
    negatives, hosts = pool[: args.negatives], pool[args.negatives :]
    positives, owners = [], []
    for row in items.to_pylist():
        import json

        prose = field_prose(json.loads(row["screen_fields"])["prompt"])
        if prose is None:
            continue
        host = rng.choice(hosts)
        cut = host.find("\n\n", len(host) // 2)
        cut = len(host) // 2 if cut < 0 else cut + 2
        positives.append(host[:cut] + paraphrase(prose, rng) + "\n\n" + host[cut:])
        owners.append(row["item_id"])
    # Threshold just above 0 so that every candidate's cosine is reported; the calibration picks the cut.
    config = ScreenConfig(methods=("semantic",), semantic_threshold=1e-6, semantic_min_shared=args.min_shared)
    index = build_index(items, config=config)
    neg_docs = docs_table(negatives, "neg")
    megabytes = sum(len(t.encode()) for t in negatives) / 1e6
    t0 = time.process_time()
    _, _, neg = screen(neg_docs, items, config=config, index=index)
    cpu = time.process_time() - t0
    _, _, pos = screen(docs_table(positives, "pos"), items, config=config, index=index)
    neg_best = _best(neg, len(negatives), "neg", None)
    pos_best = _best(pos, len(positives), "pos", owners)
    print(
        f"{len(index.semantic.refs) if index.semantic else 0} item fields embedded; {len(positives)} paraphrases;"
        f" {len(negatives)} negatives ({megabytes:.1f} MB), {int((neg_best > 0).sum())} reached the embedding stage;"
        f" {megabytes / cpu:.2f} MB/s per CPU-second"
    )
    print(f"paraphrases that passed the candidate stage: {(pos_best > 0).mean():.3f}")
    allowed = int(0.001 * len(negatives))
    threshold = float(np.sort(neg_best)[::-1][allowed]) + 1e-4 if allowed < len(neg_best) else 0.0
    for t in sorted({round(threshold, 3), 0.6, 0.655, 0.7, 0.72, 0.74, 0.75}):
        print(f"threshold {t:.3f}: recall {(pos_best >= t).mean():.3f}, FP {(neg_best >= t).mean():.4%}")
    print(f"highest negative scores: {np.round(np.sort(neg_best)[::-1][:5], 3).tolist()}")


def _best(findings: pa.Table, count: int, prefix: str, owners: list[str] | None) -> np.ndarray:
    """Per document, the best cosine of a finding (naming its own item, for positives); 0 when none."""
    best = np.zeros(count)
    for f in findings.to_pylist():
        k = int(f["doc_id"].removeprefix(prefix))
        if owners is None or owners[k] == f["item_id"]:
            best[k] = max(best[k], f["score"])
    return best


if __name__ == "__main__":
    main()
