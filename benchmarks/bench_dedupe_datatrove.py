"""mixtrain's dedupe against datatrove's MinHash pipeline: speed per core, memory, quality, incremental refresh.

Run: ``python benchmarks/bench_dedupe_datatrove.py [--docs 100000]`` (needs ``pip install '.[bench]'``).

What is compared, and why this way:

* **Corpus.** The synthetic corpus of :mod:`benchmarks.bench_gate_dedupe` (random Zipf words, ~2 KB per
  doc, planted exact / near / hard-negative copies whose truth is their exact word-5-gram Jaccard), so both
  benchmarks speak about the same data. 1% of its documents, chosen at random, form a ``fresh`` source
  captured after everything else: the incremental case adds that source to an index of the other 99%.
* **Quality on real text.** The labelled set of :mod:`benchmarks.labelled_neardup` (stdlib code and the
  language reference with graded edits) at thresholds 0.7 / 0.8 / 0.9: precision over drops (the dropped
  doc and the doc it was dropped for really reach the threshold) and recall over pairs >= threshold + 0.05.
* **datatrove's configuration.** Its defaults: word 5-gram shingles (the same n as mixtrain), 64-bit
  xxhash, 14 buckets x 8 hashes, English word tokenizer (spaCy). Datatrove has no threshold parameter and
  no verification step: the banding *is* the threshold. 14 x 8 is the configuration datatrove ships and
  FineWeb used for its ~0.75-0.8 cut, so the throughput run and the planted-corpus quality at 0.8 use it
  unchanged. For the labelled set it is also shown with a "balanced" banding per threshold (the (bands,
  rows) with bands x rows <= 112 that minimises false-positive plus false-negative area of the S-curve
  around that threshold), so datatrove is not judged at 0.7 / 0.9 with a curve meant for ~0.75.
  Its normaliser differs from mixtrain's in ways that matter on code (punctuation becomes a space rather
  than vanishing, digits become 0), so on the labelled set it is judged against a Jaccard it does not
  compute exactly; on the synthetic corpus the two tokenisations agree (up to spaCy's contraction rules).
  spaCy tokenisation is ~90% of datatrove's signature time, so datatrove also runs as ``datatrove_ws``
  with a whitespace tokenizer (enough once its ``simplify_text`` has turned punctuation into spaces): that
  row is datatrove's cost without spaCy. A drop is credited to the surviving member of its cluster.
* **Incremental refresh.** mixtrain: a build on the 99% persists its sketches and verified pairs as
  Parquet; the refresh reads them back and runs ``dedupe_incremental`` on the whole corpus (new rows
  sketched, only pairs touching them verified) and must end with the same drops as a full build.
  datatrove: an index of the 99% is built with ``MinhashBuildIndex`` from the full build's signatures
  (its "index build" cost), then the four stages run on the fresh 1% against that index. Refresh drops
  are judged through the planted families, since datatrove's index keeps no document ids.
* **Per core.** Each tool runs in its own child process, single-threaded (datatrove:
  ``LocalPipelineExecutor(workers=1)``; the bucket stage needs one task per bucket, run one after another).
  Rates are given per wall second and per CPU second of the child: on a shared machine the CPU figure is
  the steadier one. Peak RSS is the child's VmHWM; the RSS with just the corpus loaded is beside it.
  Both tools read the same in-memory Arrow table (datatrove through a reader step that makes its
  ``Document`` objects batch by batch), so neither pays for JSON parsing the other skips.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_info, peak_rss_mb, spawn, timed, write_report  # noqa: E402
from benchmarks.bench_gate_dedupe import (  # noqa: E402
    THRESHOLD,
    describe_corpus,
    doc_texts,
    label_truth,
    make_corpus,
    quality,
    run_dedupe,
    text_mb,
)
from benchmarks.datatrove_minhash import (  # noqa: E402
    DEFAULT_BANDING,
    balanced_banding,
    build_datatrove_index,
    run_datatrove,
)
from benchmarks.labelled_neardup import (  # noqa: E402
    NGRAM,
    LabelledPair,
    build_labelled_set,
    jaccard,
    keeper_of_from_clusters,
    score,
    shingles,
)
from mixassets.engine.dedupe import SKETCH_PARQUET_OPTIONS, DedupeConfig, dedupe_incremental  # noqa: E402
from mixtrain.storage import PARQUET_OPTIONS  # noqa: E402

FRESH_SOURCE = "fresh"
LABELLED_THRESHOLDS = (0.7, 0.8, 0.9)


# ---------------------------------------------------------------------------------------------- mixtrain


def mixtrain_refresh(
    base: pa.Table, fresh: pa.Table, workdir: Path, full_dropped: set[str], runs: int = 1
) -> dict[str, Any]:
    """Build on ``base`` and persist its sketches and verified pairs as Parquet, written as the asset layer
    writes them, then refresh with ``fresh`` added, in a new process as a later ``mixtrain run`` would: read
    the persisted state back and run :func:`~mixassets.engine.dedupe.dedupe_incremental` on the whole corpus,
    which sketches only the new rows and verifies only pairs touching them. Reading the state back is part of
    the refresh time, as reading its index is part of datatrove's. ``full_dropped`` (a full build's drops)
    checks that the refresh ends where a full build does. The refresh runs ``runs`` times, each in a fresh
    process: its cost is a second or so, in which the kernel's first-touch page faults vary from run to run,
    so the median and the maximum are reported."""
    cfg = DedupeConfig(threshold=THRESHOLD, ngram=NGRAM)
    built, base_t = timed(lambda: dedupe_incremental(base, config=cfg))
    pq.write_table(built.sketches, workdir / "sketches.parquet", **SKETCH_PARQUET_OPTIONS)
    pq.write_table(built.verified_pairs, workdir / "pairs.parquet", **PARQUET_OPTIONS)
    pq.write_table(pa.concat_tables([base, fresh]), workdir / "corpus.parquet")
    unchanged = set(base.column("source_id").to_pylist()) - set(fresh.column("source_id").to_pylist())
    (workdir / "unchanged.json").write_text(json.dumps(sorted(unchanged)))
    children = [
        spawn(__file__, ["--child", "mixtrain_refresh", "--corpus", str(workdir)], workdir / f"refresh{k}.json")
        for k in range(max(1, runs))
    ]
    child = children[0]
    keeper_of = child["keeper_of"]
    if any(c["keeper_of"] != keeper_of for c in children[1:]):
        raise RuntimeError("mixtrain: repeated refreshes of the same state dropped different documents")
    fresh_ids = set(fresh.column("doc_id").to_pylist())
    base_dropped = set(keeper_of_from_clusters(built.clusters))
    cpu = [c["cpu_seconds"] for c in children]
    return {
        "base_build_s": round(base_t.seconds, 2),
        "index_s": 0.0,  # the sketches and verified pairs are outputs of every build
        "refresh_s": round(statistics.median(c["seconds"] for c in children), 2),
        "refresh_cpu_s": round(statistics.median(cpu), 3),
        "refresh_cpu_max_s": round(max(cpu), 3),
        "refresh_cpu_runs": [round(c, 3) for c in cpu],
        "kept_table_cpu_s": round(statistics.median(c["kept_table_cpu_seconds"] for c in children), 3),
        "keeper_of": {d: k for d, k in keeper_of.items() if d in fresh_ids},
        "base_docs_changed": len(base_dropped ^ {d for d in keeper_of if d not in fresh_ids}),
        "matches_full_build": set(keeper_of) == full_dropped,
        **{k: child[k] for k in ("incremental", "sketched", "sketches_reused", "pairs_verified", "pairs_reused")},
        "base_rows": base.num_rows,
        "fresh_rows": fresh.num_rows,
    }


def refresh_child(state: Path) -> dict[str, Any]:
    """The refresh alone, in a fresh process: read the corpus untimed, then time reading the persisted state
    (memory-mapped, as the asset reads a local storage root) and the incremental dedupe
    (``unchanged_sources`` is what the asset passes: the base sources' gated partitions kept their data
    versions). The engine does not copy the kept rows (the asset streams them to its output file batch by
    batch); building them as one table is timed on its own, as ``kept_table_cpu_seconds``."""
    corpus = pq.read_table(state / "corpus.parquet")
    unchanged = set(json.loads((state / "unchanged.json").read_text()))
    cfg = DedupeConfig(threshold=THRESHOLD, ngram=NGRAM)
    refreshed, t = timed(
        lambda: dedupe_incremental(
            corpus,
            previous_sketches=pq.read_table(state / "sketches.parquet", memory_map=True),
            previous_pairs=pq.read_table(state / "pairs.parquet", memory_map=True),
            config=cfg,
            unchanged_sources=unchanged,
        )
    )
    _, kept_t = timed(lambda: refreshed.kept)
    stats = refreshed.stats
    return {
        **asdict(t),
        "kept_table_cpu_seconds": kept_t.cpu_seconds,
        "keeper_of": keeper_of_from_clusters(refreshed.clusters),
        "incremental": stats.incremental,
        "sketched": stats.sketched,
        "sketches_reused": stats.sketches_reused,
        "pairs_verified": stats.pairs_verified,
        "pairs_reused": stats.pairs_reused,
    }


# ---------------------------------------------------------------------------------------------- children


def _split(docs: pa.Table) -> tuple[pa.Table, pa.Table]:
    is_fresh = pc.equal(docs.column("source_id"), FRESH_SOURCE)
    return docs.filter(pc.invert(is_fresh)), docs.filter(is_fresh)


def _timed(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``fn``'s result with its wall and CPU seconds and the process's peak RSS once it is done."""
    result, t = timed(fn)
    return {**result, **asdict(t)}


