"""A labelled contamination set built from text every Python install has, and a benchmark that scores the screen on it.

Run: ``python benchmarks/labelled_contamination.py [--clean 3000] [--throughput-docs 20000] [--old PATH]``

Clean documents are ~2 KB line-aligned chunks of CPython's standard library sources (its own test suites
excluded) and of the ``pydoc_data.topics`` help texts: real code and prose, offline, in every environment,
and full of the idioms HumanEval also uses, so a screen that flags them is over-eager. Eval items are
planted into other documents in five ways, each labelled with the item it must be attributed to:

* ``verbatim``: the item's fields (prompt, then solution) as one document;
* ``edited``: the same with cosmetic edits: re-indentation, case changes, quote and punctuation changes,
  joined lines, and a few spaces removed between words or inserted into identifiers (the only edits that
  change tokens: "return True" -> "returnTrue");
* ``answer_only``: just the target fields (the solution) in a short wrapper: target contamination;
* ``embedded``: an edited copy in the middle of a 4-6 KB stdlib chunk;
* ``rewritten``: identifiers renamed, lines dropped, comments inserted: a deliberately hard case that the
  exact 13-gram test mostly misses, to measure what the fuzzy methods add.

A planted document counts as found when a finding names its item (for ``answer_only``: with kind
``target``); fields too short for the screen are excluded from recall and counted instead. A clean
document with any finding is a false positive. Everything is seeded, so every run builds the same set.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import keyword
import os
import random
import re
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from mixassets.engine.contamination import TARGET, ScreenConfig, screen, unscreenable_fields  # noqa: E402
from mixtrain.schema import DOCUMENT_SCHEMA  # noqa: E402

PLANT_KINDS = ("verbatim", "edited", "answer_only", "embedded", "rewritten")
CHUNK_CHARS = 2000
# CPython's own test suites are skipped: they are not what a training corpus of library code looks like.
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
_WORD_GAP = re.compile(r"(?<=\w) (?=\w)")
_SKIP_RENAME = set(keyword.kwlist) | {"self", "int", "str", "float", "list", "dict", "len", "range", "return"}


@dataclass(frozen=True)
class Plant:
    kind: str
    eval_set: str
    item_id: str


@dataclass
class LabelledSet:
    docs: pa.Table  # DOCUMENT_SCHEMA; clean and planted documents interleaved
    planted: dict[str, Plant] = field(default_factory=dict)  # doc_id -> what was planted in it
    clean: list[str] = field(default_factory=list)  # doc_ids of clean documents
    skipped: dict[str, int] = field(default_factory=dict)  # plant kind -> items with nothing screenable to plant


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


def cosmetic_edit(text: str, rng: random.Random) -> str:
    """Re-format ``text`` the way a copy on a web page or in a notebook might differ from the original."""
    lines = []
    for line in text.splitlines():
        if not line.strip() and rng.random() < 0.7:
            continue
        body = line.lstrip(" ")
        indent = (len(line) - len(body)) // 4
        line = rng.choice(("\t" * indent, "  " * indent, "")) + body
        roll = rng.random()
        if roll < 0.15:
            line = line.upper()
        elif roll < 0.25:
            line = line.title()
        line = line.replace('"""', "'''") if rng.random() < 0.5 else line.replace("'", '"')
        line = line.replace(", ", " , ").replace("(", "( ") if rng.random() < 0.3 else line
        line = line.rstrip(":.") + " " * rng.randrange(3)
        lines.append(line)
    out = "".join(line + (" " if rng.random() < 0.1 else "\n") for line in lines)
    out = _WORD_GAP.sub(lambda m: "" if rng.random() < 0.03 else " ", out)
    return _IDENT.sub(lambda m: _split_ident(m.group(), rng) if rng.random() < 0.02 else m.group(), out)


def _split_ident(word: str, rng: random.Random) -> str:
    cut = rng.randrange(1, len(word))
    return word[:cut] + " " + word[cut:]


