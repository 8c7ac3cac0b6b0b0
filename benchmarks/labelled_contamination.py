"""A labelled contamination set built from text every Python install has, and a benchmark that scores the screen on it.

Run: ``python benchmarks/labelled_contamination.py [--clean 3000] [--hard 1000] [--throughput-docs 20000]
[--baseline PATH]`` (``PATH``: a checkout of an older version, e.g. a ``git worktree`` of main, timed in the same
run on the same documents). The throughput section times the data gate (default rules) on the same documents
too, the rate the screen is held to (:mod:`benchmarks.contamination_timing`).

Eval sets: HumanEval (prompt + solution) and ``pyquiz``, a multiple-choice set built from it ("Which function: <first
words of the docstring>?", four entry points as options) whose prompts share a few-shot chain-of-thought opener
(:mod:`benchmarks.contamination_cases`). Items are planted into documents in these ways, each labelled with the item
it must be attributed to:

* ``verbatim``: the item's fields (prompt, then solution) as one document;
* ``edited``: the same with cosmetic edits: re-indentation, case changes, quote and punctuation changes,
  joined lines, and a few spaces removed between words or inserted into identifiers;
* ``answer_only``: just the target fields (the solution) in a short wrapper: target contamination;
* ``embedded``: an edited copy in the middle of a 4-6 KB stdlib chunk;
* ``zero_width``, ``symbols``, ``homoglyph``: the verbatim document disguised with invisible format characters
  inside words, letter-like symbols (circled/fullwidth/bold) for whole words, Cyrillic/Greek look-alike letters;
* ``renamed``: the solution with every identifier renamed (target); ``rewritten``: identifiers renamed, lines
  dropped, comments inserted; ``paraphrase``: the entry point's docstring retold. These three need methods beyond
  n-gram overlap (another branch adds them) and are reported without a target;
* ``mcq_stem_answer``: a ``pyquiz`` stem with its correct answer and no options (quiz page, flashcard, answer key),
  half of them inside a stdlib chunk: target contamination.

Negatives, each a document that must get no finding: ``ordinary`` stdlib/pydoc chunks; ``boilerplate``: the
pyquiz few-shot opener followed by a question that is not an item; ``same_topic``: stdlib/pydoc chunks sharing the
most distinctive words with an item; ``same_api``: stdlib chunks calling the same functions as a solution.

A planted document counts as found when a finding names its item (for target kinds: with kind ``target``); fields
too short for the screen are excluded from recall and counted instead. Everything is seeded, so every run builds
the same set.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

import pyarrow.compute as pc  # noqa: E402

from benchmarks import contamination_cases as cases  # noqa: E402
from benchmarks.contamination_timing import timed_gate, timed_screen  # noqa: E402
from mixassets.engine.contamination import TARGET, ScreenConfig, build_index, screen, unscreenable_fields  # noqa: E402
from mixassets.engine.contamination_index import METHODS  # noqa: E402
from mixassets.engine.mcq import is_mcq, parse_mcq  # noqa: E402
from mixtrain.schema import DOCUMENT_SCHEMA, EVAL_ITEM_SCHEMA  # noqa: E402

TEXT_KINDS = ("verbatim", "edited", "answer_only", "embedded", "zero_width", "symbols", "homoglyph")
REPORTED_KINDS = ("renamed", "rewritten", "paraphrase")  # need methods beyond n-gram overlap: reported, no target
PLANT_KINDS = (*TEXT_KINDS, *REPORTED_KINDS, "mcq_stem_answer")
TARGET_KINDS = ("answer_only", "renamed", "mcq_stem_answer")  # found only when the finding says "target"
NEGATIVE_KINDS = ("ordinary", "boilerplate", "same_topic", "same_api")
RECALL_TARGET = 0.95
FP_TARGET = 0.001
CHUNK_CHARS = 2000
# CPython's own test suites are skipped: they are not what a training corpus of library code looks like.
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__"}


@dataclass(frozen=True)
class Plant:
    kind: str
    eval_set: str
    item_id: str


@dataclass
class LabelledSet:
    docs: pa.Table  # DOCUMENT_SCHEMA; negative and planted documents interleaved
    planted: dict[str, Plant] = field(default_factory=dict)  # doc_id -> what was planted in it
    clean: list[str] = field(default_factory=list)  # doc_ids of every negative document
    skipped: dict[str, int] = field(default_factory=dict)  # plant kind -> items with nothing screenable to plant
    negatives: dict[str, list[str]] = field(default_factory=dict)  # negative kind -> doc_ids


def chunk_lines(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Consecutive whole lines of ``text`` grouped into pieces of about ``size`` characters."""
    pieces, cur, length = [], [], 0
    for line in text.splitlines(keepends=True):
        cur.append(line)
        length += len(line)
        if length >= size:
            pieces.append("".join(cur))
            cur, length = [], 0
    if "".join(cur).strip():
        pieces.append("".join(cur))
    return pieces