def child_mixtrain(docs: pa.Table, workdir: Path, refresh_runs: int = 1) -> dict[str, Any]:
    full = _timed(lambda: run_dedupe(docs))
    refresh = mixtrain_refresh(*_split(docs), workdir, set(full["keeper_of"]), runs=refresh_runs)
    return {"full": full, "refresh": refresh}


def child_datatrove(docs: pa.Table, workdir: Path, tokenizer: str = "default") -> dict[str, Any]:
    """The full build (the 99% and the fresh 1% as two input files), then the refresh: an index of the
    99% built from that build's signatures, and the fresh 1% deduped against it."""
    base, fresh = _split(docs)
    full = _timed(lambda: run_datatrove([base, fresh], workdir / "full", DEFAULT_BANDING, tokenizer=tokenizer))
    index, index_s = build_datatrove_index(workdir / "full" / "sigs", 0, workdir, DEFAULT_BANDING)
    refresh = run_datatrove([fresh], workdir / "refresh", DEFAULT_BANDING, index_dir=index, tokenizer=tokenizer)
    return {
        "full": full,
        "refresh": {
            "index_s": round(index_s, 2),
            "refresh_s": round(sum(refresh["stage_seconds"].values()), 2),
            "refresh_stage_seconds": {k: round(v, 3) for k, v in refresh["stage_seconds"].items()},
            "keeper_of": refresh["keeper_of"],
            "base_rows": base.num_rows,
            "fresh_rows": fresh.num_rows,
        },
    }


