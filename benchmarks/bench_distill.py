"""Distillation quality on the demo's task with a longer budget than the demo affords: does KD beat SFT-only?

The demo (examples/demo/mixtrain.yaml) trains its two students for a few steps, on 2 CPU cores, so its figures
say little about what distillation can do. This runs the same stages directly through the engine, with the
demo's recipes and data unless overridden: the teacher is the base plus a LoRA adapter trained on
``signature_sft`` (the demo's ``training`` recipe), then one student is distilled from it and the same student
is trained SFT-only (``kd_ratio`` 0; same init, data, order and steps). Teacher and both students are scored on
``signature_holdout`` as the eval stage scores them (``evaluate_json_signature``: field accuracy, held-out loss).

Reported: each model's field accuracy and held-out loss, the students' retention of the teacher's field
accuracy (student / teacher; the torchtune KD recipe's anchor is 71-82 %), KD minus SFT-only held-out loss,
each student's KL to the teacher on the held-out answers, and wall times.

    .venv/bin/python benchmarks/bench_distill.py --model smollm2 --steps 60 [--drop-layers 6] [--workdir DIR]
    .venv/bin/python benchmarks/bench_distill.py --model tiny --steps 4 --teacher-steps 4   # a smoke run

A ``--workdir`` keeps the base and the teacher between runs (they are reused when present).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "demo"))

from benchmarks._harness import machine_info, write_report  # noqa: E402

DEMO_YAML = ROOT / "examples" / "demo" / "mixtrain.yaml"
CHAT_ROLES = {"system", "user", "assistant"}


def demo_data(scale: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(training chat records, held-out eval items) as ``examples/demo/generate.py`` makes them; the two
    conversations the demo plants for the quarantine (no answer, an unknown role) are left out, as the gate would."""
    import generate  # examples/demo/generate.py

    sft, holdout = generate.task_records(generate.SCALES[scale])
    records = []
    for row in sft:
        roles = [m["role"] for m in row["messages"]]
        if set(roles) <= CHAT_ROLES and roles[-1] == "assistant":
            text = "\n\n".join(m["content"] for m in row["messages"])
            records.append({"doc_id": row["id"], "kind": "chat", "messages": json.dumps(row["messages"]), "text": text})
    return records, holdout


