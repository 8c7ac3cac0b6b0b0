"""Process plumbing shared by the benchmarks: child processes, timing, peak memory and the JSON report.

Every benchmark measures each stage in a fresh interpreter so that one stage's memory high-water mark
cannot be charged to another; these helpers are the parts of that arrangement that do not depend on
what is being measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

LOG_TAIL_CHARS = 4000


def peak_rss_mb() -> float:
    """This process's peak RSS. On Linux VmHWM, because ``getrusage`` carries the parent's high-water mark
    across fork+exec and would charge every child with the parent's memory."""
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


@dataclass(frozen=True)
class Timing:
    """Wall and CPU seconds of one call, and the process's peak RSS once it returned. CPU time is the
    steadier figure on a shared machine; wall time is what a user waits."""

    seconds: float
    cpu_seconds: float
    peak_rss_mb: float


def timed(fn: Callable[[], T]) -> tuple[T, Timing]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return result, Timing(wall, cpu, peak_rss_mb())


def spawn(script: str | Path, args: list[str], out: Path) -> dict[str, Any]:
    """Run ``script`` with ``args --child-out out`` in a fresh interpreter and return the JSON it wrote to
    ``out``. The child's output goes to a log beside ``out`` (progress bars and library logging would
    drown the summary), and the log's tail is raised with the exit code if the child fails."""
    log = out.with_suffix(".log")
    cmd = [sys.executable, str(script), *args, "--child-out", str(out)]
    with log.open("w") as sink:
        proc = subprocess.run(cmd, stdout=sink, stderr=sink, env={**os.environ, "TQDM_DISABLE": "1"}, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        child = " ".join([Path(script).name, *args])
        raise RuntimeError(f"child {child} failed with exit code {proc.returncode}:\n{tail}")
    return json.loads(out.read_text())


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare figures from two runs: the interpreter and the core count."""
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}


def write_report(out_dir: Path, name: str, result: dict[str, Any]) -> Path:
    """``result`` as ``out_dir/name.json``; the path is printed so a run's log says where its figures went."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {path}")
    return path
