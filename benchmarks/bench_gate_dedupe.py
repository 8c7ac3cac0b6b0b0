"""Throughput and quality of the gate and of cross-source dedupe on a synthetic corpus.

Run: ``python benchmarks/bench_gate_dedupe.py [--docs 20000] [--no-baseline]`` (the baseline needs datasketch:
``pip install '.[bench]'``).

The corpus is random words from a fixed Zipf-weighted vocabulary (seeded, so every run sees the same
documents), about 2 KB each, spread over four sources, with planted duplicates whose truth is known:

* exact copies re-cased / re-punctuated / re-spaced in another source;
* near copies with ~1.5% of words replaced (shingle Jaccard ~0.86, so they *should* be dropped at 0.8);
* "hard negatives": copies with ~6% of words replaced (Jaccard ~0.5, which must be *kept*).

Whether a planted copy should be dropped is decided by its exact 5-gram Jaccard with its original,
computed with plain Python sets of shingle strings (:func:`benchmarks.labelled_neardup.shingles`, the same
truth as the labelled real-text set), independently of the engine's hashing. Copies
are captured later than their originals, so the original is always the keeper and a correct run drops
exactly the copies.

The baseline is the naive datasketch pipeline in the same process: one ``MinHash()`` per document fed
shingle by shingle with ``update``, then ``MinHashLSH`` query (drop on any candidate) / insert.

Each stage runs in its own child process that first loads the corpus from Parquet, so its peak RSS
(VmHWM on Linux, else ``getrusage``) is its own; the RSS with just the corpus loaded is reported beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_info, peak_rss_mb, spawn, timed, write_report  # noqa: E402
from benchmarks.labelled_neardup import NGRAM, T0, cluster_root, jaccard, keeper_of_from_clusters, shingles  # noqa: E402
from mixassets.engine.text_norm import dedupe_words  # noqa: E402
from mixtrain.schema import DOCUMENT_SCHEMA  # noqa: E402

if TYPE_CHECKING:
    from mixtrain.config.data import SourceSpec

SOURCES = ("web", "books", "forum", "code")
THRESHOLD = 0.8


def make_vocab(rng: np.random.Generator, size: int = 30_000) -> tuple[np.ndarray, np.ndarray]:
    """Random letter strings and the cumulative Zipf distribution to draw them with."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = {"".join(rng.choice(letters, rng.integers(2, 11))) for _ in range(size * 2)}
    vocab = np.array(sorted(words)[:size])
    rng.shuffle(vocab)
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.05
    return vocab, np.cumsum(weights / weights.sum())


def draw_words(rng: np.random.Generator, vocab: np.ndarray, cdf: np.ndarray) -> list[str]:
    """One document's words (250-289 of them) drawn from the Zipf ``cdf`` over ``vocab``."""
    draws = np.minimum(np.searchsorted(cdf, rng.random(int(rng.integers(250, 290)))), len(vocab) - 1)
    return vocab[draws].tolist()


def bench_source_spec(source_id: str) -> SourceSpec:
    """A source with its default gating rules, as the benchmarks gate it. The corpus is random letter
    strings, which no language fits: accepting every language the detector knows keeps the language rule
    running on every document without holding them all."""
    from mixassets.engine.langid import _get as langid_model
    from mixtrain.config.data import SourceSpec

    gating = {"language": {"expected": sorted(langid_model().nb_classes)}}
    return SourceSpec.model_validate(
        {"id": source_id, "path": f"{source_id}.jsonl", "format": "jsonl", "license": "CC-BY-4.0", "gating": gating}
    )


def render(words: list[str], rng: np.random.Generator) -> str:
    """Words into sentences with capitals and punctuation, so normalisation has something to undo."""
    out, start = [], 0
    while start < len(words):
        end = min(len(words), start + int(rng.integers(8, 20)))
        sentence = " ".join(words[start:end])
        out.append(sentence[:1].upper() + sentence[1:] + rng.choice([".", "!", "?", ";"]))
        start = end
    return " ".join(out)