def holdout_chat_records(holdout: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Held-out items as chat records with the reference answer, for the engine's teacher-student divergence."""
    from eval_assets.tasks import json_signature

    out = []
    for it in holdout:
        messages = [*it["messages"], {"role": "assistant", "content": json_signature.format_answer(it["reference"])}]
        out.append({"doc_id": it["id"], "kind": "chat", "messages": json.dumps(messages), "text": ""})
    return out


def score(model_dir: str, adapter_dir: str | None, holdout: list[dict[str, Any]], label: str) -> dict[str, float]:
    """Field accuracy, held-out loss and the other structured-output rates, as the eval stage computes them."""
    import pyarrow as pa

    from eval_assets.engine.evaluate import evaluate_json_signature
    from training_assets.engine.loading import load_for_inference

    model, tokenizer = load_for_inference(model_dir, adapter_dir, dtype="fp32")
    items = pa.table(
        {
            "item_id": [it["id"] for it in holdout],
            "prompt": [json.dumps(it["messages"]) for it in holdout],
            "reference": [json.dumps(it["reference"]) for it in holdout],
        }
    )
    _, metrics = evaluate_json_signature(model, tokenizer, items, max_new_tokens=96, batch_size=8, model_label=label)
    return {k: metrics[k] for k in ("field_accuracy", "schema_valid_rate", "json_valid_rate", "heldout_loss")}


def build_teacher(args: argparse.Namespace, work: Path, records: list[dict[str, Any]]) -> tuple[str, str, float]:
    """(base dir, adapter dir, seconds spent): the base and the demo-recipe LoRA adapter, reused when present."""
    import torch
    import yaml

    from training_assets.engine.config import SFTConfig
    from training_assets.engine.sft import train_lora

    start = time.perf_counter()
    base = work / f"base-{args.model}"
    if not base.is_dir():
        if args.model == "tiny":
            from transformers import AutoConfig, LlamaForCausalLM

            from training_assets.engine.tiny import make_tiny_model

            # The tiny tokenizer spells the demo's prompts in ~4x SmolLM2's tokens: give it the positions.
            make_tiny_model(str(base))
            config = AutoConfig.from_pretrained(base)
            config.num_hidden_layers, config.max_position_embeddings = 8, 4096
            torch.manual_seed(0)
            LlamaForCausalLM(config).save_pretrained(base)
        else:
            from training_assets.engine.base_model import materialize_base_model

            materialize_base_model("smollm2-135m-instruct", str(base))
    recipe = yaml.safe_load(DEMO_YAML.read_text())["training"]
    recipe.update(dtype=args.dtype, **({"steps": args.teacher_steps} if args.teacher_steps else {}))
    recipe.update({"max_seq_len": args.max_seq_len} if args.max_seq_len else {})
    adapter = work / f"teacher-{args.model}-{recipe['steps']}-{args.dtype}"
    if not adapter.is_dir():
        train_lora(str(base), records, SFTConfig.from_recipe(recipe), str(adapter), data_manifest_id="bench")
    return str(base), str(adapter), time.perf_counter() - start


def student_spec(args: argparse.Namespace, demo: dict[str, Any]) -> dict[str, Any]:
    if args.drop_layers:
        return {"init": "layer_subset", "drop_layers": args.drop_layers}
    if args.keep_every:
        return {"init": "layer_subset", "keep_every": args.keep_every}
    return demo["student"]


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch
    import yaml

    from training_assets.engine.config import DistillConfig
    from training_assets.engine.distill import distill_student

    torch.set_num_threads(args.threads)
    records, holdout = demo_data(args.scale)
    holdout = holdout[: args.eval_items]
    base, adapter, teacher_s = build_teacher(args, work, records)
    demo = yaml.safe_load(DEMO_YAML.read_text())["distillation"]
    recipe = {**demo["recipe"], "dtype": args.dtype, **({"steps": args.steps} if args.steps else {})}
    recipe.update({"max_seq_len": args.max_seq_len} if args.max_seq_len else {})
    config = DistillConfig.from_recipe(recipe, student=student_spec(args, demo), mode=demo.get("mode", "logit"))
    eval_records = holdout_chat_records(holdout)
    students: dict[str, Any] = {}
    for name, cfg in (("kd", config), ("sft_only", config.sft_baseline())):
        start = time.perf_counter()
        out = work / f"student-{name}"
        manifest = distill_student(
            base, adapter, records, cfg, str(out), data_manifest_id="bench", eval_records=eval_records
        )
        students[name] = {
            "train_s": round(time.perf_counter() - start, 1),
            "kl_to_teacher": manifest["evaluation"]["after"]["kd"],
            "kl_to_teacher_before": manifest["evaluation"]["before"]["kd"],
            "student": {k: v for k, v in manifest["distillation"]["student"].items() if k != "n_params"},
            "n_params": manifest["distillation"]["student"]["n_params"],
            **score(str(out), None, holdout, name),
        }
    teacher = score(base, adapter, holdout, "teacher")
    for s in students.values():
        s["field_accuracy_retention"] = (
            s["field_accuracy"] / teacher["field_accuracy"] if teacher["field_accuracy"] else None
        )
    return {
        "model": args.model,
        "recipe": config.learnt(),
        "train_records": len(records),
        "eval_items": len(holdout),
        "teacher": {**teacher, "build_s": round(teacher_s, 1)},
        "students": students,
        "kd_minus_sft_heldout_loss": students["kd"]["heldout_loss"] - students["sft_only"]["heldout_loss"],
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("smollm2", "tiny"), default="smollm2")
    parser.add_argument("--steps", type=int, default=60, help="student steps (0: the demo's)")
    parser.add_argument("--teacher-steps", type=int, default=0, help="teacher LoRA steps (0: the demo's)")
    parser.add_argument("--drop-layers", type=int, default=0, help="student: drop this many least influential layers")
    parser.add_argument("--keep-every", type=int, default=0, help="student: keep every k-th layer instead")
    parser.add_argument("--scale", choices=("full", "small"), default="full", help="demo data scale")
    parser.add_argument("--max-seq-len", type=int, default=0, help="0: the demo's (the tiny model needs ~2048)")
    parser.add_argument("--eval-items", type=int, default=63)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="fp32 is faster on CPUs without bf16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="keep models here (default: a temporary directory)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(args, work)
    print(json.dumps(result, indent=2))
    write_report(args.out, f"distill-{args.model}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
