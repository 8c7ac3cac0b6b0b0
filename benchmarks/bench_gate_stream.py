"""Memory and throughput of the streaming gate (``gate_stream``) against the whole-table ``gate()``.

Run: ``python benchmarks/bench_gate_stream.py [--docs 20000 100000] [--batch-size 5000] [--whole]``

For each size, a child process writes a one-source corpus to Parquet in batches (so generation stays
bounded too): documents of ~2 KB, random words from the Zipf vocabulary of ``bench_gate_dedupe``, 60% of
them framed by a header and a footer line that the boilerplate rule must strip, and 3% exact in-source
copies (re-cased, re-spaced) of a random earlier document, usually one in an earlier batch, which the exact
duplicate rule must reject. Another fresh child then gates the file with ``gate_stream`` reading it through
``parquet_batches`` (the reader meant for the ``gated_documents`` asset) and writing with ``ParquetGateSink``;
with ``--whole`` a third reads the whole file and runs ``gate()`` on it. Every measurement is its own
process, so peak RSS (VmHWM on Linux, else ``ru_maxrss``) does not mix; the parent only starts children and
stays small, because ``ru_maxrss`` after fork+exec starts from the parent's peak. Rates per core divide by
the child's CPU time (user + system), not by wall time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_info, peak_rss_mb, spawn, timed, write_report  # noqa: E402

SOURCE = "web"
HEADER = "Acme Daily News  -  independent reporting since 1921  -  all rights reserved"
FOOTER = "Subscribe to our newsletter for more stories like this one"
FRAMED_SHARE = 0.6
COPY_SHARE = 0.03
RESERVOIR = 2_000  # earlier documents a copy may be drawn from, so generation memory stays bounded
GEN_BATCH = 4_000  # not a multiple of the gating batch size: copies and originals land in different batches


def generate(n: int, seed: int, path: Path) -> dict[str, Any]:
    """Write the corpus in batches of GEN_BATCH rows; returns its size and what was planted."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.bench_gate_dedupe import draw_words, make_vocab, render
    from benchmarks.labelled_neardup import T0
    from mixassets.engine.readers import doc_id_for
    from mixtrain.schema import DOCUMENT_SCHEMA

    rng = np.random.default_rng(seed)
    vocab, cdf = make_vocab(rng)
    reservoir: list[str] = []
    text_bytes = framed = copies = 0
    with pq.ParquetWriter(path, DOCUMENT_SCHEMA) as writer:
        for start in range(0, n, GEN_BATCH):
            rows: list[dict[str, Any]] = []
            for i in range(start, min(n, start + GEN_BATCH)):
                if reservoir and rng.random() < COPY_SHARE:
                    original = reservoir[int(rng.integers(len(reservoir)))]
                    # Re-cased and re-spaced but for the banner lines, which must stay as they are to be stripped.
                    lines = original.split("\n")
                    text = "\n".join(ln if ln in (HEADER, FOOTER) else "  ".join(ln.upper().split(" ")) for ln in lines)
                    copies += 1
                else:
                    text = render(draw_words(rng, vocab, cdf), rng)
                    if rng.random() < FRAMED_SHARE:
                        text = f"{HEADER}\n{text}\n{FOOTER}\n"
                        framed += 1
                    if len(reservoir) < RESERVOIR:
                        reservoir.append(text)
                    else:
                        reservoir[int(rng.integers(RESERVOIR))] = text
                text_bytes += len(text.encode())
                locator = f"{SOURCE}.jsonl:{i + 1}"
                rows.append({"doc_id": doc_id_for(SOURCE, locator), "source_id": SOURCE, "locator": locator,
                             "kind": "text", "text": text, "license": "CC-BY-4.0", "rights_tags": [],
                             "domain": "general", "language": "en", "capture_time": T0})  # fmt: skip
            writer.write_table(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA))
    return {"docs": n, "text_mb": text_bytes / 1e6, "framed": framed, "copies": copies, "peak_rss_mb": peak_rss_mb()}


def run_stream(corpus: Path, out_dir: Path, batch_size: int) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from benchmarks.bench_gate_dedupe import bench_source_spec
    from mixassets.engine.gating_stream import ParquetGateSink, gate_stream, parquet_batches

    spec = bench_source_spec(SOURCE)
    names = ("accepted", "quarantine", "decisions")

    def run() -> dict[str, Any]:
        with ParquetGateSink(*(out_dir / f"{n}.parquet" for n in names)) as sink:
            return gate_stream(parquet_batches(str(corpus), batch_size), spec, sink=sink)

    counts, t = timed(run)
    return {
        "seconds": t.seconds,
        "cpu_seconds": t.cpu_seconds,
        "peak_rss_mb": t.peak_rss_mb,
        "counts": counts,
        "written_rows": {n: pq.ParquetFile(out_dir / f"{n}.parquet").metadata.num_rows for n in names},
    }