def make_corpus(n: int, seed: int) -> tuple[pa.Table, dict[str, dict[str, Any]]]:
    """The corpus and the planted copies: {copy_doc_id: {"original", "kind"}}."""
    rng = np.random.default_rng(seed)
    vocab, cdf = make_vocab(rng)
    n_exact, n_near, n_hard = int(n * 0.03), int(n * 0.10), int(n * 0.02)
    n_orig = n - n_exact - n_near - n_hard
    originals: list[list[str]] = []
    rows: list[dict[str, Any]] = []
    planted: dict[str, dict[str, Any]] = {}

    def add(words_: list[str], text: str, kind: str, original: str | None, day: int) -> None:
        doc_id = f"d{len(rows):07d}"
        source = SOURCES[int(rng.integers(len(SOURCES)))]
        rows.append({"doc_id": doc_id, "source_id": source, "locator": f"{source}.jsonl:{len(rows) + 1}",
                     "kind": "text", "text": text, "license": "CC-BY-4.0", "rights_tags": [],
                     "domain": "general", "language": "en", "capture_time": T0 + dt.timedelta(days=day)})  # fmt: skip
        if original is not None:
            planted[doc_id] = {"original": original, "kind": kind}

    for _ in range(n_orig):
        words = draw_words(rng, vocab, cdf)
        originals.append(words)
        add(words, render(words, rng), "original", None, 0)

    def mutated(words: list[str], rate: float) -> list[str]:
        out = list(words)
        for p in rng.choice(len(out), size=max(1, round(len(out) * rate)), replace=False):
            out[p] = str(vocab[rng.integers(len(vocab))])
        return out

    for kind, count, rate in (("exact", n_exact, 0.0), ("near", n_near, 0.015), ("hard", n_hard, 0.06)):
        for _ in range(count):
            k = int(rng.integers(n_orig))
            words = originals[k] if rate == 0 else mutated(originals[k], rate)
            text = render(words, rng) if rate else "  ".join(render(words, rng).upper().split(" "))
            add(words, text, kind, f"d{k:07d}", 1 + int(rng.integers(100)))

    order = rng.permutation(len(rows))  # copies must not sit next to their originals
    table = pa.Table.from_pylist([rows[i] for i in order], schema=DOCUMENT_SCHEMA)
    return table, planted


def label_truth(docs: pa.Table, planted: dict[str, dict[str, Any]]) -> set[str]:
    """Planted copies that a correct dedupe at THRESHOLD must drop."""
    text = doc_texts(docs)
    positives = set()
    for doc_id, p in planted.items():
        p["jaccard"] = jaccard(shingles(text[doc_id]), shingles(text[p["original"]]))
        if p["jaccard"] >= THRESHOLD:
            positives.add(doc_id)
    return positives


def doc_texts(docs: pa.Table) -> dict[str, str]:
    return dict(zip(docs.column("doc_id").to_pylist(), docs.column("text").to_pylist(), strict=True))


def text_mb(texts: dict[str, str]) -> float:
    """UTF-8 megabytes of all texts, unrounded: the rates divide by it."""
    return sum(len(t.encode("utf-8")) for t in texts.values()) / 1e6


def describe_corpus(
    docs: pa.Table, planted: dict[str, dict[str, Any]], positives: set[str], mb: float
) -> dict[str, Any]:
    """The corpus figures every report starts with, so runs on different sizes can be told apart."""
    return {
        "docs": docs.num_rows,
        "text_mb": round(mb, 2),
        "mean_doc_bytes": round(mb * 1e6 / docs.num_rows),
        "planted": {k: sum(p["kind"] == k for p in planted.values()) for k in ("exact", "near", "hard")},
        "should_drop": len(positives),
    }


def quality(
    keeper_of: dict[str, str], positives: set[str], planted: dict[str, dict[str, Any]], texts: dict[str, str]
) -> dict[str, Any]:
    """Recall: planted pairs that should merge and did (copy and original end in the same cluster, either
    way round). Precision: dropped docs whose true Jaccard with the keeper they were dropped for reaches
    the threshold."""
    merged = sum(cluster_root(keeper_of, c) == cluster_root(keeper_of, planted[c]["original"]) for c in positives)
    justified = sum(jaccard(shingles(texts[d]), shingles(texts[k])) >= THRESHOLD for d, k in keeper_of.items())
    return {
        "dropped": len(keeper_of),
        "recall": merged / len(positives) if positives else 1.0,
        "precision": justified / len(keeper_of) if keeper_of else 1.0,
    }


