"""Training throughput: the same LoRA job on 1 process and on N data-parallel processes (torchrun).

Run: ``python benchmarks/bench_train.py [--model tiny|smollm2] [--steps 6] [--procs 1,2] [--trl]``.

What is compared, and why this way:

* **One job, several world sizes.** Every run trains the same ``TrainJob`` (same model, data, recipe, global
  batch ``batch_size x grad_accum``) through the engine's ``run_job``; only the number of processes differs.
  One process runs as a plain child, N processes under ``python -m torch.distributed.run --standalone``
  (gloo on CPU, NCCL on GPUs), exactly as the ``torchrun`` launcher starts them. The per-step losses of every
  world size are compared with the one-process run's (max absolute difference printed): a speed-up that
  changed what is learnt would not count.
* **Same cores.** On CPU the machine's cores are split between the processes (``threads`` per process =
  cores / N), so "2 processes" means the same hardware used another way, not more hardware. On GPUs each
  process gets its own card.
* **Tokens and time.** Tokens are the real (non-pad) tokens of each global step, summed over ranks; step times
  come from rank 0's per-step clock. "steady" leaves out the first step (allocator and kernel warm-up);
  "median step" is the median step time after the first.
* **TRL.** With ``--trl`` (default on when a GPU is present) ``bench_sft_trl.py`` runs too: mixtrain against
  TRL's ``SFTTrainer`` on the same model, data and device, one process each (needs ``pip install '.[bench]'``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._harness import LOG_TAIL_CHARS, machine_info, write_report
from benchmarks.bench_sft_trl import prepare_base
from benchmarks.mfu import accelerator
from benchmarks.sft_data import load_rows, select_records

ROOT = Path(__file__).resolve().parent.parent


def worker(job_path: Path, out: Path) -> None:
    """One rank of a run: train the job; rank 0 writes its per-step clock and the manifest's figures."""
    from training_assets.engine.jobs import run_job

    steps: list[dict[str, Any]] = []
    start = time.perf_counter()
    manifest = run_job(
        json.loads(job_path.read_text()),
        on_step=lambda s: steps.append({"tokens": s["tokens"], "t": time.perf_counter() - start}),
    )
    if int(os.environ.get("RANK", "0")) == 0:
        keep = ("loss", "tokens", "label_tokens", "wall_time_s", "tokens_per_s", "execution", "trainable_params")
        out.write_text(json.dumps({"steps": steps, **{k: manifest.get(k) for k in keep}}))


def _rates(steps: list[dict[str, Any]]) -> dict[str, Any]:
    ends = [s["t"] for s in steps]
    durations = [b - a for a, b in itertools.pairwise(ends)]
    tokens = [s["tokens"] for s in steps]
    steady = sum(tokens[1:]) / (ends[-1] - ends[0]) if len(ends) > 1 else None
    return {
        "first_step_s": round(ends[0], 3),
        "median_step_s": round(statistics.median(durations), 3) if durations else None,
        "steady_tokens_per_s": round(steady, 1) if steady else None,
        "tokens_per_step": round(statistics.mean(tokens), 1),
    }


