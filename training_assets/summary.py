"""The training side's lines of the run summary: the SFT adapter's loss and each task adapter's."""

from __future__ import annotations

from dagster import DagsterInstance

from mixtrain.partitions import ADAPTERS_PARTITION
from mixtrain.summary import latest_metadata


def summary_lines(instance: DagsterInstance) -> list[str]:
    out: list[str] = []
    t = latest_metadata(instance, "sft_adapter")
    if t:
        out.append(
            f"== training ==  loss (mean of first/last 5 steps) {float(t['loss_start']):.3f} -> "
            f"{float(t['loss_end']):.3f} over {t['steps']} steps"
            f"  ({float(t['tokens_per_s']):.0f} tok/s, {float(t['wall_time_s']):.0f} s; batches mix task chats with"
            " raw text, so per-step loss is noisy: the held-out loss below is the measure)"
        )
    for aid in sorted(instance.get_dynamic_partitions(ADAPTERS_PARTITION)):
        a = latest_metadata(instance, "task_adapter", aid)
        if a:
            out.append(
                f"== task_adapter[{aid}] ==  loss {float(a['loss_start']):.3f} -> {float(a['loss_end']):.3f} over "
                f"{a['steps']} steps  ({float(a['tokens_per_s']):.0f} tok/s, version {a['version']})"
            )
    return out
