"""Recall of the code-aware screen on renamed HumanEval programs, and its false positives on CPython's stdlib.

Run: ``python benchmarks/code_contamination.py [--items 164] [--seed 0]``

Planted documents: each HumanEval item's program (prompt + canonical solution) with every name it binds
(the function, its parameters, its locals, comprehension and loop variables) renamed consistently, written
two ways: ``ast.unparse`` of the renamed tree (layout, quotes, parentheses and comments normalised away) and
a token-level rename that keeps the original layout and comments. Each copy sits in the middle of a 4-6 KB
host: a stdlib source chunk or a pydoc help text. Clean documents: every ``.py`` file of the standard
library, one file one document. The screen runs twice in the same process, word methods only and with
``code`` added, so its throughput is compared on the same machine state.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import io
import json
import random
import re
import sys
import sysconfig
import time
import tokenize
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from mixassets.engine.contamination import ScreenConfig, build_index, screen  # noqa: E402
from mixtrain.schema import DOCUMENT_SCHEMA  # noqa: E402

WORD_METHODS = ScreenConfig(methods=("ngram", "containment", "jaccard"))
WITH_CODE = ScreenConfig(methods=("ngram", "containment", "jaccard", "code"))
_NEW_NAMES = ("alpha", "bravo", "carrot", "delta", "ember", "fjord", "gamma", "harbor", "indigo", "juniper")


def stdlib_files() -> list[tuple[str, str]]:
    """(path, text) of every ``.py`` file of the running Python's standard library (site-packages excluded)."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(lib.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            out.append((str(path.relative_to(lib)), path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue  # a handful of test fixtures are deliberately undecodable
    return out


def bound_names(tree: ast.AST) -> set[str]:
    """Every name the program binds: function names, parameters, assignment/loop/comprehension targets."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names - set(dir(builtins))


def rename_map(program: str, rng: random.Random) -> dict[str, str]:
    names = sorted(bound_names(ast.parse(program)))
    return {old: f"{rng.choice(_NEW_NAMES)}_{i}" for i, old in enumerate(names)}


class _Renamer(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.mapping.get(node.id, node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self.mapping.get(node.arg, node.arg)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.name = self.mapping.get(node.name, node.name)
        self.generic_visit(node)
        return node


def rename_unparse(program: str, mapping: dict[str, str]) -> str:
    """The renamed program as ``ast.unparse`` writes it: comments dropped, layout and quoting normalised."""
    return ast.unparse(_Renamer(mapping).visit(ast.parse(program)))


def rename_tokens(program: str, mapping: dict[str, str]) -> str:
    """The renamed program with its own layout and comments: NAME tokens replaced in place."""
    lines = program.splitlines(keepends=True)
    edits: dict[int, list[tuple[int, int, str]]] = {}
    for tok in tokenize.generate_tokens(io.StringIO(program).readline):
        if tok.type == tokenize.NAME and tok.string in mapping:
            edits.setdefault(tok.start[0] - 1, []).append((tok.start[1], tok.end[1], mapping[tok.string]))
    for row, spans in edits.items():
        line = lines[row]
        for start, end, new in sorted(spans, reverse=True):
            line = line[:start] + new + line[end:]
        lines[row] = line
    return "".join(lines)


def strip_docstrings(program: str) -> str:
    """The program without its docstrings (a copy that kept only the code)."""
    tree = ast.parse(program)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


VARIANTS = ("unparse", "tokens", "no_docstring", "solution_only")


def host_text(pool: list[str], rng: random.Random, size: int) -> str:
    text = rng.choice(pool)
    start = rng.randrange(max(1, len(text) - size))
    return text[start : start + size]


_TOP_LEVEL = re.compile(r"^(?:def|class|@)", re.M)


def plant(program: str, pool: list[str], rng: random.Random) -> str:
    """``program`` inside a 4-6 KB host: a stdlib file cut and split at top-level statements (where a pasted
    function would go; a cut inside a docstring would turn the program into string content), or help text."""
    text = rng.choice(pool)
    size = rng.randrange(4000, 6000)
    starts = [m.start() for m in _TOP_LEVEL.finditer(text)]
    if len(starts) < 3:  # prose (pydoc topics): any line boundary
        host = host_text([text], rng, size)
        cut = host.find("\n", len(host) // 2)
        cut = len(host) // 2 if cut < 0 else cut + 1
        return host[:cut] + "\n" + program + "\n" + host[cut:]
    first = rng.randrange(len(starts) - 2)
    last = next((s for s in starts[first + 2 :] if s - starts[first] >= size), starts[-1])
    middle = next(s for s in starts[first + 1 :] if s >= (starts[first] + last) // 2 or s == last)
    return text[starts[first] : middle] + "\n" + program + "\n\n" + text[middle:last]


def docs_table(texts: list[str], prefix: str) -> pa.Table:
    rows = [{"doc_id": f"{prefix}{i}", "source_id": prefix, "text": t} for i, t in enumerate(texts)]
    return pa.Table.from_pylist([{n: r.get(n) for n in DOCUMENT_SCHEMA.names} for r in rows], schema=DOCUMENT_SCHEMA)


def planted_documents(items: pa.Table, files: list[tuple[str, str]], seed: int) -> tuple[pa.Table, list[str]]:
    """One planted document per item and variant (:data:`VARIANTS`), and the item id each must be attributed to."""
    from pydoc_data.topics import topics

    rng = random.Random(seed)
    pool = [t for _, t in files if len(t) > 8000] + [t for t in topics.values() if len(t) > 6000]
    texts, owners = [], []
    for row in items.to_pylist():
        fields = json.loads(row["screen_fields"])
        program = fields["prompt"] + fields["solution"]
        mapping = rename_map(program, rng)
        variants = (
            rename_unparse(program, mapping),
            rename_tokens(program, mapping),
            strip_docstrings(rename_unparse(program, mapping)),
            rename_tokens(program, mapping)[len(rename_tokens(fields["prompt"], mapping)) :],
        )
        for variant in variants:
            texts.append(plant(variant, pool, rng))
            owners.append(row["item_id"])
    return docs_table(texts, "plant"), owners


def recall(
    findings: pa.Table, owners: list[str], methods: str | None, among: dict[str, set[str]] | None = None
) -> dict[str, float]:
    """Per variant, the share of planted documents with a finding (of ``methods``, if given) naming their item;
    ``among`` (variant -> item ids) restricts each variant's count to those items."""
    found = set()
    for f in findings.to_pylist():
        if methods is None or f["match_type"].startswith(methods):
            found.add((f["doc_id"], f["item_id"]))
    step = len(VARIANTS)
    out = {}
    for k, variant in enumerate(VARIANTS):
        kept = [(i, o) for i, o in enumerate(owners) if i % step == k and (among is None or o in among[variant])]
        hits = [(f"plant{i}", o) in found for i, o in kept]
        out[variant] = round(sum(hits) / max(1, len(hits)), 3)
    return out


