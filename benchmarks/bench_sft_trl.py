"""mixtrain's LoRA SFT against TRL's ``SFTTrainer``: tokens per second, CPU time and memory, with and without packing.

Run: ``python benchmarks/bench_sft_trl.py [--model smollm2|tiny] [--steps 8]`` (needs ``pip install '.[bench]'``).

What is compared, and why this way:

* **Same data, nothing truncated.** The demo's ``signature_sft.jsonl`` conversations as mixture rows
  (``kind="chat"``, ``messages`` a JSON string, ``text`` the joined contents). Records mixtrain's
  example preparation refuses (an unknown role, no assistant turn) and conversations longer than
  ``--max-seq-len`` are left out *before* either tool sees the data, and counted in the report: the two
  tools treat truncation differently (mixtrain drops an example whose answer was cut off, TRL trains on
  it with no label), so truncated examples would make the token counts mean different things. Every
  signature conversation is 260-390 SmolLM2 tokens, hence the default ``--max-seq-len 512``: at 256 every
  answer would be cut away.
* **Same loss.** Both train on the assistant replies only, end-of-turn token included and the newline
  after it excluded. mixtrain finds those tokens from the chat template itself; TRL needs
  ``assistant_only_loss=True`` and a template with ``{% generation %}`` markers, which SmolLM2's does not
  have and TRL has no patched copy of. So the TRL side gets :data:`TRAINING_TEMPLATE`, a ChatML template
  with the markers, and every conversation is first checked to render to the same text under it as under
  the tokenizer's own template: one that does not (SmolLM2's template adds a default system prompt that
  this one leaves out) is left out of the data and counted; inside TRL's run a difference is an error.
* **Same optimisation.** The same LoRA (r, alpha, dropout, target modules, no bias), AdamW (``adamw_torch``,
  betas, eps, no weight decay), learning rate, linear schedule with the same warm-up, gradient clipping at
  1.0, steps, batch size and max length, fp32 master weights under bf16 autocast (TRL through
  ``bf16=True``; ``--dtype fp32`` for both), no gradient checkpointing (TRL's default is on, so it is
  turned off). The data order differs (each tool's own sampler); the data does not.
* **Packing.** Both fill bins of up to ``max_seq_len`` tokens best-fit-decreasing and train on
  ``batch_size`` bins per step (TRL: ``packing=True`` with its default ``packing_strategy="bfd"``, which
  turns on ``padding_free``). Without packing a step is ``batch_size`` examples. The tools differ in how a
  step's examples meet the model, which is what the benchmark measures: mixtrain always puts them back to
  back in one row without padding and attends document by document (``packing.document_attention``); TRL
  flattens packed bins into one sequence too, but under SDPA transformers attends over the whole sequence
  with a block-diagonal mask, and without packing TRL right-pads each batch to its longest example.
* **Tokens.** Real (non-pad) tokens the model read, per step, counted the same way on both sides: the
  2-D attention mask's sum, or for padding-free batches the length of the flattened sequence (mixtrain's
  ``n_tokens``; TRL's, which holds no padding either). Label tokens are the labelled positions
  after the shift, as both losses count them. tokens/s is over the training loop (model load, tokenisation
  and saving are in the child's wall time but not in the loop); "steady" leaves out the first step, which
  pays for allocator and kernel warm-up on both sides.
* **Per core.** Each tool runs in a fresh child process with the same ``torch.set_num_threads``. Wall and
  CPU seconds are the child's; peak RSS is its VmHWM. On a GPU the rows also give MFU: 6 x parameters x
  tokens/s over the card's dense bf16 peak (:data:`benchmarks.mfu.PEAK_BF16_FLOPS`). LoRA skips the frozen weights'
  gradients, so the FLOPs really spent are nearer 4 x parameters per token: MFU by the usual 6N
  convention overstates what the card did, equally for both tools.
* **Shared machines.** ``--repeats N`` runs each tool N times, the tools taking turns, and reports each
  tool's fastest run (the least disturbed one) with the others' rates beside it. "median step" is the rate
  of the median step after the first, which a few steps slowed by another process do not move.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_info, spawn, timed, write_report  # noqa: E402
from benchmarks.mfu import accelerator, mfu, n_params  # noqa: E402
from benchmarks.sft_data import (  # noqa: E402
    DEMO_DATA,
    TRAINING_TEMPLATE,
    check_template,
    load_rows,
    read_jsonl,
    select_records,
    write_jsonl,
)

DEMO_STORAGE = ROOT / "examples" / "demo" / "storage"
SMOLLM2 = "smollm2-135m-instruct"
TOOLS = ("mixtrain", "trl")


@dataclass(frozen=True)
class BenchSettings:
    """Everything both tools are configured from, so one object makes both runs comparable."""

    steps: int = 8
    batch_size: int = 4
    max_seq_len: int = 512
    lr: float = 2e-4
    warmup_steps: int = 2
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    dtype: str = "bf16"
    packing: bool = False
    seed: int = 0
    threads: int = 2

    def recipe(self) -> dict[str, Any]:
        """The mixtrain ``TrainingRecipe`` fields for these settings."""
        return {
            "lora": {
                "r": self.lora_r,
                "alpha": self.lora_alpha,
                "dropout": self.lora_dropout,
                "target_modules": list(self.target_modules),
            },
            "steps": self.steps,
            "batch_size": self.batch_size,
            "grad_accum": 1,
            "lr": self.lr,
            "warmup_steps": self.warmup_steps,
            "max_seq_len": self.max_seq_len,
            "seed": self.seed,
            "dtype": self.dtype,
            "packing": self.packing,
            "lr_schedule": "linear",
            "weight_decay": 0.0,
            "max_grad_norm": 1.0,
        }


# ----------------------------------------------------------------------------------------------- tools


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set: a second run in one process, as in the tests
        torch.set_num_interop_threads(1)


def _rates(tokens: list[int], ends: list[float], start: float, cpu_ends: list[float]) -> dict[str, Any]:
    """Throughput from per-step token counts and the loop clock at each step's end (``start``: loop start).
    ``cpu_ends``: the process's CPU clock at each step's end, for tokens per CPU second after the first step,
    the figure a busy shared machine disturbs least."""
    total = ends[-1] - start if ends else 0.0
    steady = ends[-1] - ends[0] if len(ends) > 1 else 0.0
    steady_cpu = cpu_ends[-1] - cpu_ends[0] if len(cpu_ends) > 1 else 0.0
    step_s = [b - a for a, b in zip([start, *ends[:-1]], ends, strict=True)]
    # The median step's rate (first step left out) shrugs off a few steps slowed by another process.
    per_step = sorted(n / t for n, t in zip(tokens[1:], step_s[1:], strict=True) if t > 0)
    return {
        "loop_s": total,
        "tokens_per_s": sum(tokens) / total if total > 0 else None,
        "steady_tokens_per_s": sum(tokens[1:]) / steady if steady > 0 else None,
        "steady_tokens_per_cpu_s": sum(tokens[1:]) / steady_cpu if steady_cpu > 0 else None,
        "median_step_tokens_per_s": statistics.median(per_step) if per_step else None,
        "step_s": step_s,
    }


def run_mixtrain(base_dir: str, records: list[dict[str, Any]], s: BenchSettings) -> dict[str, Any]:
    """mixtrain's ``train_lora`` on ``records``; per-step tokens and timings from its ``on_step`` reports."""
    from training_assets.engine.config import SFTConfig
    from training_assets.engine.sft import train_lora

    _set_threads(s.threads)
    steps: list[dict[str, Any]] = []
    cpu_ends: list[float] = []

    def on_step(info: dict[str, Any]) -> None:
        cpu_ends.append(time.process_time())
        steps.append(info)

    with tempfile.TemporaryDirectory() as tmp:
        manifest = train_lora(
            base_dir,
            records,
            SFTConfig.from_recipe(s.recipe()),
            str(Path(tmp) / "adapter"),
            data_manifest_id="bench",
            base_weights_sha256="not-hashed-in-benchmark",  # TRL hashes nothing either
            on_step=on_step,
        )
    tokens = [int(x["tokens"]) for x in steps]
    return {
        "tokens": tokens,
        "label_tokens": [int(x["label_tokens"]) for x in steps],
        "loss": [float(x["loss"]) for x in steps],
        "manifest_tokens_per_s": manifest.get("tokens_per_s"),
        "n_params": n_params(base_dir),
        **_rates(tokens, [float(x["elapsed_s"]) for x in steps], 0.0, cpu_ends),
    }


