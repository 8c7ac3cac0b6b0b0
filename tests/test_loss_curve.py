"""The loss curve saved next to trained weights (trainer_state.json, loss_curve.svg) and shown in the metadata."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from mixtrain.metadata import metric_table, round_float, rounded
from training_assets.assets.model_store import loss_curve_markdown
from training_assets.engine.curves import LOSS_CURVE_FILE, TRAINER_STATE_FILE, loss_curve_svg, sampled, write_curves

CURVES = {"loss": [2.5, 2.0, 1.75, 1.5], "lr": [1e-4, 9e-5, 8e-5, 7e-5], "grad_norm": [1.0, 0.9, 0.8, 0.7],
          "tokens": [100, 120, 90, 110]}  # fmt: skip


def test_trainer_state_and_svg_are_written_next_to_the_weights(tmp_path):
    history = write_curves(tmp_path, CURVES)
    state = json.loads((tmp_path / TRAINER_STATE_FILE).read_text())
    assert state["global_step"] == 4 and state["log_history"] == history
    assert history[1] == {"step": 2, "loss": 2.0, "learning_rate": 9e-5, "grad_norm": 0.9, "num_tokens": 120}
    svg = ET.fromstring((tmp_path / LOSS_CURVE_FILE).read_text())  # well-formed XML
    points = svg.find("{http://www.w3.org/2000/svg}polyline").get("points").split()
    ys = [float(p.split(",")[1]) for p in points]
    assert len(points) == 4 and ys == sorted(ys)  # falling loss: y grows downwards in SVG


def test_the_same_curves_write_the_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_curves(a, CURVES), write_curves(b, CURVES)
    for name in (TRAINER_STATE_FILE, LOSS_CURVE_FILE):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_an_empty_run_has_no_curve():
    with pytest.raises(ValueError, match="no steps"):
        loss_curve_svg([])


def test_sampling_keeps_first_and_last_step():
    history = [{"step": i, "loss": 1.0} for i in range(1, 101)]
    picked = sampled(history, at_most=12)
    assert len(picked) == 12 and picked[0]["step"] == 1 and picked[-1]["step"] == 100


def test_loss_curve_markdown_is_a_table_of_steps():
    md = loss_curve_markdown({**CURVES, "tokens_per_s": 345.2})
    lines = md.splitlines()
    assert lines[0] == "| step | loss | lr | tokens |" and lines[2].startswith("| 1 | 2.500 | 1.00e-04 | 100 |")
    assert md.endswith("345 tokens/s.")


def test_metadata_floats_are_rounded_to_four_significant_digits():
    assert round_float(0.123456789) == 0.1235 and round_float(12345.678) == 12350.0 and round_float(0.0) == 0.0
    assert rounded({"a": 1 / 3, "n": 7, "ok": True})["a"] == 0.3333
    assert rounded({"n": 7, "ok": True}) == {"n": 7, "ok": True}


def test_metric_table_puts_one_model_per_row():
    md = metric_table({"base/structured/exact_match": 0.25, "sft/structured/exact_match": 1 / 3})
    assert md.splitlines()[0] == "| model | structured/exact_match |"
    assert "| sft | 0.333 |" in md
