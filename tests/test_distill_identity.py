"""The KD path checked against its fixed point: a student equal to the teacher has nothing to learn from it.

If the teacher signal and the student's logits are aligned (same positions, same label shift, same temperature,
the teacher's adapter applied, the teacher in eval mode and float32 on both the live and the stored path), a
student that keeps every teacher layer starts at KD 0 and, trained on KD alone, stays there. Any misalignment
shows up as a KD of the order of a pruned student's, which is what these tests compare against.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from tests.test_distill import RECORDS, distill, recipe  # noqa: E402
from training_assets.engine.examples import tokenize_records  # noqa: E402
from training_assets.engine.kd_losses import teacher_topk  # noqa: E402
from training_assets.engine.loop import autocast_context  # noqa: E402
from training_assets.engine.packing import pad_collate  # noqa: E402
from training_assets.engine.teacher_logits import teacher_signal  # noqa: E402

# The demo's optimiser settings (lr, warm-up), KD only, so the teacher is the student's only signal.
IDENTITY = {"steps": 6, "lr": 2e-4, "warmup_steps": 2, "kd_ratio": 1.0}
SIGNALS = {
    "fp32-full-logits": {"dtype": "fp32"},
    "bf16-top-k-live": {"dtype": "bf16", "top_k": 8, "temperature": 2.0},
    "bf16-top-k-stored": {"dtype": "bf16", "top_k": 8, "temperature": 2.0, "teacher_logits": "precomputed"},
}


@pytest.fixture(scope="module")
def adapter_dir(teacher_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A LoRA adapter that visibly changes the teacher, so a student built from the bare base would be far off."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(teacher_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    out = tmp_path_factory.mktemp("adapter") / "a"
    model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def pruned_start_kd(teacher_dir: str, adapter_dir: str, tmp_path_factory: pytest.TempPathFactory) -> float:
    """The KD a half-depth student starts at: the scale a misaligned teacher signal would show at."""
    out = tmp_path_factory.mktemp("pruned") / "s"
    manifest = distill(
        teacher_dir,
        adapter_dir,
        {"keep_every": 2},
        RECORDS,
        recipe(**{**IDENTITY, "steps": 1}),
        str(out),
        data_manifest_id="m",
    )
    return manifest["metrics"][0]["kd"]


@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_student_equal_to_teacher_starts_and_stays_at_zero_kd(
    signal: str, teacher_dir: str, adapter_dir: str, pruned_start_kd: float, tmp_path
) -> None:
    manifest = distill(
        teacher_dir,
        adapter_dir,
        {"init": "layer_subset", "keep_every": 1},
        RECORDS,
        recipe(**IDENTITY, **SIGNALS[signal]),
        str(tmp_path / "s"),
        data_manifest_id="m",
        eval_records=RECORDS,
    )
    kd = [m["kd"] for m in manifest["metrics"]]
    assert pruned_start_kd > 0.05
    # Step 1: the student is the adapted teacher; only bf16 rounding of the student's forward is left.
    assert abs(kd[0]) < 1e-4 * pruned_start_kd + 1e-6, kd
    # fp32: the gradient is rounding noise; bf16: the student's bf16 forward against a float32 teacher.
    assert manifest["grad_norm"][0] < (1e-5 if SIGNALS[signal]["dtype"] == "fp32" else 1e-2), manifest["grad_norm"]
    assert manifest["evaluation"]["before"]["kd"] < 1e-6
    # Later steps: float rounding in the gradient moves the weights a little (AdamW normalises even a tiny
    # gradient to a step of about lr), which must stay far below what any misalignment would cost.
    assert max(abs(k) for k in kd) < 0.02 * pruned_start_kd, (kd, pruned_start_kd)


def test_live_teacher_signal_is_float32_under_the_students_autocast(teacher_dir: str) -> None:
    """On the fly, the teacher runs inside the training step's bf16 autocast; its top-k must still be the float32
    one a precomputed store holds, or the two teacher_logits modes would train different students."""
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    examples, _ = tokenize_records(RECORDS, AutoTokenizer.from_pretrained(teacher_dir), 32)
    batch = pad_collate(examples, 0)
    with torch.no_grad():
        logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    reference = teacher_topk(logits, 8, 2.0)
    with autocast_context("cpu", "bf16"):
        live = teacher_signal(teacher, batch, top_k=8, temperature=2.0)["teacher_topk"]
    assert live.logprobs.dtype == torch.float32
    torch.testing.assert_close(live.logprobs, reference.logprobs, rtol=0, atol=1e-5)
    assert torch.equal(live.indices, reference.indices)


# -- layer-importance pruning ---------------------------------------------------------------------------------


def test_block_influence_finds_a_layer_that_does_nothing(teacher_dir: str) -> None:
    """A layer whose residual branches output zero passes its input through unchanged: influence 0, dropped first,
    while a stride would keep it."""
    from training_assets.engine.student import block_influence, least_influential

    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).train()
    with torch.no_grad():
        teacher.model.layers[2].self_attn.o_proj.weight.zero_()
        teacher.model.layers[2].mlp.down_proj.weight.zero_()
    examples, _ = tokenize_records(RECORDS, AutoTokenizer.from_pretrained(teacher_dir), 32)
    scores = block_influence(teacher, examples, pad_id=0)
    assert len(scores) == 4 and scores[2] < 1e-6 and min(scores[:2] + scores[3:]) > 1e-3
    assert least_influential(scores, 1) == [0, 1, 3]
    assert teacher.training  # measured in eval mode, the caller's mode restored
    with pytest.raises(ValueError, match="drop_layers"):
        least_influential(scores, 4)


def test_drop_layers_student_is_recorded_in_the_manifest(teacher_dir: str, tmp_path) -> None:
    manifest = distill(
        teacher_dir,
        None,
        {"init": "layer_subset", "drop_layers": 1},
        RECORDS,
        recipe(steps=1),
        str(tmp_path / "s"),
        data_manifest_id="m",
    )
    student = manifest["distillation"]["student"]
    importance = student["importance"]
    assert importance["score"] == "block_influence" and importance["examples"] == len(RECORDS)
    assert len(importance["per_layer"]) == 4 and len(student["kept_layers"]) == 3
    weakest = min(range(4), key=lambda i: importance["per_layer"][i])
    assert importance["dropped_layers"] == [weakest] and weakest not in student["kept_layers"]
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "s").config.num_hidden_layers == 3
    assert manifest["distillation"]["student_spec"]["drop_layers"] == 1


# -- sequence KD: the structured-output verifier ----------------------------------------------------------------


def test_json_schema_verifier_keeps_only_valid_answers() -> None:
    from eval_assets.tasks import json_signature
    from training_assets.engine.verifiers import json_schema_verifier, load_schema

    verify = json_schema_verifier(load_schema(json_signature.ANSWER_SCHEMA))
    good = {"name": "f", "params": ["a"], "defaults": 0, "varargs": False, "kwargs": False}
    good |= {"returns_value": True, "raises": False}
    assert verify(json_signature.format_answer(good), {}) is None
    assert verify(json.dumps({k: v for k, v in good.items() if k != "raises"}), {}) == "schema:required"
    assert verify(json.dumps({**good, "defaults": -1}), {}) == "schema:minimum"
    assert verify("Sure! " + json.dumps(good), {}) == "not_json"
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        load_schema({"type": "no-such-type"})


def test_sequence_kd_filters_teacher_answers_through_the_configured_schema(teacher_dir: str, tmp_path) -> None:
    """The schema named in the config is the verifier when the caller gives none (the asset's path): the tiny
    teacher's random text is never JSON, so every answer is dropped as such and only the gold records train."""
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object"}))
    seq = {
        "n_candidates": 2,
        "max_new_tokens": 4,
        "temperature": 1.0,
        "require_eos": False,
        "answer_schema": str(schema),
    }
    manifest = distill(
        teacher_dir,
        None,
        {"keep_every": 2},
        RECORDS[:4],
        recipe(steps=1, sequence=seq),
        str(tmp_path / "s"),
        data_manifest_id="m",
        mode="sequence",
    )
    counts = manifest["distillation"]["sequence_kd"]
    assert counts["settings"]["verifier"] == "json_schema"
    assert counts["kept"] == 0 and counts["by_reason"].get("verifier:not_json", 0) > 0
    assert sum(counts["by_reason"].values()) == counts["generated"] == 8


def test_the_students_config_carries_the_answer_schema_itself(tmp_path: Path) -> None:
    """A schema file is inlined into the job: a pod without the project still filters by it, and editing the file
    (not only moving it) is a change of what the sequence-KD student trains on."""
    import shutil

    import yaml

    from mixtrain.project import Project
    from training_assets.assets.students import distill_config

    demo = Path(__file__).resolve().parent.parent / "examples" / "demo"
    shutil.copytree(demo / "sources", tmp_path / "sources")
    cfg = yaml.safe_load((demo / "mixtrain.yaml").read_text())
    cfg["distillation"]["mode"] = "both"
    cfg["distillation"]["recipe"]["sequence"]["answer_schema"] = "schemas/answer.json"
    (tmp_path / "mixtrain.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (tmp_path / "schemas").mkdir()
    schema = {"type": "object", "required": ["name"]}
    (tmp_path / "schemas" / "answer.json").write_text(json.dumps(schema))
    config = distill_config(Project(tmp_path), baseline=False)
    assert config.sequence.answer_schema == schema
    (tmp_path / "schemas" / "answer.json").write_text(json.dumps({**schema, "required": ["name", "args"]}))
    assert distill_config(Project(tmp_path), baseline=False).sequence.answer_schema != schema
    (tmp_path / "schemas" / "answer.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"answer\.json: not a readable JSON file"):
        distill_config(Project(tmp_path), baseline=False)