def rewrite_edit(text: str, rng: random.Random) -> str:
    """A paraphrased copy: about half the identifiers renamed, 15% of lines dropped, comments inserted."""
    names = sorted({w for w in _IDENT.findall(text) if w not in _SKIP_RENAME})
    renamed = {w: f"{w[:3]}_{rng.choice(('val', 'tmp', 'obj', 'item'))}" for w in names if rng.random() < 0.5}
    text = _IDENT.sub(lambda m: renamed.get(m.group(), m.group()), text)
    lines = []
    for k, line in enumerate(text.splitlines()):
        if k and rng.random() < 0.15:
            continue
        if rng.random() < 0.15:
            lines.append("    # see the notes above for why this works")
        lines.append(line)
    return "\n".join(lines)


def _item_fields(items: pa.Table) -> list[tuple[str, str, dict[str, str]]]:
    cols = [items.column(c).to_pylist() for c in ("eval_set", "item_id", "screen_fields")]
    return [(s, i, json.loads(raw)) for s, i, raw in zip(*cols, strict=True)]


def build_labelled_set(
    items: pa.Table,
    *,
    clean_docs: int = 3000,
    seed: int = 0,
    kinds: Sequence[str] = PLANT_KINDS,
    config: ScreenConfig | None = None,
) -> LabelledSet:
    """Clean stdlib/pydoc documents plus, per item of ``items`` and per kind, one planted document.

    ``config`` decides which fields are targets (for ``answer_only``) and which are too short to screen.
    """
    cfg = config or ScreenConfig()
    rng = random.Random(seed)
    pool = pydoc_chunks() + stdlib_chunks()
    rng.shuffle(pool)
    if clean_docs + 3 * len(items) > len(pool):
        raise ValueError(f"only {len(pool)} stdlib/pydoc chunks; ask for fewer than {clean_docs} clean documents")
    clean, hosts = pool[:clean_docs], pool[clean_docs:]
    short = {(u.eval_set, u.item_id, u.field) for u in unscreenable_fields(items, config=cfg)}
    labelled = LabelledSet(docs=DOCUMENT_SCHEMA.empty_table(), clean=[d for d, _ in clean])
    rows = [(doc_id, "stdlib", text) for doc_id, text in clean]
    for kind in kinds:
        labelled.skipped[kind] = 0
        for eval_set, item_id, fields in _item_fields(items):
            usable = {k: v for k, v in fields.items() if (eval_set, item_id, k) not in short}
            if kind == "answer_only":
                usable = {k: v for k, v in usable.items() if cfg.kind_of(k) == TARGET}
            if not usable:
                labelled.skipped[kind] += 1
                continue
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
    if kind == "verbatim":
        return item_text
    if kind == "edited":
        return cosmetic_edit(item_text, rng)
    if kind == "answer_only":
        return f"The answer that passed all the tests:\n\n{item_text}\n\nHope this helps."
    if kind == "embedded":
        return _embed(cosmetic_edit(item_text, rng), hosts, rng)
    if kind == "rewritten":
        return rewrite_edit(item_text, rng)
    raise ValueError(f"unknown plant kind {kind!r}; expected one of {PLANT_KINDS}")


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
    false_positives: list[str]  # clean doc_ids with a finding
    fp_rate: float
    cross_item: int  # planted documents also attributed to another item whose text the planted item shares
    unexplained_cross_item: list[str]  # planted documents attributed to an item the planted item does not overlap


def item_overlaps(items: pa.Table, config: ScreenConfig | None = None) -> set[tuple[str, str, str, str]]:
    """(set, item, other set, other item) where the item's own text already trips the screen for the other item.

    HumanEval has near-twins (HumanEval/56 and /61 share their prompt; /0 and /20 share a loop), so a
    planted copy of one is rightly attributed to the other too; these pairs are that "rightly".
    """
    rows = [
        {"doc_id": f"{s}\x1f{i}", "source_id": "items", "locator": i, "kind": "text", "text": "\n".join(f.values())}
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
        ok = any((s, i) == (p.eval_set, p.item_id) and (p.kind != "answer_only" or k == TARGET) for s, i, k in named)
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
    )