def stdlib_chunks(size: int = CHUNK_CHARS) -> list[tuple[str, str]]:
    """(doc_id, text) of every stdlib source file chunked, in sorted path order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(f for f in filenames if f.endswith(".py")):
            path = Path(dirpath, name)
            text = path.read_text(encoding="utf-8", errors="replace")
            rel = path.relative_to(root).as_posix()
            out += [(f"stdlib/{rel}#{k}", piece) for k, piece in enumerate(chunk_lines(text, size))]
    return out


def pydoc_chunks(size: int = CHUNK_CHARS) -> list[tuple[str, str]]:
    from pydoc_data.topics import topics

    return [
        (f"pydoc/{name}#{k}", piece)
        for name in sorted(topics)
        for k, piece in enumerate(chunk_lines(topics[name], size))
    ]


def _item_fields(items: pa.Table) -> list[tuple[str, str, dict]]:
    cols = [items.column(c).to_pylist() for c in ("eval_set", "item_id", "screen_fields")]
    return [(s, i, json.loads(raw)) for s, i, raw in zip(*cols, strict=True)]


def _item_text(fields: dict) -> str:
    """An item's own text: its text fields, and a multiple-choice field as its stem and answer."""
    parts = []
    for name, value in fields.items():
        mcq = parse_mcq(value, name) if is_mcq(value) else None
        parts.append(value if mcq is None else f"{mcq.stem}\n{mcq.answer}")
    return "\n".join(parts)


def _negatives(
    items: pa.Table, pool: list[tuple[str, str]], clean_docs: int, hard_docs: int, opener: str | None, rng
) -> tuple[dict[str, list[tuple[str, str]]], list[tuple[str, str]]]:
    """(negative kind -> (doc_id, text)), and the chunks left over to host embedded plants."""
    if clean_docs + 2 * hard_docs + 100 > len(pool):
        raise ValueError(f"only {len(pool)} stdlib/pydoc chunks; ask for fewer clean or hard documents")
    ordinary, rest = pool[:clean_docs], pool[clean_docs:]
    fields = [f for _, _, f in _item_fields(items) if not any(is_mcq(v) for v in f.values())]
    prose = [cases.topic_features(_item_text(f)) for f in fields]
    topic = cases.nearest_chunks(prose, rest, hard_docs, cases.topic_features)
    taken = set(topic)
    rest = [c for k, c in enumerate(rest) if k not in taken]
    calls = [cases.api_features("\n".join(v for k, v in f.items() if "solution" in k)) for f in fields]
    api = cases.nearest_chunks(calls, rest, hard_docs, cases.api_features)
    out = {
        "ordinary": ordinary,
        "same_topic": [(f"topic/{d}", t) for d, t in (pool[clean_docs + k] for k in topic)],
        "same_api": [(f"api/{d}", t) for d, t in (rest[k] for k in api)],
        "boilerplate": [],
    }
    if opener is not None:
        texts = cases.boilerplate_negatives(opener, ordinary, hard_docs, rng)
        out["boilerplate"] = [(f"boilerplate/{k}", t) for k, t in enumerate(texts)]
    taken = set(api)
    hosts = [c for k, c in enumerate(rest) if k not in taken]
    return out, hosts