CHILDREN: dict[str, Callable[[pa.Table, Path], dict[str, Any]]] = {
    "mixtrain": child_mixtrain,
    "datatrove": child_datatrove,
    "datatrove_ws": lambda docs, workdir: child_datatrove(docs, workdir, tokenizer="whitespace"),
}
TOOLS = ("mixtrain", "datatrove", "datatrove_ws")


def run_child(name: str, corpus: Path, out: Path, refresh_runs: int = 1) -> None:
    if name == "mixtrain_refresh":  # ``corpus`` is the refresh state directory here
        out.write_text(json.dumps(refresh_child(corpus)))
        return
    docs = pq.read_table(corpus)
    rss_loaded = peak_rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        if name == "mixtrain":
            result = child_mixtrain(docs, Path(tmp), refresh_runs)
        else:
            result = CHILDREN[name](docs, Path(tmp))
    out.write_text(json.dumps({"rss_loaded_mb": rss_loaded, **result}))


# ------------------------------------------------------------------------------------------------ parent


def make_refresh_corpus(n: int, seed: int, fresh_share: float) -> tuple[pa.Table, dict[str, dict[str, Any]]]:
    """The benchmark corpus with ``fresh_share`` of its rows moved to a ``fresh`` source captured last."""
    docs, planted = make_corpus(n, seed)
    rng = np.random.default_rng(seed + 1)
    fresh = np.zeros(docs.num_rows, dtype=bool)
    fresh[rng.choice(docs.num_rows, size=max(1, round(docs.num_rows * fresh_share)), replace=False)] = True
    later = pc.max(docs.column("capture_time")).as_py() + dt.timedelta(days=1)
    captured = pa.array(
        [later if f else t for f, t in zip(fresh, docs.column("capture_time").to_pylist(), strict=True)],
        type=docs.schema.field("capture_time").type,
    )
    sources = pa.array(
        [FRESH_SOURCE if f else s for f, s in zip(fresh, docs.column("source_id").to_pylist(), strict=True)]
    )
    docs = docs.set_column(docs.schema.get_field_index("source_id"), "source_id", sources)
    docs = docs.set_column(docs.schema.get_field_index("capture_time"), "capture_time", captured)
    return docs, planted


