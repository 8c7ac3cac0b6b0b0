"""mixtrain's dedupe against a plain datasketch ``MinHash.bulk`` + ``MinHashLSH`` loop, in one process, on CPU time.

Run: ``python benchmarks/bench_dedupe_datasketch.py [--docs 20000] [--code-root PATH]`` (needs datasketch:
``pip install '.[bench]'``).

Why this comparison: the plain loop is what a team writes first: word 5-gram shingles of the same
:func:`~mixassets.engine.text_norm.dedupe_words`, ``MinHash.bulk`` signatures (128 permutations), and an LSH
index queried then filled document by document, dropping a document on any candidate without checking it.
mixtrain does more (exact keys, exact Jaccard of every candidate pair, keeper rule, connected components), so
being faster than the loop means the extra work is paid for. Both run on the same in-memory documents in the
same process, alternately and ``--repeats`` times each, and the fastest CPU time of each is kept: on a shared
machine CPU seconds of one process are the steadier figure, and alternating spreads any drift over both.

Before/after: ``--code-root`` puts another checkout's packages first on the import path (e.g. a ``git worktree``
of main), so the same script measures that code's dedupe against the same datasketch loop in its own process;
compare the ratios, each taken within one process. The labelled real-text set
(:mod:`benchmarks.labelled_neardup`) gives the quality of the engine measured, at ``--threshold``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _setup_path(code_root: Path | None) -> None:
    """Import the engine from ``code_root`` (another checkout) when given, else from this one."""
    for root in (ROOT, *([code_root] if code_root else [])):
        if str(root) in sys.path:
            sys.path.remove(str(root))
        sys.path.insert(0, str(root))


def plain_datasketch(texts: list[str], threshold: float, ngram: int, *, prehashed: bool, split: bool = False) -> int:
    """The plain loop; returns how many documents it dropped. ``prehashed``: shingles hashed to 64 bits with
    numpy (mixtrain's own token hashes and n-gram mixing) and handed to datasketch as integers, its low 32 bits
    taken by an identity ``hashfunc``; else datasketch's default SHA-1 of each shingle's bytes, the loop as its
    documentation writes it. ``split``: words are ``text.lower().split()`` (no Unicode or punctuation
    normalisation): the cheapest loop, kept as the strictest speed bar although on the synthetic corpus, whose
    copies are re-punctuated, it finds none of them."""
    from datasketch import MinHash, MinHashLSH  # the bench extra installs it

    from mixassets.engine.text_norm import TokenHasher, dedupe_words, ngram_hashes

    hasher = TokenHasher()
    shingles: list[Any] = []
    for text in texts:
        words = text.lower().split() if split else dedupe_words(text)
        if prehashed:
            hashes = ngram_hashes(hasher.hashes(words), ngram, short_as_one=True) & np.uint64(0xFFFFFFFF)
            shingles.append(hashes.tolist())
        else:
            shingles.append([" ".join(words[i : i + ngram]).encode() for i in range(max(1, len(words) - ngram + 1))])
    signatures = MinHash.bulk(shingles, num_perm=128, **({"hashfunc": _identity} if prehashed else {}))
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    dropped = 0
    for k, sig in enumerate(signatures):
        if lsh.query(sig):
            dropped += 1
        else:
            lsh.insert(k, sig)
    return dropped


def _identity(value: int) -> int:
    return value


def cpu_seconds(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, CPU seconds, wall seconds) of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--code-root", type=Path, help="a checkout whose engine to measure (default: this one)")
    ap.add_argument("--label", default="this checkout")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    _setup_path(args.code_root)

    from benchmarks.bench_gate_dedupe import NGRAM, make_corpus
    from benchmarks.labelled_neardup import build_labelled_set, keeper_of_from_clusters, score
    from mixassets.engine.dedupe import dedupe

    docs, _ = make_corpus(args.docs, 0)
    texts = docs.column("text").to_pylist()
    mb = sum(len(t.encode()) for t in texts) / 1e6
    best: dict[str, dict[str, float]] = {}
    dropped: dict[str, int] = {}
    runs: dict[str, Callable[[], int]] = {
        "datasketch_sha1": lambda: plain_datasketch(texts, args.threshold, NGRAM, prehashed=False),
        "datasketch_prehashed": lambda: plain_datasketch(texts, args.threshold, NGRAM, prehashed=True),
        "datasketch_split": lambda: plain_datasketch(texts, args.threshold, NGRAM, prehashed=True, split=True),
        "mixtrain": lambda: dedupe(docs, threshold=args.threshold, ngram=NGRAM)[1].num_rows,
    }
    for _ in range(args.repeats):
        for name, run in runs.items():
            dropped[name], cpu, wall = cpu_seconds(run)
            if name not in best or cpu < best[name]["cpu_s"]:
                best[name] = {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "mb_per_cpu_s": round(mb / cpu, 2)}
    labelled, truth = build_labelled_set()
    _, clusters = dedupe(labelled, threshold=args.threshold)
    quality = score(labelled, truth, keeper_of_from_clusters(clusters), args.threshold).as_dict()
    result = {
        "code": args.label,
        "docs": docs.num_rows,
        "text_mb": round(mb, 2),
        "runs": best,
        "dropped": dropped,
        # against the fastest of the plain loops
        "speed_vs_datasketch": round(
            min(v["cpu_s"] for k, v in best.items() if k.startswith("datasketch")) / best["mixtrain"]["cpu_s"], 3
        ),
        "labelled": quality,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