def build_labelled_set(
    items: pa.Table,
    *,
    clean_docs: int = 3000,
    hard_docs: int = 1000,
    seed: int = 0,
    kinds: Sequence[str] = PLANT_KINDS,
    config: ScreenConfig | None = None,
    opener: str | None = None,
) -> LabelledSet:
    """Negative documents plus, per item of ``items`` and per kind, one planted document.

    Text kinds are planted for items without a multiple-choice field, ``mcq_stem_answer`` for items with one.
    ``opener`` is the multiple-choice set's shared few-shot opener (``boilerplate`` negatives need it).
    ``config`` decides which fields are targets (for ``answer_only``) and which are too short to screen.
    """
    cfg = config or ScreenConfig()
    rng = random.Random(seed)
    pool = pydoc_chunks() + stdlib_chunks()
    rng.shuffle(pool)
    negatives, hosts = _negatives(items, pool, clean_docs, hard_docs, opener, rng)
    short = {(u.eval_set, u.item_id, u.field) for u in unscreenable_fields(items, config=cfg)}
    labelled = LabelledSet(docs=DOCUMENT_SCHEMA.empty_table())
    rows = []
    for kind, docs in negatives.items():
        labelled.negatives[kind] = [d for d, _ in docs]
        labelled.clean += labelled.negatives[kind]
        rows += [(doc_id, "negative", text) for doc_id, text in docs]
    for kind in kinds:
        labelled.skipped[kind] = 0
        for eval_set, item_id, fields in _item_fields(items):
            if any(is_mcq(v) for v in fields.values()) != (kind == "mcq_stem_answer"):
                continue
            usable = {k: v for k, v in fields.items() if (eval_set, item_id, k) not in short}
            if kind == "mcq_stem_answer":
                usable = {
                    k: v for k, v in fields.items() if is_mcq(v) and (eval_set, item_id, f"{k}+answer") not in short
                }
            elif kind in TARGET_KINDS:
                usable = {k: v for k, v in usable.items() if cfg.kind_of(k) == TARGET}
            elif kind == "paraphrase":
                usable = {k: v for k, v in usable.items() if k == "prompt"}
            if not usable:
                labelled.skipped[kind] += 1
                continue
            if kind == "mcq_stem_answer":
                mcq = parse_mcq(next(iter(usable.values())), item_id)
                text = cases.mcq_leak(mcq.stem, mcq.answer, rng)
                text = _embed(text, hosts, rng) if rng.random() < 0.5 else text
            else:
                text = plant_text(kind, "\n".join(usable.values()), hosts, rng)
            doc_id = f"planted/{kind}/{item_id}"
            labelled.planted[doc_id] = Plant(kind, eval_set, item_id)
            rows.append((doc_id, "planted", text))
    rng.shuffle(rows)
    labelled.docs = pa.Table.from_pylist(
        [
            {"doc_id": d, "source_id": s, "locator": d, "kind": "text", "text": t, "license": "PSF-2.0"}
            for d, s, t in rows
        ],
        schema=DOCUMENT_SCHEMA,
    )
    return labelled