def refresh_quality(
    keeper_of: dict[str, str], fresh_ids: set[str], planted: dict[str, dict[str, Any]], texts: dict[str, str]
) -> dict[str, Any]:
    """Refresh drops are judged by the planted family (an original and its copies) of the dropped fresh
    doc: justified when some other member reaches the threshold with it (datatrove's index keeps no ids,
    so the keeper cannot be named). Recall: fresh docs that a full dedupe should drop because a planted
    relative reaches the threshold."""
    family: dict[str, set[str]] = {}
    for copy, p in planted.items():
        members = family.setdefault(p["original"], {p["original"]})
        members.add(copy)
        family[copy] = members

    def should_go(doc: str) -> bool:
        return any(
            o != doc and jaccard(shingles(texts[doc]), shingles(texts[o])) >= THRESHOLD for o in family.get(doc, ())
        )

    must = {d for d in fresh_ids if d in family and should_go(d)}
    dropped = set(keeper_of)
    return {
        "dropped": len(dropped),
        "should_drop": len(must),
        "recall": len(dropped & must) / len(must) if must else 1.0,
        "precision": sum(should_go(d) for d in dropped) / len(dropped) if dropped else 1.0,
    }


def _quality_row(
    tool: str, config: str, docs: pa.Table, truth: list[LabelledPair], keeper_of: dict[str, str], threshold: float
) -> dict[str, Any]:
    """Overall quality plus precision and recall split by prose (the language reference) and code (stdlib
    modules): datatrove's normaliser departs from the labels' on code, not on prose."""
    domain = dict(zip(docs.column("doc_id").to_pylist(), docs.column("domain").to_pylist(), strict=True))
    row: dict[str, Any] = {"tool": tool, "config": config, **score(docs, truth, keeper_of, threshold).as_dict()}
    for name in ("reference", "code"):
        part = score(
            docs,
            [p for p in truth if domain[p.base_id] == name],
            {d: k for d, k in keeper_of.items() if domain[d] == name},
            threshold,
        )
        row[name] = {"precision": round(part.precision, 4), "recall": round(part.recall, 4), "dropped": part.dropped}
    return row


