"""The per-candidate time limit on evaluation: a candidate past it is recorded as timed out, none of its rows
is scored, and the release gate refuses it; the limit also ends a single long ``generate`` call."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from mixtrain.config.evaluation import EvalSpec, ReleaseGateSpec

torch = pytest.importorskip("torch")

from eval_assets.engine import comparison, registry, suites  # noqa: E402
from eval_assets.engine.deadline import GenerationTimeout, time_limit  # noqa: E402
from eval_assets.engine.evaluate import generate_texts  # noqa: E402
from eval_assets.engine.gate import gate_verdict  # noqa: E402
from eval_assets.engine.reporting import eval_settings  # noqa: E402
from tests.helpers import write_signature_set  # noqa: E402

SOURCES = [("mod_a", "def f(a, b=2):\n    return a\n"), ("mod_b", "def g(x, *args, **kw):\n    raise ValueError(x)\n")]


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pa.Table]:
    path = write_signature_set(tmp_path_factory.mktemp("sets") / "sig.jsonl", SOURCES)
    return {"structured": registry.load_jsonl_eval_set("sig", path, "1")}


def _run(tiny_model_dir: Path, items: dict[str, pa.Table], limit_s: float) -> comparison.EvalRun:
    candidates = {"base": (str(tiny_model_dir), None), "sft_adapter": (str(tiny_model_dir), None)}
    settings = suites.EvalSettings(max_new_tokens=4, batch_size=1, n_resamples=50, generation_timeout_s=limit_s)
    return comparison.run_evaluation(candidates, "base", items, settings)


def test_within_the_limit_every_candidate_is_scored(tiny_model_dir: Path, items: dict[str, pa.Table]) -> None:
    run = _run(tiny_model_dir, items, limit_s=600.0)
    assert not [p for p in run.problems if p["kind"] == "timeout"]
    assert set(run.items.column("model").to_pylist()) == {"base", "sft_adapter"}
    assert run.comparison_for("sft_adapter").num_rows > 0
    assert not any(m.get("timed_out") for m in run.record["models"].values())
    assert run.record["settings"]["generation_timeout_s"] == 600.0


def test_a_candidate_past_the_limit_is_recorded_and_never_released(
    tiny_model_dir: Path, items: dict[str, pa.Table]
) -> None:
    run = _run(tiny_model_dir, items, limit_s=1e-6)
    timeouts = {p["model"]: p["message"] for p in run.problems if p["kind"] == "timeout"}
    assert set(timeouts) == {"base", "sft_adapter"}
    assert "'sft_adapter'" in timeouts["sft_adapter"] and "generation_timeout_s=1e-06s" in timeouts["sft_adapter"]
    assert run.record["models"]["sft_adapter"]["timed_out"] is True
    assert run.items.num_rows == 0 and run.comparison.num_rows == 0  # nothing half-evaluated is scored
    assert "timeout" in run.to_markdown()
    passed, checks = gate_verdict(run.comparison, ReleaseGateSpec(eval_set="sig", candidate="sft_adapter"))
    assert not passed and not checks[0]["passed"]


def test_the_limit_ends_one_long_generate_call(tiny_model_dir: Path) -> None:
    """One prompt, one batch: no check between batches could stop it, only the deadline inside ``generate``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    model.generation_config.eos_token_id = None  # nothing ends the turn early: only max_new_tokens or the deadline
    tokenizer.eos_token = None
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.unk_token or "<pad>"
    started = time.monotonic()
    limit = pytest.raises(GenerationTimeout, match=r"candidate 'slow'.*generation_timeout_s=0.3s")
    with limit, time_limit("slow", 0.3):
        generate_texts(model, tokenizer, ["hello"], max_new_tokens=100_000, batch_size=1)
    assert time.monotonic() - started < 10.0  # 100k tokens would take minutes


def test_the_limit_is_configured_and_validated() -> None:
    assert EvalSpec().generation_timeout_s == 3600.0
    assert eval_settings(EvalSpec(generation_timeout_s=12)).generation_timeout_s == 12.0
    for bad in (0, -1):
        with pytest.raises(ValidationError, match="generation_timeout_s"):
            EvalSpec(generation_timeout_s=bad)
        with pytest.raises(ValueError, match="generation_timeout_s"):
            suites.EvalSettings(generation_timeout_s=bad)
