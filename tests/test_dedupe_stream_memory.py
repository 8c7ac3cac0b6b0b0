"""The dedupe run's memory does not grow with text size: the same documents with texts four times longer, stored
as parquet parts and deduped from the StoredTable (kept rows written back with TableWriter), peak within a
small margin of the short ones.

Each corpus is written by one child process and deduped by another, so the peak measured is the dedupe's own.
Peak RSS is VmHWM (``ru_maxrss`` where /proc is missing): after fork+exec ``ru_maxrss`` starts from the parent's
high-water mark, here the pytest process's, which would hide the child's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = 12_000
SHORT_WORDS = 60  # ~0.4 KB of text per document; the long corpus has 4x the words
# What the run may hold whatever the text size: one row group of kept rows in the writer (8,192 rows, fixed by
# the storage format) and one read batch. The budget is relative to the short run's peak.
MARGIN = 0.15

_CHILD = r"""
import json, os, sys
import numpy as np
import pyarrow as pa
from upath import UPath
from benchmarks._harness import peak_rss_mb

def peak_kib():
    return int(peak_rss_mb() * 1024)

what, root, docs, words = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if what == "write":
    from mixtrain.schema import DOCUMENT_SCHEMA, with_row_ids
    from mixtrain.tables import TableWriter
    import datetime as dt
    rng = np.random.default_rng(11)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = np.array(["".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(20_000)])
    originals = []
    def batches():
        for start in range(0, docs, 2_000):
            rows = []
            for i in range(start, min(docs, start + 2_000)):
                if originals and i % 10 == 0:  # a near copy of an earlier document: ~2% of its words replaced
                    ws = list(originals[int(rng.integers(len(originals)))])
                    for p in rng.choice(len(ws), max(1, len(ws) // 50), replace=False):
                        ws[p] = str(vocab[rng.integers(len(vocab))])
                else:
                    ws = vocab[rng.integers(0, len(vocab), words)].tolist()
                    if len(originals) < 2_000:
                        originals.append(ws)
                rows.append({"doc_id": f"{i:016x}", "source_id": "s", "locator": f"s:{i}", "kind": "text",
                             "text": " ".join(ws), "license": "CC-BY-4.0", "domain": "general",
                             "capture_time": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)})
            yield with_row_ids(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA))
    location = UPath(root) / "docs"
    TableWriter(location, DOCUMENT_SCHEMA).write_all(batches()).commit(location)
    print(json.dumps({}))
else:
    from mixassets.engine.dedupe import DedupeConfig, dedupe_incremental
    from mixtrain.tables import TableWriter, open_table
    stored = open_table(UPath(root) / "docs")
    imported = peak_kib()
    result = dedupe_incremental(stored, config=DedupeConfig())
    target = UPath(root) / "kept"
    kept = TableWriter(target, stored.schema).write_all(result.kept_batches()).commit(target)
    print(json.dumps({"peak_kib": peak_kib(), "imported_kib": imported, "kept": kept.rows,
                      "text_mb": os.path.getsize(stored.part_uris[0]) / 2**20,
                      "pairs": result.stats.pairs_verified}))
"""


def _child(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, env=env, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_peak_memory_does_not_grow_with_text_size(tmp_path: Path) -> None:
    peaks = {}
    for name, words in (("short", SHORT_WORDS), ("long", 4 * SHORT_WORDS)):
        root = tmp_path / name
        _child("write", str(root), str(DOCS), str(words))
        peaks[name] = _child("dedupe", str(root), str(DOCS), str(words))
    short, long = peaks["short"], peaks["long"]
    assert max(short["kept"], long["kept"]) < DOCS and min(short["pairs"], long["pairs"]) > 0
    growth = long["peak_kib"] / short["peak_kib"] - 1
    print(json.dumps(peaks))
    assert growth < MARGIN, f"peak RSS grew {growth:.1%} with 4x longer texts: {peaks}"