def run_trl(base_dir: str, records: list[dict[str, Any]], s: BenchSettings) -> dict[str, Any]:
    """TRL's ``SFTTrainer`` with the settings of :class:`BenchSettings` (see the module docstring for the mapping)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    _set_threads(s.threads)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    conversations = [json.loads(r["messages"]) for r in records]
    check_template(tokenizer, conversations, [str(r.get("doc_id")) for r in records])
    tokenizer.chat_template = TRAINING_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    peft_config = LoraConfig(
        r=s.lora_r,
        lora_alpha=s.lora_alpha,
        lora_dropout=s.lora_dropout,
        target_modules=list(s.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    counts: list[tuple[int, int]] = []  # (tokens, label tokens) per micro-batch

    class CountingSFTTrainer(SFTTrainer):  # type: ignore[misc]
        """Counts what each batch holds, the way mixtrain's loop counts it, before TRL computes the loss."""

        def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            mask = inputs.get("attention_mask")
            # Padding-free batches have no mask: one flattened sequence that holds no padding.
            n = int(mask.sum()) if mask is not None and mask.dim() == 2 else int(inputs["input_ids"].numel())
            counts.append((n, int((inputs["labels"][:, 1:] != -100).sum())))
            return super().compute_loss(model, inputs, *args, **kwargs)

    ends: list[float] = []
    cpu_ends: list[float] = []
    losses: list[float] = []
    trl_num_tokens: list[int] = []
    start: list[float] = []

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            start.append(time.perf_counter())

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            ends.append(time.perf_counter())
            cpu_ends.append(time.process_time())

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
            if logs and "num_tokens" in logs:  # TRL's own running count, cumulative
                trl_num_tokens.append(int(logs["num_tokens"]))

    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(
            output_dir=tmp,
            max_steps=s.steps,
            per_device_train_batch_size=s.batch_size,
            gradient_accumulation_steps=1,
            learning_rate=s.lr,
            warmup_steps=s.warmup_steps,
            lr_scheduler_type="linear",
            optim="adamw_torch",
            adam_beta1=0.9,
            adam_beta2=0.999,
            adam_epsilon=1e-8,
            weight_decay=0.0,
            max_grad_norm=1.0,
            bf16=s.dtype == "bf16",
            fp16=False,
            gradient_checkpointing=False,
            max_length=s.max_seq_len,
            packing=s.packing,
            packing_strategy="bfd",
            assistant_only_loss=True,
            seed=s.seed,
            data_seed=s.seed,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = CountingSFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list([{"messages": m} for m in conversations]),
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[Clock()],
        )
        trainer.train()
    if len(counts) != s.steps:
        raise RuntimeError(f"TRL ran {len(counts)} micro-batches for {s.steps} steps (expected one per step)")
    tokens = [c[0] for c in counts]
    return {
        "tokens": tokens,
        "label_tokens": [c[1] for c in counts],
        "loss": losses,
        "trl_num_tokens": trl_num_tokens[-1] if trl_num_tokens else None,
        "n_params": n_params,
        **_rates(tokens, ends, start[0], cpu_ends),
    }