def throughput_docs(n_docs: int, seed: int = 1) -> pa.Table:
    """``n_docs`` ~2 KB stdlib/pydoc chunks (drawn with replacement), for timing only."""
    pool = pydoc_chunks() + stdlib_chunks()
    rng = random.Random(seed)
    texts = [pool[rng.randrange(len(pool))][1] for _ in range(n_docs)]
    rows = [
        {"doc_id": f"d{k}", "source_id": "stdlib", "locator": f"d{k}", "kind": "text", "text": t}
        for k, t in enumerate(texts)
    ]
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


def docs_per_second(run: Callable[[pa.Table, pa.Table], object], docs: pa.Table, items: pa.Table) -> float:
    start = time.perf_counter()
    run(docs, items)
    return docs.num_rows / (time.perf_counter() - start)


def _old_screen(path: str) -> Callable[[pa.Table, pa.Table], object]:
    """The screen of an older ``contamination.py`` (pre span/kind columns), given its findings schema back."""
    spec = importlib.util.spec_from_file_location("old_contamination", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    keep = ("doc_id", "source_id", "eval_set", "item_id", "field", "match_type", "overlap_text", "score")
    module.FINDING_SCHEMA = pa.schema([module.FINDING_SCHEMA.field(c) for c in keep])
    return module.screen


def _report(name: str, score: Score, seconds: float) -> None:
    recall = "  ".join(f"{k} {score.found[k]}/{score.planted[k]} ({score.recall[k]:.3f})" for k in score.planted)
    print(f"{name:<18} {recall}  FP {len(score.false_positives)} ({score.fp_rate:.3%}) {score.false_positives[:5]}")
    print(f"{'':<18} cross-item {score.cross_item}, unexplained {score.unexplained_cross_item[:5]}; {seconds:.2f}s")


def main(argv: Sequence[str] | None = None) -> None:
    from eval_assets.engine.registry import load_humaneval

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", type=int, default=3000)
    parser.add_argument("--throughput-docs", type=int, default=20000)
    parser.add_argument("--old", help="path of an older contamination.py to time against (git show <rev>:...)")
    args = parser.parse_args(argv)
    items = load_humaneval()
    labelled = build_labelled_set(items, clean_docs=args.clean)
    planted = len(labelled.planted)
    print(f"{len(items)} items, {len(labelled.clean)} clean docs, {planted} planted, skipped {labelled.skipped}")
    variants: Mapping[str, ScreenConfig] = {
        "ngram13 only": ScreenConfig(methods=("ngram",)),
        "containment only": ScreenConfig(methods=("containment",)),
        "jaccard only": ScreenConfig(methods=("jaccard",)),
        "all (default)": ScreenConfig(),
    }
    for name, cfg in variants.items():
        start = time.perf_counter()
        _, _, findings = screen(labelled.docs, items, config=cfg)
        seconds = time.perf_counter() - start
        _report(name, evaluate(findings, labelled, item_overlaps(items, cfg)), seconds)
    docs = throughput_docs(args.throughput_docs)
    mb = sum(len(t) for t in docs.column("text").to_pylist()) / 1e6
    print(f"throughput on {docs.num_rows} docs ({mb:.1f} MB) x {len(items)} items:")
    for name, cfg in variants.items():
        rate = docs_per_second(lambda d, i, cfg=cfg: screen(d, i, config=cfg), docs, items)
        print(f"  new, {name:<18} {rate:8.0f} docs/s")
    if args.old:
        print(f"  old ({args.old}) {docs_per_second(_old_screen(args.old), docs, items):8.0f} docs/s")


if __name__ == "__main__":
    main()