def plant_text(kind: str, item_text: str, hosts: Sequence[tuple[str, str]], rng: random.Random) -> str:
    """The document that plants ``item_text`` the ``kind`` way (``hosts``: (doc_id, text) to embed into)."""
    disguises = {
        "verbatim": lambda t: t,
        "edited": lambda t: cases.cosmetic_edit(t, rng),
        "answer_only": lambda t: f"The answer that passed all the tests:\n\n{t}\n\nHope this helps.",
        "embedded": lambda t: _embed(cases.cosmetic_edit(t, rng), hosts, rng),
        "zero_width": lambda t: cases.zero_width(t, rng),
        "symbols": lambda t: cases.symbols(t, rng),
        "homoglyph": lambda t: cases.homoglyphs(t, rng),
        "renamed": lambda t: cases.renamed(t, rng),
        "rewritten": lambda t: cases.rewrite_edit(t, rng),
        "paraphrase": lambda t: cases.paraphrase(t, rng),
    }
    if kind not in disguises:
        raise ValueError(f"unknown plant kind {kind!r}; expected one of {tuple(disguises)}")
    return disguises[kind](item_text)


def _embed(snippet: str, hosts: Sequence[tuple[str, str]], rng: random.Random) -> str:
    host = "".join(hosts[rng.randrange(len(hosts))][1] for _ in range(rng.randint(2, 3)))
    lines = host.splitlines(keepends=True)
    cut = rng.randrange(1, max(2, len(lines) - 1))
    return "".join(lines[:cut]) + "\n" + snippet + "\n" + "".join(lines[cut:])


@dataclass
class Score:
    recall: dict[str, float]  # plant kind -> share of planted documents found with the right item
    found: dict[str, int]
    planted: dict[str, int]
    false_positives: list[str]  # negative doc_ids with a finding
    fp_rate: float
    cross_item: int  # planted documents also attributed to another item whose text the planted item shares
    unexplained_cross_item: list[str]  # planted documents attributed to an item the planted item does not overlap
    fp_by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)  # negative kind -> (flagged, documents)


def item_overlaps(items: pa.Table, config: ScreenConfig | None = None) -> set[tuple[str, str, str, str]]:
    """(set, item, other set, other item) where the item's own text already trips the screen for the other item.

    HumanEval has near-twins (HumanEval/56 and /61 share their prompt; /0 and /20 share a loop), so a
    planted copy of one is rightly attributed to the other too; these pairs are that "rightly".
    """
    rows = [
        {"doc_id": f"{s}\x1f{i}", "source_id": "items", "locator": i, "kind": "text", "text": _item_text(f)}
        for s, i, f in _item_fields(items)
    ]
    _, _, findings = screen(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), items, config=config)
    out = set()
    for f in findings.select(["doc_id", "eval_set", "item_id"]).to_pylist():
        s, i = f["doc_id"].split("\x1f")
        if (s, i) != (f["eval_set"], f["item_id"]):
            out.add((s, i, f["eval_set"], f["item_id"]))
    return out


def evaluate(
    findings: pa.Table, labelled: LabelledSet, overlaps: set[tuple[str, str, str, str]] = frozenset()
) -> Score:
    """Recall per plant kind, false positives, and attributions to other items (``overlaps``: see
    :func:`item_overlaps`; a cross attribution not in it is reported as unexplained)."""
    hits: dict[str, set[tuple[str, str, str]]] = {}
    for f in findings.select(["doc_id", "eval_set", "item_id", "kind"]).to_pylist():
        hits.setdefault(f["doc_id"], set()).add((f["eval_set"], f["item_id"], f["kind"]))
    found = dict.fromkeys(labelled.skipped, 0)
    planted = dict.fromkeys(labelled.skipped, 0)
    cross, unexplained = 0, []
    for doc_id, p in labelled.planted.items():
        planted[p.kind] += 1
        named = hits.get(doc_id, set())
        ok = any((s, i) == (p.eval_set, p.item_id) and (p.kind not in TARGET_KINDS or k == TARGET) for s, i, k in named)
        found[p.kind] += ok
        others = {(s, i) for s, i, _ in named} - {(p.eval_set, p.item_id)}
        cross += bool(others)
        if any((p.eval_set, p.item_id, s, i) not in overlaps for s, i in others):
            unexplained.append(doc_id)
    fps = sorted(d for d in labelled.clean if d in hits)
    return Score(
        recall={k: found[k] / planted[k] if planted[k] else float("nan") for k in planted},
        found=found,
        planted=planted,
        false_positives=fps,
        fp_rate=len(fps) / len(labelled.clean),
        cross_item=cross,
        unexplained_cross_item=sorted(unexplained),
        fp_by_kind={k: (sum(d in hits for d in ids), len(ids)) for k, ids in labelled.negatives.items()},
    )


