"""The contamination screen and the data gate timed on the same documents, each in a fresh process.

Why a process each: the CPU seconds of one call cannot include another's imports, caches or model, and two
versions of the package (this checkout and a baseline worktree) can be timed and scored in one run on the same
files. Used by :mod:`benchmarks.labelled_contamination`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

_TIMER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import pyarrow.parquet as pq
docs = pq.read_table(sys.argv[3])
if sys.argv[2] in ("gate", "gate-every"):  # the data gate, default rules, language models loaded first
    from benchmarks.gate_corpus import realistic_spec
    from mixassets.engine.gating import gate
    from mixassets.engine.langid import _get, _get_walk
    spec = realistic_spec()
    if sys.argv[2] == "gate-every":  # exact copies not dropped: every document through every rule
        gating = spec.gating.model_copy(update={"disabled_rules": ["dedupe.exact_in_source"]})
        spec = spec.model_copy(update={"gating": gating})
    _get(), _get_walk()
    gate(docs.slice(0, 200), spec)
    start = time.process_time()
    gate(docs, spec)
    print(json.dumps(time.process_time() - start))
    sys.exit()
from mixassets.engine.contamination import ScreenConfig, screen
items = pq.read_table(sys.argv[4])
config = ScreenConfig(methods=tuple(json.loads(sys.argv[6]))) if len(sys.argv) > 6 else ScreenConfig()
if "semantic" in config.methods:  # CPU seconds per core: idle intra-op threads would spin and bill time
    import torch
    torch.set_num_threads(1)
screen(docs.slice(0, 200), items, config=config)  # warm-up: imports, one-off tables, the model if any
start = time.process_time()
_, _, findings = screen(docs, items, config=config)
print(json.dumps(time.process_time() - start))
pq.write_table(findings, sys.argv[5])
"""


def _timed_child(
    root: str | Path, what: str, tables: Sequence[pa.Table], extra: Sequence[str] = ()
) -> tuple[float, pa.Table | None]:
    """(CPU-seconds, findings or None) of ``what`` (``screen``, ``gate`` or ``gate-every``) on ``tables`` by the
    checkout at ``root``, in a fresh process, so that two versions of the package, or the screen and the gate, are
    timed in one run on the same files."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [f"{tmp}/{k}.parquet" for k in range(len(tables))]
        for table, path in zip(tables, paths, strict=True):
            pq.write_table(table, path)
        cmd = [sys.executable, "-c", _TIMER, str(root), what, *paths, f"{tmp}/findings.parquet", *extra]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
        findings = pq.read_table(f"{tmp}/findings.parquet") if what == "screen" else None
        return float(out.stdout.strip().splitlines()[-1]), findings


def timed_gate(root: str | Path, docs: pa.Table, *, every: bool = False) -> float:
    """CPU-seconds of the data gate (``mixassets.engine.gating.gate``, the default rules of an English prose
    source, PII redacted) of the checkout at ``root`` on ``docs``: the rate the screen is held to, measured on the
    same text. ``every``: exact copies are not dropped (the exact-duplicate rule is disabled), so every document goes
    through every rule, as every document goes through the screen (the throughput documents repeat)."""
    return _timed_child(root, "gate-every" if every else "gate", [docs])[0]


def timed_screen(
    root: str | Path, docs: pa.Table, items: pa.Table, methods: Sequence[str] | None = None
) -> tuple[float, pa.Table]:
    """(CPU-seconds, findings) of the screen of the checkout at ``root`` on ``docs`` x ``items`` (with ``methods``,
    or its default ones), in a fresh process (see :func:`_timed_child`)."""
    seconds, findings = _timed_child(
        root, "screen", [docs, items], [json.dumps(list(methods))] if methods is not None else []
    )
    assert findings is not None
    return seconds, findings