def naive_baseline(docs: pa.Table) -> dict[str, str]:
    """dropped doc -> the indexed doc it was dropped for (the first LSH candidate, unverified)."""
    from datasketch import MinHash, MinHashLSH  # only this baseline needs it: the bench extra installs it

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    keeper_of = {}
    for doc_id, text in zip(docs.column("doc_id").to_pylist(), docs.column("text").to_pylist(), strict=True):
        words = dedupe_words(text)
        m = MinHash(num_perm=128)
        for i in range(max(1, len(words) - NGRAM + 1)):
            m.update(" ".join(words[i : i + NGRAM]).encode("utf-8"))
        candidates = lsh.query(m)
        if candidates:
            keeper_of[doc_id] = min(candidates)
        else:
            lsh.insert(doc_id, m)
    return keeper_of


def run_gate(docs: pa.Table) -> dict[str, Any]:
    """Gate each source with its default rule set; per-rule seconds are summed over sources from ``time_s.*``."""
    from mixassets.engine.gating import gate

    accepted = 0
    rule_seconds: dict[str, float] = {}
    held_by: dict[str, int] = {}
    for source in SOURCES:
        part = docs.filter(pc.equal(docs.column("source_id"), source))
        result = gate(part, bench_source_spec(source))
        accepted += result.accepted.num_rows
        for key, value in result.counts.items():
            if key.startswith("time_s."):
                rule_seconds[key.removeprefix("time_s.")] = rule_seconds.get(key.removeprefix("time_s."), 0.0) + value
        for rule_id in result.quarantine.column("rule_id").to_pylist():
            held_by[rule_id] = held_by.get(rule_id, 0) + 1
    return {"accepted": accepted, "rule_seconds": rule_seconds, "held_by_rule": held_by}


def run_dedupe(docs: pa.Table, threshold: float = THRESHOLD) -> dict[str, Any]:
    """mixtrain's full dedupe: ``keeper_of`` (dropped doc -> the doc it was dropped for) and the drops per
    match type. The engine is imported here, as the gate is in :func:`run_gate`, so that each stage's child
    process holds only its own engine and the stream benchmark's children, which import this module for
    the corpus helpers, hold neither."""
    from mixassets.engine.dedupe import dedupe

    kept, clusters = dedupe(docs, threshold=threshold, ngram=NGRAM)
    if kept.num_rows + clusters.num_rows != docs.num_rows:
        raise RuntimeError("dedupe lost or invented documents")
    by_match = {m["values"]: m["counts"] for m in pc.value_counts(clusters.column("match_type")).to_pylist()}
    return {"keeper_of": keeper_of_from_clusters(clusters), "by_match": by_match}


STAGES: dict[str, Callable[[pa.Table], dict[str, Any]]] = {
    "gate": run_gate,
    "dedupe": run_dedupe,
    "naive_datasketch": lambda docs: {"keeper_of": naive_baseline(docs)},
}