RUNNERS = {"mixtrain": run_mixtrain, "trl": run_trl}


def run_child(tool: str, base_dir: str, data: Path, settings: dict[str, Any], out: Path) -> None:
    s = BenchSettings(**{**settings, "target_modules": tuple(settings["target_modules"])})
    records = read_jsonl(data)
    result, t = timed(lambda: RUNNERS[tool](base_dir, records, s))
    out.write_text(json.dumps({**result, **asdict(t)}))


# ------------------------------------------------------------------------------------------------ parent


def prepare_base(model: str, workdir: Path) -> str:
    """The base model directory: the tiny Llama (built in ``workdir``), or SmolLM2 as the demo published it
    (its live ``base_model`` version, files checked), published there (~20 s) when ``make demo`` has not run yet."""
    if model == "tiny":
        from training_assets.engine.tiny import make_tiny_model

        return make_tiny_model(str(workdir / "tiny"))["path"]
    from mixtrain.model_store import current_version, fetch_model, publish_model

    cache = ROOT / "examples" / "demo" / ".mixtrain-cache"
    if current_version(str(DEMO_STORAGE), "base_model") is None:
        from training_assets.engine.base_model import materialize_base_model

        print(f"building {SMOLLM2} in {DEMO_STORAGE} ...", flush=True)
        build = DEMO_STORAGE / "base_model" / ".build"
        info = materialize_base_model(SMOLLM2, str(build))
        publish_model(build, str(DEMO_STORAGE), "base_model", cache, version=info["weights_sha256"][:16], move=True)
    return str(fetch_model(str(DEMO_STORAGE), "base_model", cache))


