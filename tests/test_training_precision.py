"""bf16 only where the device has bf16 kernels: on a CPU without them (x86 with AVX2 only) bf16 autocast sends
every matmul to PyTorch's scalar fallback and a LoRA step takes minutes, so such a run computes in fp32."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.conftest import tiny_recipe  # noqa: E402
from training_assets.engine.config import DistillConfig, SFTConfig  # noqa: E402
from training_assets.engine.precision import bf16_is_native, compute_dtype  # noqa: E402
from training_assets.engine.sft import train_lora  # noqa: E402
from training_assets.engine.tiny import make_tiny_model  # noqa: E402


def cpu_bf16_kernels(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    """Make this CPU look like one with (or without) oneDNN bf16 kernels."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)


def test_native_check_is_atens_own_and_trusts_other_devices() -> None:
    assert bf16_is_native("cpu") == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert bf16_is_native("cuda:0") and bf16_is_native("mps")


@pytest.mark.parametrize("native", [True, False])
def test_bf16_recipes_compute_in_fp32_only_on_cpus_without_bf16_kernels(
    monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    cpu_bf16_kernels(monkeypatch, native)
    expected = "bf16" if native else "fp32"
    assert compute_dtype("bf16", "cpu") == expected
    assert compute_dtype("fp32", "cpu") == "fp32"
    assert compute_dtype("bf16", "cuda") == "bf16"
    sft = SFTConfig.from_recipe(tiny_recipe(dtype="bf16"))
    assert sft.loop_config("cpu").dtype == expected and sft.loop_config("cuda").dtype == "bf16"
    assert sft.learnt()["dtype"] == "bf16"  # the recipe keeps what was asked for
    distill = DistillConfig.from_recipe({"steps": 2, "dtype": "bf16"}, student={"keep_every": 2})
    assert distill.loop_config("cpu").dtype == expected


def test_a_bf16_run_without_bf16_kernels_is_the_fp32_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Same losses as the fp32 recipe, bit for bit, and the manifest says fp32 ran while bf16 was asked for."""
    cpu_bf16_kernels(monkeypatch, False)
    base = str(tmp_path / "base")
    make_tiny_model(base, seed=0)
    records = [{"kind": "text", "text": "def add(a, b):\n    return a + b\n" * 3}] * 4
    runs = {}
    for dtype in ("bf16", "fp32"):
        config = SFTConfig.from_recipe(tiny_recipe(dtype=dtype, steps=2), device="cpu")
        runs[dtype] = train_lora(base, records, config, str(tmp_path / dtype), data_manifest_id="x")
    assert runs["bf16"]["loss"] == runs["fp32"]["loss"]
    assert runs["bf16"]["output_weights_sha256"] == runs["fp32"]["output_weights_sha256"]
    assert runs["bf16"]["hardware"]["dtype"] == "fp32" and runs["bf16"]["recipe"]["dtype"] == "bf16"