def stage_child(stage: str, corpus: Path, out: Path) -> None:
    """One stage in a fresh process, so its peak RSS is its own (plus the loaded corpus)."""
    docs = pq.read_table(corpus)
    rss_loaded = peak_rss_mb()
    result, t = timed(lambda: STAGES[stage](docs))
    out.write_text(
        json.dumps({"seconds": t.seconds, "rss_loaded_mb": rss_loaded, "peak_rss_mb": t.peak_rss_mb, **result})
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-baseline", action="store_true", help="skip the (slow) naive datasketch baseline")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)  # internal: child process
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stage:
        stage_child(args.stage, args.corpus, args.child_out)
        return {}

    (docs, planted), gen = timed(lambda: make_corpus(args.docs, args.seed))
    positives = label_truth(docs, planted)
    texts = doc_texts(docs)
    mb = text_mb(texts)
    result: dict[str, Any] = {
        **describe_corpus(docs, planted, positives, mb),
        "generate_s": round(gen.seconds, 2),
        **machine_info(),
        "stages": {},
    }
    stages = [s for s in STAGES if s != "naive_datasketch" or not args.no_baseline]

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.parquet"
        pq.write_table(docs, corpus)
        for stage in stages:
            child = spawn(__file__, ["--stage", stage, "--corpus", str(corpus)], Path(tmp) / f"{stage}.json")
            seconds = child.pop("seconds")
            row: dict[str, Any] = {
                "seconds": round(seconds, 3),
                "docs_per_s": round(docs.num_rows / seconds),
                "mb_per_s": round(mb / seconds, 2),
                "peak_rss_mb": round(child.pop("peak_rss_mb"), 1),
                "rss_with_corpus_loaded_mb": round(child.pop("rss_loaded_mb"), 1),
            }
            keeper_of = child.pop("keeper_of", None)
            if keeper_of is not None:
                row.update(quality(keeper_of, positives, planted, texts))
            row.update(child)
            result["stages"][stage] = row
    if {"dedupe", "naive_datasketch"} <= set(result["stages"]):
        st = result["stages"]
        result["dedupe_speedup_vs_naive"] = round(st["naive_datasketch"]["seconds"] / st["dedupe"]["seconds"], 2)

    print_table(result)
    write_report(args.out, f"bench_gate_dedupe_{docs.num_rows}", result)
    return result


def print_table(result: dict[str, Any]) -> None:
    print(
        f"corpus: {result['docs']} docs, {result['text_mb']} MB (mean {result['mean_doc_bytes']} B/doc); "
        f"planted {result['planted']}, should drop {result['should_drop']}"
    )
    columns = [("stage", 18), ("seconds", 9), ("docs/s", 9), ("MB/s", 8), ("loaded MB", 11), ("peak MB", 9)]
    columns += [("recall", 8), ("precision", 10)]
    header = "".join(f"{n:<{w}}" if i == 0 else f"{n:>{w}}" for i, (n, w) in enumerate(columns))
    print(header)
    print("-" * len(header))
    for name, s in result["stages"].items():
        cells = [
            name,
            f"{s['seconds']:.2f}",
            str(s["docs_per_s"]),
            f"{s['mb_per_s']:.2f}",
            f"{s['rss_with_corpus_loaded_mb']:.1f}",
            f"{s['peak_rss_mb']:.1f}",
            f"{s['recall']:.3f}" if "recall" in s else "-",
            f"{s['precision']:.3f}" if "precision" in s else "-",
        ]
        print(
            "".join(
                f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, (_, w)) in enumerate(zip(cells, columns, strict=True))
            )
        )
    gate_row = result["stages"].get("gate")
    if gate_row and "rule_seconds" in gate_row:
        print_gate_rules(result, gate_row)
    if "dedupe_speedup_vs_naive" in result:
        print(f"dedupe speed-up vs naive datasketch: {result['dedupe_speedup_vs_naive']}x")


def print_gate_rules(result: dict[str, Any], gate_row: dict[str, Any]) -> None:
    """Per-rule throughput. The gate is single-threaded, so its docs/s and MB/s are per core (of the
    machine's ``cpus``); a rule's rate is over the documents of the whole corpus, though a rule only sees the
    documents that earlier rules let through."""
    docs, mb = result["docs"], result["text_mb"]
    total = gate_row["seconds"]
    in_rules = sum(gate_row["rule_seconds"].values())
    print(f"\ngate (single-threaded; machine has {result['cpus']} cores): {total:.2f} s total, "
          f"{docs / total:.0f} docs/s/core, {mb / total:.2f} MB/s/core; {in_rules:.2f} s inside rules, "
          f"{total - in_rules:.2f} s runner overhead; peak RSS {gate_row['peak_rss_mb']:.0f} MB; "
          f"accepted {gate_row['accepted']} of {docs}")  # fmt: skip
    print(f"{'rule':<32}{'seconds':>9}{'share':>8}{'docs/s':>12}{'MB/s':>9}{'held':>8}")
    for rule_id, sec in sorted(gate_row["rule_seconds"].items(), key=lambda kv: -kv[1]):
        rate = f"{docs / sec:.0f}" if sec else "-"
        mbs = f"{mb / sec:.1f}" if sec else "-"
        held = gate_row["held_by_rule"].get(rule_id, 0) + sum(
            n for r, n in gate_row["held_by_rule"].items() if r.startswith(rule_id + ".")
        )
        print(f"{rule_id:<32}{sec:>9.3f}{sec / in_rules if in_rules else 0:>8.1%}{rate:>12}{mbs:>9}{held:>8}")


if __name__ == "__main__":
    main()