def throughput_docs(n_docs: int, seed: int = 1, *, disguised: bool = False) -> pa.Table:
    """``n_docs`` ~2 KB stdlib/pydoc chunks (drawn with replacement), for timing only; ``disguised`` puts a few
    look-alike letters and zero-width characters into each, so that every document takes the non-ASCII path."""
    pool = pydoc_chunks() + stdlib_chunks()
    rng = random.Random(seed)
    texts = [pool[rng.randrange(len(pool))][1] for _ in range(n_docs)]
    if disguised:
        texts = [cases.zero_width(cases.homoglyphs(t[:200], rng), rng) + t[200:] for t in texts]
    rows = [
        {"doc_id": f"d{k}", "source_id": "stdlib", "locator": f"d{k}", "kind": "text", "text": t, "license": "PSF-2.0"}
        for k, t in enumerate(texts)
    ]
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def flattened(items: pa.Table) -> pa.Table:
    """``items`` with each multiple-choice field written as plain ``<name>`` (stem) and ``answer`` (answer text)
    fields: how a version of the screen without multiple-choice support would be given the same set."""
    rows = items.to_pylist()
    for row in rows:
        fields = {}
        for name, value in json.loads(row["screen_fields"]).items():
            mcq = parse_mcq(value, name) if is_mcq(value) else None
            answer = "answer" if "answer" not in fields else f"{name}_answer"  # "answer" is a target by default
            fields |= {name: value} if mcq is None else {name: mcq.stem, answer: mcq.answer}
        row["screen_fields"] = json.dumps(fields)
    return pa.Table.from_pylist(rows, schema=items.schema)


def _report(name: str, score: Score, seconds: float) -> None:
    print(f"{name}  ({seconds:.2f}s)")
    for k in score.planted:
        if score.planted[k]:
            goal = "report only" if k in REPORTED_KINDS else f"target >= {RECALL_TARGET}"
            print(f"  recall {k:<16} {score.found[k]:4d}/{score.planted[k]:<4d} {score.recall[k]:.3f}  ({goal})")
    for k, (flagged, n) in score.fp_by_kind.items():
        print(f"  FP     {k:<16} {flagged:4d}/{n:<4d} {flagged / max(n, 1):.3%}")
    total = sum(n for _, n in score.fp_by_kind.values())
    print(f"  FP     all              {len(score.false_positives):4d}/{total:<4d} {score.fp_rate:.3%}", end="")
    print(
        f"  {score.false_positives[:5]}; cross-item {score.cross_item}, unexplained {score.unexplained_cross_item[:5]}"
    )


