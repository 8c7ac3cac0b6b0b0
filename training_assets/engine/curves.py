"""A finished run's loss curve, saved next to the weights: ``trainer_state.json`` (the per-step log history
in the layout transformers' Trainer writes, which tools that read Trainer output understand) and
``loss_curve.svg`` (drawn here: matplotlib is not a dependency, and an SVG is small, diffable and renders in
a browser, an IDE or a Markdown viewer).

Only what the inputs determine goes in (step, loss, learning rate, gradient norm, tokens): no timings, so two
runs of the same inputs write the same bytes. Throughput is a whole-run figure in the run manifest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TRAINER_STATE_FILE = "trainer_state.json"
LOSS_CURVE_FILE = "loss_curve.svg"

WIDTH, HEIGHT, PAD = 480, 200, 36


def log_history(curves: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """One entry per step from a run's curves (``loss``, ``lr``, ``grad_norm``, ``tokens`` lists)."""
    loss = list(curves.get("loss") or [])
    out = []
    for i, value in enumerate(loss):
        entry: dict[str, Any] = {"step": i + 1, "loss": float(value)}
        for key, name in (("lr", "learning_rate"), ("grad_norm", "grad_norm"), ("tokens", "num_tokens")):
            series = curves.get(key) or []
            if i < len(series):
                entry[name] = series[i]
        out.append(entry)
    return out


def _points(values: Sequence[float]) -> list[tuple[float, float]]:
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    span = (hi - lo) or 1.0
    n = max(len(values) - 1, 1)
    return [
        (PAD + (WIDTH - 2 * PAD) * i / n, HEIGHT - PAD - (HEIGHT - 2 * PAD) * ((v - lo) / span))
        for i, v in enumerate(values)
        if math.isfinite(v)
    ]


def loss_curve_svg(history: Sequence[Mapping[str, Any]], title: str = "training loss") -> str:
    """The loss per step as a standalone SVG polyline with its first and last values labelled."""
    losses = [float(e["loss"]) for e in history]
    if not losses:
        raise ValueError("loss_curve_svg: the run logged no steps")
    pts = _points(losses)
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    finite = [v for v in losses if math.isfinite(v)] or [0.0]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>'
        f'<text x="{PAD}" y="16">{title} ({len(losses)} steps)</text>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>'
        f'<text x="2" y="{PAD + 4}">{max(finite):.3g}</text>'
        f'<text x="2" y="{HEIGHT - PAD}">{min(finite):.3g}</text>'
        f'<text x="{PAD}" y="{HEIGHT - PAD + 14}">1</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - PAD + 14}" text-anchor="end">{len(losses)}</text>'
        f'<polyline points="{path}" fill="none" stroke="#2563eb" stroke-width="1.5"/>'
        "</svg>\n"
    )


def write_curves(out_dir: str | Path, curves: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Write ``trainer_state.json`` and ``loss_curve.svg`` into ``out_dir``; returns the log history."""
    history = log_history(curves)
    state = {"global_step": len(history), "max_steps": len(history), "log_history": history}
    Path(out_dir, TRAINER_STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True, allow_nan=False) + "\n")
    if history:
        Path(out_dir, LOSS_CURVE_FILE).write_text(loss_curve_svg(history))
    return history


def sampled(history: Sequence[Mapping[str, Any]], at_most: int = 12) -> list[Mapping[str, Any]]:
    """At most ``at_most`` entries spread evenly over the run, first and last always kept (for a table)."""
    if len(history) <= at_most:
        return list(history)
    picks = sorted({round(i * (len(history) - 1) / (at_most - 1)) for i in range(at_most)})
    return [history[i] for i in picks]