def labelled_quality(pairs: int, singles: int, seed: int) -> list[dict[str, Any]]:
    """Both tools on the labelled real-text set, in this process (it is small); datatrove's progress
    logging is swallowed so the summary stays readable."""
    docs, truth = build_labelled_set(n_pairs=pairs, n_singles=singles, seed=seed)
    rows = []
    for threshold in LABELLED_THRESHOLDS:
        keeper_of = run_dedupe(docs, threshold)["keeper_of"]
        rows.append(_quality_row("mixtrain", "128 perms, verified", docs, truth, keeper_of, threshold))
        for banding in (DEFAULT_BANDING, balanced_banding(threshold)):
            with (
                tempfile.TemporaryDirectory() as tmp,
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                keeper_of = run_datatrove([docs], Path(tmp), banding)["keeper_of"]
            rows.append(_quality_row("datatrove", str(banding), docs, truth, keeper_of, threshold))
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh-share", type=float, default=0.01, help="share of the corpus in the refresh source")
    ap.add_argument("--labelled-pairs", type=int, default=400)
    ap.add_argument("--labelled-singles", type=int, default=200)
    ap.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS), help="tools to run")
    ap.add_argument(
        "--refresh-runs", type=int, default=1, help="mixtrain refreshes of the same state, each in its own process"
    )
    ap.add_argument("--no-labelled", action="store_true", help="skip the labelled real-text quality comparison")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--child", choices=[*sorted(CHILDREN), "mixtrain_refresh"], help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        run_child(args.child, args.corpus, args.child_out, args.refresh_runs)
        return {}
    tools = [t for t in TOOLS if t in args.tools]
    try:
        datatrove_version = importlib.metadata.version("datatrove")
    except importlib.metadata.PackageNotFoundError as exc:
        if tools != ["mixtrain"]:
            raise SystemExit("datatrove is not installed: pip install '.[bench]'") from exc
        datatrove_version = None

    t0 = time.perf_counter()
    docs, planted = make_refresh_corpus(args.docs, args.seed, args.fresh_share)
    positives = label_truth(docs, planted)
    texts = doc_texts(docs)
    mb = text_mb(texts)
    fresh_ids = set(pc.filter(docs.column("doc_id"), pc.equal(docs.column("source_id"), FRESH_SOURCE)).to_pylist())
    result: dict[str, Any] = {
        **describe_corpus(docs, planted, positives, mb),
        "threshold": THRESHOLD,
        "ngram": NGRAM,
        "fresh_docs": len(fresh_ids),
        "generate_s": round(time.perf_counter() - t0, 1),
        "datatrove_version": datatrove_version,
        **machine_info(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "full": {},
        "refresh": {},
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        corpus = tmp / "corpus.parquet"
        pq.write_table(docs, corpus)
        for tool in tools:
            extra = ["--refresh-runs", str(args.refresh_runs)] if tool == "mixtrain" else []
            child = spawn(__file__, ["--child", tool, "--corpus", str(corpus), *extra], tmp / f"{tool}.json")
            full, refresh = child["full"], child["refresh"]
            row = {
                "seconds": round(full["seconds"], 2),
                "cpu_seconds": round(full["cpu_seconds"], 2),
                "docs_per_s": round(docs.num_rows / full["seconds"]),
                "mb_per_s": round(mb / full["seconds"], 2),
                "mb_per_cpu_s": round(mb / full["cpu_seconds"], 2),
                "gb_per_core_hour": round(mb / full["cpu_seconds"] * 3.6, 2),
                "peak_rss_mb": round(full["peak_rss_mb"]),
                "rss_with_corpus_loaded_mb": round(child["rss_loaded_mb"]),
                **quality(full["keeper_of"], positives, planted, texts),
            }
            if "stage_seconds" in full:
                row["stage_seconds"] = {k: round(v, 2) for k, v in full["stage_seconds"].items()}
            result["full"][tool] = row
            if "keeper_of" in refresh:
                refresh.update(refresh_quality(refresh.pop("keeper_of"), fresh_ids, planted, texts))
            if "refresh_s" in refresh:
                refresh["full_s"] = row["seconds"]
                refresh["refresh_vs_full"] = round(refresh["refresh_s"] / row["seconds"], 4)
                if "refresh_cpu_s" in refresh:  # CPU seconds: the steadier figure on a shared machine
                    refresh["refresh_vs_full_cpu"] = round(refresh["refresh_cpu_s"] / row["cpu_seconds"], 4)
                    refresh["refresh_vs_full_cpu_max"] = round(refresh["refresh_cpu_max_s"] / row["cpu_seconds"], 4)
            result["refresh"][tool] = refresh
    full = result["full"]
    result["mixtrain_speedup_cpu"] = {
        tool: round(full[tool]["cpu_seconds"] / full["mixtrain"]["cpu_seconds"], 2)
        for tool in tools
        if tool != "mixtrain" and "mixtrain" in full
    }
    result["labelled"] = (
        [] if args.no_labelled else labelled_quality(args.labelled_pairs, args.labelled_singles, args.seed)
    )

    print(markdown(result))
    write_report(args.out, f"bench_dedupe_datatrove_{docs.num_rows}", result)
    return result


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"Corpus: {r['docs']} docs, {r['text_mb']} MB (mean {r['mean_doc_bytes']} B/doc), threshold {r['threshold']}, "
        f"word {r['ngram']}-grams; planted {r['planted']}, should drop {r['should_drop']}. "
        f"{r['cpus']} CPUs, load average at start {r['load_average_at_start']}.",
        "",
        "| tool | wall s | CPU s | docs/s/core | MB/s/core (wall) | MB/s/core (CPU) | GB/core-hour | peak RSS MB "
        "| RSS corpus loaded MB | planted precision | planted recall | dropped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tool, s in r["full"].items():
        lines.append(
            f"| {tool} | {s['seconds']} | {s['cpu_seconds']} | {s['docs_per_s']} | {s['mb_per_s']} | "
            f"{s['mb_per_cpu_s']} | {s['gb_per_core_hour']} | {s['peak_rss_mb']} | {s['rss_with_corpus_loaded_mb']} | "
            f"{s['precision']:.4f} | {s['recall']:.4f} | {s['dropped']} |"
        )
    lines.append("")
    for tool, ratio in r["mixtrain_speedup_cpu"].items():
        stages = ", ".join(f"{k} {v}" for k, v in r["full"][tool]["stage_seconds"].items())
        lines.append(f"mixtrain speed / {tool} speed (CPU seconds): {ratio}x; {tool} stages (wall s): {stages}")
    lines += ["", f"Incremental: add a source of {r['fresh_docs']} docs to an index of the rest.", ""]
    lines += [
        "| tool | full build s | index build s | refresh s | refresh / full | dropped | should drop | recall "
        "| precision |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tool, s in r["refresh"].items():
        lines.append(
            f"| {tool} | {s['full_s']} | {s['index_s']} | {s['refresh_s']} | {s['refresh_vs_full']} | "
            f"{s['dropped']} | {s['should_drop']} | {s['recall']:.4f} | {s['precision']:.4f} |"
        )
    if "mixtrain" in r["refresh"]:
        m = r["refresh"]["mixtrain"]
        runs = m["refresh_cpu_runs"]
        lines.append(
            f"\nmixtrain refresh: sketched {m['sketched']}, reused {m['sketches_reused']} sketches and "
            f"{m['pairs_reused']} verified pairs, verified {m['pairs_verified']} new pairs, incremental query "
            f"{m['incremental']}, same drops as a full build: {m['matches_full_build']}. Run in its own process "
            f"({len(runs)}x: {', '.join(str(c) for c in runs)} CPU s), the refresh took a median {m['refresh_cpu_s']} "
            f"CPU s against {r['full']['mixtrain']['cpu_seconds']} for the full build: {m['refresh_vs_full_cpu']:.1%} "
            f"of it, at most {m['refresh_vs_full_cpu_max']:.1%} (wall: {m['refresh_vs_full']:.1%}). Building the "
            f"kept rows as one table, which the asset does not (it writes them batch by batch), would add "
            f"{m['kept_table_cpu_s']} CPU s."
        )
    for tool in (t for t in TOOLS[1:] if t in r["refresh"]):
        stages = r["refresh"][tool]["refresh_stage_seconds"]
        lines.append(f"{tool} refresh stages (wall s): " + ", ".join(f"{k} {v}" for k, v in stages.items()))
    lines += ["", "Labelled real-text set (precision over drops; recall over pairs >= threshold + 0.05):", ""]
    lines += [
        "| tool | config | threshold | precision | recall | dropped | clear pairs | pairs < t merged "
        "| precision prose / code | recall prose / code |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for q in r["labelled"]:
        pr, co = q["reference"], q["code"]
        lines.append(
            f"| {q['tool']} | {q['config']} | {q['threshold']} | {q['precision']:.4f} | {q['recall']:.4f} | "
            f"{q['dropped']} | {q['positives']} | {q['negatives_merged']}/{q['negatives']} | "
            f"{pr['precision']:.3f} / {co['precision']:.3f} | {pr['recall']:.3f} / {co['recall']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