def best_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of a tool's repeated runs (by steady tokens/s), the others' rates kept beside it: on a
    shared machine the fastest run is the one least disturbed, the nearest to what the tool itself costs."""
    best = max(runs, key=lambda r: r["steady_tokens_per_s"] or 0.0)
    keys = ("tokens_per_s", "steady_tokens_per_s", "steady_tokens_per_cpu_s", "median_step_tokens_per_s")
    return {**best, "repeats": [{k: r[k] for k in (*keys, "seconds", "cpu_seconds", "peak_rss_mb")} for r in runs]}


def compare(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    return round(a[key] / b[key], 3) if a.get(key) and b.get(key) else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads per child")
    ap.add_argument("--packing", choices=["both", "off", "on"], default="both")
    ap.add_argument("--repeats", type=int, default=1, help="runs per tool and setting, in turns; the fastest counts")
    ap.add_argument(
        "--data",
        default=None,
        help="'demo' (signature_sft.jsonl; smollm2's default), 'synthetic' (varied lengths; tiny's default), "
        "'mixed' (the demo's conversations and --synthetic-records synthetic ones: a wide length spread) or a "
        "chat JSONL path ({'id', 'messages': [...]} per line)",
    )
    ap.add_argument("--limit", type=int, default=None, help="use only the first N records")
    ap.add_argument("--synthetic-records", type=int, default=400)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--child", choices=TOOLS, help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--settings", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        run_child(args.child, args.base, Path(args.data), json.loads(args.settings), args.child_out)
        return {}
    data_name = args.data or ("demo" if args.model == "smollm2" else "synthetic")
    try:
        trl_version = importlib.metadata.version("trl")
    except importlib.metadata.PackageNotFoundError as exc:
        raise SystemExit("trl is not installed: pip install '.[bench]'") from exc

    from transformers import AutoTokenizer

    packings = {"both": (False, True), "off": (False,), "on": (True,)}[args.packing]
    result: dict[str, Any] = {
        "model": args.model,
        "data_source": {"demo": str(DEMO_DATA), "mixed": f"{DEMO_DATA} + {args.synthetic_records} synthetic"}.get(
            data_name, data_name
        ),
        "trl_version": trl_version,
        "torch_version": importlib.metadata.version("torch"),
        "transformers_version": importlib.metadata.version("transformers"),
        "peft_version": importlib.metadata.version("peft"),
        **machine_info(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = prepare_base(args.model, tmp)
        rows = load_rows(data_name, args.synthetic_records)[: args.limit]
        selected = select_records(rows, AutoTokenizer.from_pretrained(base), args.max_seq_len)
        if len(selected.records) < args.batch_size:
            raise SystemExit(
                f"only {len(selected.records)} of {len(rows)} records are usable at max_seq_len={args.max_seq_len} "
                f"(skipped: {selected.summary()['skipped']}); raise --max-seq-len or use other --data"
            )
        result["data"] = selected.summary()
        result["accelerator"] = accelerator()
        data = tmp / "records.jsonl"
        write_jsonl(selected.records, data)
        for packing in packings:
            s = BenchSettings(
                steps=args.steps,
                batch_size=args.batch_size,
                max_seq_len=args.max_seq_len,
                dtype=args.dtype,
                packing=packing,
                threads=args.threads,
            )
            run: dict[str, Any] = {"settings": asdict(s), "tools": {}}
            children: dict[str, list[dict[str, Any]]] = {tool: [] for tool in TOOLS}
            for repeat in range(args.repeats):  # the tools take turns, so a busy spell hits both alike
                for tool in TOOLS:
                    child_args = ["--child", tool, "--base", base, "--data", str(data)]
                    child_args += ["--settings", json.dumps(asdict(s))]
                    print(f"{tool} packing={packing} run {repeat + 1}/{args.repeats} ...", flush=True)
                    children[tool].append(spawn(__file__, child_args, tmp / f"{tool}_{int(packing)}_{repeat}.json"))
            for tool, runs in children.items():
                child = best_run(runs)
                child["mfu"] = mfu(child["n_params"], child["steady_tokens_per_s"], result["accelerator"]["peak_flops"])
                run["tools"][tool] = child
            m, t = run["tools"]["mixtrain"], run["tools"]["trl"]
            for key in ("tokens_per_s", "steady_tokens_per_s", "steady_tokens_per_cpu_s", "median_step_tokens_per_s"):
                run[f"ratio_{key}"] = compare(m, t, key)
            result["runs"].append(run)
    print(markdown(result))
    name = data_name if data_name in ("demo", "synthetic", "mixed") else "custom"
    write_report(args.out, f"bench_sft_trl_{args.model}_{name}_{args.steps}steps", result)
    return result


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown(r: dict[str, Any]) -> str:
    d = r["data"]
    lines = [
        f"Model {r['model']}, data {r['data_source']}: {d['records']} conversations "
        f"({d['min_tokens']}-{d['max_tokens']} tokens, median {d['median_tokens']}; "
        f"skipped {d['skipped'] or 'none'}), TRL {r['trl_version']}, torch {r['torch_version']}, "
        f"device {r['accelerator']['device']}, {r['cpus']} CPUs, load average at start {r['load_average_at_start']}.",
        "",
        "| packing | tool | threads | steps | tokens | label tokens | loop s | tokens/s | steady tokens/s "
        "| median step tokens/s | steady tokens/CPU s | MFU "
        "| child wall s | child CPU s | peak RSS MB | loss first -> last | steady tokens/s of each run |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for run in r["runs"]:
        s = run["settings"]
        for tool, x in run["tools"].items():
            loss = f"{x['loss'][0]:.3f} -> {x['loss'][-1]:.3f}" if x["loss"] else "n/a"
            mfu_text = "n/a" if x["mfu"] is None else f"{x['mfu']:.1%}"
            lines.append(
                f"| {'on' if s['packing'] else 'off'} | {tool} | {s['threads']} | {s['steps']} | {sum(x['tokens'])} | "
                f"{sum(x['label_tokens'])} | {_fmt(x['loop_s'])} | {_fmt(x['tokens_per_s'])} | "
                f"{_fmt(x['steady_tokens_per_s'])} | {_fmt(x.get('median_step_tokens_per_s'))} | "
                f"{_fmt(x['steady_tokens_per_cpu_s'])} | {mfu_text} | "
                f"{_fmt(x['seconds'])} | {_fmt(x['cpu_seconds'])} | "
                f"{x['peak_rss_mb']:.0f} | {loss} | "
                f"{', '.join(_fmt(y['steady_tokens_per_s']) for y in x.get('repeats', [x]))} |"
            )
    lines.append("")
    for run in r["runs"]:
        lines.append(
            f"packing {'on' if run['settings']['packing'] else 'off'}: mixtrain / TRL tokens/s = "
            f"{run['ratio_tokens_per_s']}x (steady: {run['ratio_steady_tokens_per_s']}x; median step: "
            f"{run.get('ratio_median_step_tokens_per_s')}x; steady per CPU second: "
            f"{run['ratio_steady_tokens_per_cpu_s']}x)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