def benchmark_items(seed: int = 0) -> tuple[pa.Table, str]:
    """HumanEval and the pyquiz multiple-choice set built from it, and pyquiz's shared few-shot opener."""
    from eval_assets.engine.registry import load_humaneval

    humaneval = load_humaneval()
    quiz, opener = cases.mcq_set(humaneval, random.Random(seed), EVAL_ITEM_SCHEMA)
    return pa.concat_tables([humaneval, quiz]), opener


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", type=int, default=3000)
    parser.add_argument("--hard", type=int, default=1000, help="documents per hard-negative kind")
    parser.add_argument("--throughput-docs", type=int, default=20000)
    parser.add_argument("--semantic", action="store_true", help="also the default screen plus the MiniLM stage")
    parser.add_argument("--baseline", help="checkout of an older version to time against (e.g. a worktree of main)")
    parser.add_argument(
        "--baseline-native-mcq", action="store_true", help="the baseline reads multiple-choice fields (no flattening)"
    )
    args = parser.parse_args(argv)
    items, opener = benchmark_items()
    labelled = build_labelled_set(items, clean_docs=args.clean, hard_docs=args.hard, opener=opener)
    negatives = {k: len(v) for k, v in labelled.negatives.items()}
    print(f"{len(items)} items, negatives {negatives}, {len(labelled.planted)} planted, skipped {labelled.skipped}")
    variants: dict[str, ScreenConfig] = {
        "ngram13 only": ScreenConfig(methods=("ngram",)),
        "all (default)": ScreenConfig(),
    }
    if args.semantic:
        import torch

        torch.set_num_threads(1)  # as the timed runs do: the figures are per core
        variants["all + semantic (MiniLM)"] = ScreenConfig(methods=METHODS)
    for name, cfg in variants.items():
        start = time.perf_counter()
        _, _, findings = screen(labelled.docs, items, config=cfg)
        seconds = time.perf_counter() - start
        _report(name, evaluate(findings, labelled, item_overlaps(items, cfg)), seconds)
        if "code" in cfg.methods:  # renamed code: also counted among the solutions a code test can screen
            found, n = cases.structural_recall(findings, labelled.planted, build_index(items, config=cfg))
            print(f"  recall renamed, solutions a code test screens: {found}/{n} {found / max(n, 1):.3f}")
    if args.baseline:  # the older screen on the same documents, the multiple-choice fields flattened to text
        base_items = items if args.baseline_native_mcq else flattened(items)
        seconds, findings = timed_screen(args.baseline, labelled.docs, base_items)
        _report(f"baseline {args.baseline}", evaluate(findings, labelled, item_overlaps(items)), seconds)
        if args.semantic:  # its MiniLM stage too (CPU seconds: the model runs in that process)
            methods = ScreenConfig(methods=METHODS)
            seconds, findings = timed_screen(args.baseline, labelled.docs, base_items, METHODS)
            score = evaluate(findings, labelled, item_overlaps(items, methods))
            _report(f"baseline {args.baseline} + semantic", score, seconds)
    humaneval = items.filter(pc.equal(items.column("eval_set"), "humaneval"))
    for disguised in (False, True):
        docs = throughput_docs(args.throughput_docs, disguised=disguised)
        mb = sum(len(t.encode()) for t in docs.column("text").to_pylist()) / 1e6
        label = "non-ASCII (disguised)" if disguised else "ASCII stdlib/pydoc"
        print(f"throughput, {docs.num_rows} {label} docs ({mb:.1f} MB), MB per CPU-second:")
        runs = [("this tree", ROOT, humaneval, None), ("this tree, + pyquiz", ROOT, items, None)]
        runs += [("baseline", args.baseline, humaneval, None)] if args.baseline else []
        if args.semantic and not disguised:  # the MiniLM stage on text that matches nothing
            runs += [("this tree + semantic", ROOT, humaneval, METHODS)]
            runs += [("baseline + semantic", args.baseline, humaneval, METHODS)] if args.baseline else []
        # What the screen must keep up with, on the same text; the ratios are to the gate without its exact dedupe
        # (drawn with replacement, 20,000 chunks hold ~6,200 distinct texts, and a copy skips the gate's other rules).
        print(f"  {'gate (default rules)':<22}{'':14}{mb / timed_gate(ROOT, docs):7.1f}")
        gate_rate = mb / timed_gate(ROOT, docs, every=True)
        print(f"  {'gate, no exact dedupe':<22}{'':14}{gate_rate:7.1f}")
        for name, root, its, methods in runs:
            rate = mb / timed_screen(root, docs, its, methods)[0]
            print(f"  {name:<22} x {len(its):3d} items: {rate:7.1f}  ({rate / gate_rate:.2f}x the gate)")


if __name__ == "__main__":
    main()