def run_world(nproc: int, job: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Train ``job`` on ``nproc`` processes in fresh interpreters; returns rank 0's figures."""
    job_path, out, log = tmp / f"job{nproc}.json", tmp / f"out{nproc}.json", tmp / f"run{nproc}.log"
    job = {**job, "out_dir": str(tmp / f"model{nproc}")}
    job_path.write_text(json.dumps(job))
    script = [str(Path(__file__).resolve()), "--worker", str(job_path), "--child-out", str(out)]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(job["config"]["threads"])}
    t0 = time.perf_counter()
    with log.open("w") as sink:
        proc = subprocess.run([sys.executable, *launcher, *script], stdout=sink, stderr=sink, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{nproc}-process run failed ({proc.returncode}):\n{log.read_text()[-LOG_TAIL_CHARS:]}")
    result = json.loads(out.read_text())
    return {"processes": nproc, "seconds": round(time.perf_counter() - t0, 2), **_rates(result["steps"]), **result}


def _job(base: str, mixture: Path, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    from training_assets.engine.config import SFTConfig

    recipe = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "max_seq_len": args.max_seq_len,
        "dtype": args.dtype,
        "lr": 2e-4,
        "warmup_steps": 1,
        "packing": True,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
    }
    config = SFTConfig.from_recipe(recipe, threads=threads)
    return {"config": config.model_dump(mode="json"), "base_dir": base, "mixture_path": str(mixture),
            "out_dir": "", "data_manifest_id": "bench_train"}  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"model {result['model']} on {result['accelerator']['device']} ({result['cpus']} cpus), "
        f"global batch {result['global_batch']} sequences, {result['steps']} steps",
        "",
        "| processes | threads each | tokens/step | steady tokens/s | median step s | speed-up | max |Δ loss| vs 1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['processes']} | {r['threads']} | {r['tokens_per_step']} | {r['steady_tokens_per_s']} | "
            f"{r['median_step_s']} | {r.get('speedup_vs_1', '')} | {r.get('max_loss_diff_vs_1', '')} |"
        )
    if result.get("trl"):
        lines.append("")
        lines.append(f"mixtrain vs TRL SFTTrainer (one process): {json.dumps(result['trl'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["smollm2", "tiny"], default="tiny")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=2, help="packed rows per micro-batch")
    ap.add_argument("--grad-accum", type=int, default=2, help="micro-batches per step (a multiple of every N)")
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--procs", default=None, help="comma-separated process counts (default: 1 and 2, or the GPUs)")
    ap.add_argument("--data", default=None, help="'demo', 'synthetic' or 'mixed' (see bench_sft_trl.py)")
    ap.add_argument("--trl", action=argparse.BooleanOptionalAction, default=None, help="also run bench_sft_trl")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.child_out)
        return {}

    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoTokenizer

    gpus = torch.cuda.device_count()
    procs = (
        [int(p) for p in args.procs.split(",")] if args.procs else ([1, gpus] if gpus > 1 else [1] if gpus else [1, 2])
    )
    cpus = os.cpu_count() or 1
    acc = accelerator()
    result: dict[str, Any] = {
        "model": args.model,
        "steps": args.steps,
        "accelerator": acc,
        **machine_info(),
        "runs": [],
    }
    result["global_batch"] = args.batch_size * args.grad_accum
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = prepare_base(args.model, tmp)
        data_name = args.data or ("demo" if args.model == "smollm2" else "synthetic")
        selected = select_records(load_rows(data_name, 400), AutoTokenizer.from_pretrained(base), args.max_seq_len)
        mixture = tmp / "mixture.parquet"
        pq.write_table(pa.Table.from_pylist(selected.records), mixture)
        result["data"] = {k: v for k, v in selected.summary().items() if k != "skipped_ids"}
        for n in procs:
            threads = max(1, cpus // n)
            print(f"{n} process(es), {threads} thread(s) each ...", flush=True)
            run = run_world(n, _job(base, mixture, args, threads), tmp)
            result["runs"].append({**run, "threads": threads})
    one = next((r for r in result["runs"] if r["processes"] == 1), None)
    for r in result["runs"]:
        if one is not None and r is not one:
            if one["steady_tokens_per_s"] and r["steady_tokens_per_s"]:
                r["speedup_vs_1"] = round(r["steady_tokens_per_s"] / one["steady_tokens_per_s"], 3)
            r["max_loss_diff_vs_1"] = max(abs(a - b) for a, b in zip(r["loss"], one["loss"], strict=True))
    if args.trl if args.trl is not None else bool(gpus):
        from benchmarks.bench_sft_trl import main as bench_trl

        trl = bench_trl(["--model", args.model, "--steps", str(max(args.steps, 4)), "--packing", "on"])
        result["trl"] = {k: v for k, v in trl["runs"][0].items() if k.startswith("ratio_")}
    print(markdown(result))
    write_report(args.out, f"bench_train_{args.model}_{acc['device'].replace(' ', '_')}", result)
    return result


if __name__ == "__main__":
    main()