def run_whole(corpus: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from benchmarks.bench_gate_dedupe import bench_source_spec
    from mixassets.engine.gating import gate

    spec = bench_source_spec(SOURCE)
    result, t = timed(lambda: gate(pq.read_table(corpus), spec))
    return {"seconds": t.seconds, "cpu_seconds": t.cpu_seconds, "peak_rss_mb": t.peak_rss_mb, "counts": result.counts}


def child(mode: str, args: argparse.Namespace) -> None:
    if mode == "generate":
        result = generate(args.n, args.seed, args.corpus)
    elif mode == "stream":
        result = run_stream(args.corpus, args.work, args.batch_size)
    else:
        result = run_whole(args.corpus)
    args.child_out.write_text(json.dumps(result))


def summarize(run: dict[str, Any], corpus: dict[str, Any]) -> dict[str, Any]:
    c = run["counts"]
    held = {k.removeprefix("rule."): v for k, v in c.items() if k.startswith("rule.") and "dedupe" in k}
    timings = sorted(
        ((k.removeprefix("time_s."), v) for k, v in c.items() if k.startswith("time_s.")), key=lambda kv: -kv[1]
    )
    return {
        "seconds": round(run["seconds"], 2),
        "cpu_seconds": round(run["cpu_seconds"], 2),
        "docs_per_s": round(corpus["docs"] / run["seconds"]),
        "docs_per_cpu_s": round(corpus["docs"] / run["cpu_seconds"]),
        "mb_per_s_per_core": round(corpus["text_mb"] / run["cpu_seconds"], 3),
        "peak_rss_mb": round(run["peak_rss_mb"], 1),
        "accepted": c["accepted"],
        "rejected": c["rejected"],
        "quarantined": c["quarantined"],
        "stripped_docs": c["stripped_docs"],
        "stripped_lines": c["stripped_lines"],
        **held,
        "top_rules_s": dict(timings[:4]),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, nargs="+", default=[20_000, 100_000])
    ap.add_argument("--batch-size", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--whole", action="store_true", help="also time the whole-table gate() on each corpus")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--child", choices=("generate", "stream", "whole"), help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args)
        return {}

    report: dict[str, Any] = {
        "batch_size": args.batch_size,
        **machine_info(),
        "date": dt.date.today().isoformat(),
        "sizes": {},
    }
    for n in args.docs:
        with tempfile.TemporaryDirectory() as tmp:
            corpus_path, work = Path(tmp) / "corpus.parquet", Path(tmp) / "gated"
            common = ["--corpus", str(corpus_path), "--batch-size", str(args.batch_size)]
            gen_args = ["--child", "generate", *common, "--n", str(n), "--seed", str(args.seed)]
            corpus = spawn(__file__, gen_args, Path(tmp) / "gen.json")
            row: dict[str, Any] = {
                "text_mb": round(corpus["text_mb"], 2),
                "corpus_file_mb": round(corpus_path.stat().st_size / 1e6, 2),
                "planted": {"framed": corpus["framed"], "copies": corpus["copies"]},
                "generate_peak_rss_mb": round(corpus["peak_rss_mb"], 1),
            }
            stream = spawn(__file__, ["--child", "stream", *common, "--work", str(work)], Path(tmp) / "stream.json")
            row["gate_stream"] = {**summarize(stream, corpus), "written_rows": stream["written_rows"]}
            if args.whole:
                whole = spawn(__file__, ["--child", "whole", *common], Path(tmp) / "whole.json")
                row["gate_whole_table"] = summarize(whole, corpus)
                same = {k: v for k, v in whole["counts"].items() if not k.startswith("time_s.")} == {
                    k: v for k, v in stream["counts"].items() if not k.startswith("time_s.")
                }
                row["counts_identical"] = same
            report["sizes"][str(n)] = row
            print(f"{n} docs: {json.dumps(row)}", flush=True)
    print_table(report)
    write_report(args.out, f"bench_gate_stream_{'_'.join(map(str, args.docs))}", report)
    return report


def print_table(report: dict[str, Any]) -> None:
    print(f"\nbatch size {report['batch_size']}; {report['cpus']} cores; per-core rates use CPU seconds")
    header = f"{'docs':>8}{'runner':>18}{'MB':>8}{'wall s':>9}{'docs/s':>8}{'MB/s/core':>11}{'peak RSS MB':>13}"
    print(header)
    print("-" * len(header))
    for n, row in report["sizes"].items():
        for runner in ("gate_stream", "gate_whole_table"):
            if runner in row:
                r = row[runner]
                print(f"{n:>8}{runner:>18}{row['text_mb']:>8.1f}{r['seconds']:>9.1f}{r['docs_per_s']:>8}"
                      f"{r['mb_per_s_per_core']:>11.3f}{r['peak_rss_mb']:>13.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