def throughput(items: pa.Table, files: list[tuple[str, str]]) -> None:
    """MB/s per CPU-second of the screen on stdlib files: word methods, + code, + code + semantic, in one process
    (the model is loaded and the items embedded before the clock starts). torch gets one thread: the figure is
    per core, and on a busy machine idle intra-op threads spin and bill CPU time without doing work."""
    import torch

    torch.set_num_threads(1)
    docs = docs_table([t for _, t in files], "stdlib")
    megabytes = sum(len(t.encode()) for _, t in files) / 1e6
    semantic = ScreenConfig(methods=(*WITH_CODE.methods, "semantic"))
    for name, config in (("word methods", WORD_METHODS), ("+ code", WITH_CODE), ("+ code + semantic", semantic)):
        index = build_index(items, config=config)
        t0 = time.process_time()
        _, dirty, findings = screen(docs, items, config=config, index=index)
        cpu = time.process_time() - t0
        methods = sorted(set(findings["match_type"].to_pylist()))
        rate = megabytes / cpu
        print(f"{name}: {megabytes:.1f} MB, {rate:.2f} MB/s per CPU-second, {dirty.num_rows} flagged {methods}")


def python_files(root: Path) -> list[tuple[str, str]]:
    """(path, text) of every decodable ``.py`` file under ``root`` (e.g. a virtual environment's site-packages)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        try:
            out.append((str(path.relative_to(root)), path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
    return out


def body_calibration(items: pa.Table, files: list[tuple[str, str]]) -> None:
    """How often each solution's whole block (``code_body``) occurs in ``files``, by the solution's length.

    Every solution of at least :data:`~mixassets.engine.contamination_body.PREFIX` canonical tokens is indexed
    (the smallest the test can index); a file counts for a solution when it holds the solution's lines as a
    complete, anchored block (what the screen flags) or merely as a run of lines (a near miss, which shows how
    far the anchors and the length are from chance). The minimum the screen uses is chosen from the lengths.
    """
    from mixassets.engine.contamination_body import PREFIX, body_findings
    from mixassets.engine.contamination_code import DocTokens

    config = ScreenConfig(methods=("code",), code_body_min_tokens=PREFIX)
    index = build_index(items, config=config)
    assert index.code_body is not None
    lengths = {k: len(b.stream) for k, b in enumerate(index.bodies) if b is not None}
    hits: dict[bool, dict[int, set[int]]] = {True: {}, False: {}}
    megabytes = sum(len(t.encode()) for _, t in files) / 1e6
    t0 = time.process_time()
    for start in range(0, len(files), 256):
        docs = DocTokens([t for _, t in files[start : start + 256]], index.hasher)
        for anchored in (True, False):
            for doc, ref, *_ in body_findings(docs, index.code_body, index.bodies, anchored):
                hits[anchored].setdefault(ref, set()).add(start + doc)
    cpu = time.process_time() - t0
    print(f"whole-block test over {len(files)} files ({megabytes:.1f} MB, {cpu:.0f} CPU-s for both passes):")
    print("  tokens  solutions  with an anchored block (files)  with a run of lines (files)")
    for n in sorted(set(lengths.values())):
        refs = [k for k, v in lengths.items() if v == n]
        anchored = [k for k in refs if hits[True].get(k)]
        loose = [k for k in refs if hits[False].get(k)]
        files_a = sum(len(hits[True][k]) for k in anchored)
        files_l = sum(len(hits[False][k]) for k in loose)
        print(f"  {n:6d}  {len(refs):9d}  {len(anchored):3d} ({files_a})  {len(loose):3d} ({files_l})", end="")
        print(f"  e.g. {files[min(hits[False][loose[0]])][0]} ~ {index.fields[loose[0]].item_id}" if loose else "")


def main(argv: list[str] | None = None) -> None:
    from eval_assets.engine.registry import load_humaneval

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--code-n", type=int, default=ScreenConfig().code_n)
    parser.add_argument("--code-min-tokens", type=int, default=ScreenConfig().code_min_tokens)
    parser.add_argument("--throughput-only", type=int, default=0, help="time every Nth stdlib file, no recall")
    parser.add_argument("--body", action="store_true", help="calibrate the whole-block test (code_body) only")
    parser.add_argument("--extra-root", help="with --body: more Python files, e.g. a venv's site-packages")
    args = parser.parse_args(argv)
    if args.body:
        extra = python_files(Path(args.extra_root)) if args.extra_root else []
        body_calibration(load_humaneval(args.items), stdlib_files() + extra)
        return
    if args.throughput_only:
        throughput(load_humaneval(args.items), stdlib_files()[:: args.throughput_only])
        return
    with_code = ScreenConfig(methods=WITH_CODE.methods, code_n=args.code_n, code_min_tokens=args.code_min_tokens)
    items = load_humaneval(args.items)
    files = stdlib_files()
    planted, owners = planted_documents(items, files, args.seed)
    clean = docs_table([t for _, t in files], "stdlib")
    megabytes = sum(len(t.encode()) for _, t in files) / 1e6
    print(f"{items.num_rows} items, {len(owners)} planted documents, {len(files)} stdlib files ({megabytes:.1f} MB)")
    index = build_index(items, config=with_code)
    assert index.code is not None and index.code_fuzzy is not None
    counts = zip(index.fields, index.code.field_counts, index.code_fuzzy.field_counts, strict=True)
    coded = [f for f, exact, fuzzy in counts if exact or fuzzy]  # fields either code test indexes
    screenable = {f.item_id for f in coded if f.field.startswith("prompt+")}
    solutions = {f.item_id for f in coded if f.field == "solution"}
    # Honest denominators: a copy of the whole program counts where the program is screenable, a copy of the
    # solution body alone where the solution is; the rest are too short for any structural test.
    among = {v: solutions if v == "solution_only" else screenable for v in VARIANTS}
    for name, config in (("word methods", WORD_METHODS), ("word + code", with_code)):
        t0 = time.process_time()
        _, dirty, findings = screen(clean, items, config=config)
        cpu = time.process_time() - t0
        _, _, planted_findings = screen(planted, items, config=config)
        code = [f for f in findings.to_pylist() if f["match_type"].startswith("code")]
        print(
            f"{name}: stdlib flagged {dirty.num_rows}/{len(files)} ({dirty.num_rows / len(files):.3%}),"
            f" by code {len({f['doc_id'] for f in code})}; {megabytes / cpu:.2f} MB/s per CPU-second\n"
            f"    recall, any method {recall(planted_findings, owners, None)}\n"
            f"    recall, code method {recall(planted_findings, owners, 'code')}\n"
            f"    recall, code methods, screenable items ({len(screenable)} programs, {len(solutions)} solutions):"
            f" {recall(planted_findings, owners, 'code', among)}"
        )
        for f in code[:5]:
            path = files[int(f["doc_id"].removeprefix("stdlib"))][0]
            print(f"    code FP: {path} {f['item_id']} {f['field']} score {f['score']:.3f}")
    print(f"items whose prompt+solution / solution a code test screens: {len(screenable)} / {len(solutions)}")


if __name__ == "__main__":
    main()
