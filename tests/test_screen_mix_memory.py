"""The streamed screen and mixture hold one batch of text at a time: 4x longer documents at the same count
barely move their peak memory.

Each measurement runs in a fresh interpreter (peak RSS is per process, and ``VmHWM`` is not inherited by
exec): the child writes a corpus with ``TableWriter``, then records its high-water mark, runs the stage and
reports how far the mark rose. A stage that loaded the corpus whole would rise by at least the extra text
(measured: twice the extra text); the streamed one rises by a few row groups of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = 100_000  # 13 row groups: a streamed stage holds a few of them, a whole-table stage all
WORDS = 20  # words per document at scale 1 (~120 characters); scale 4 has 4x as many

CHILD = textwrap.dedent(
    """
    import json, random, sys, tempfile
    from pathlib import Path

    import numpy as np
    import pyarrow as pa

    from mixassets.engine.contamination import ScreenConfig
    from mixassets.engine.contamination_stream import SCREEN_BATCH_ROWS, screen_stream
    from mixassets.engine.mixture_build import corpus_index, mixture_schema, plan_mixture, write_mixture
    from mixtrain.config.data import MixtureSpec
    from mixtrain.schema import DOCUMENT_SCHEMA, EVAL_ITEM_SCHEMA, with_row_ids
    from mixtrain.tables import TableWriter

    stage, root = sys.argv[1], Path(sys.argv[5])
    scale, docs, words = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

    from benchmarks._harness import peak_rss_mb as peak_mb

    class Words:
        def __call__(self, texts, **kwargs):
            return {"input_ids": [t.split() for t in texts]}

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(5000)]

    def batches():
        for start in range(0, docs, 4096):
            n = min(4096, docs - start)
            rows = [
                {"doc_id": f"{i:016x}", "source_id": f"s{i % 3}", "locator": f"f:{i}", "kind": "text",
                 "text": " ".join(rng.choices(vocab, k=words * scale)), "license": "MIT", "domain": "web"}
                for i in range(start, start + n)
            ]
            yield with_row_ids(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA))

    if stage == "write":
        pending = TableWriter(str(root / "corpus"), DOCUMENT_SCHEMA).write_all(batches())
        pending.commit(pending.location)
        sys.exit(0)
    from mixtrain.tables import open_table
    stored = open_table(str(root / "corpus"))
    item = {"prompt": " ".join(vocab[:40]), "solution": " ".join(vocab[40:80])}
    items = pa.Table.from_pylist(
        [{"eval_set": "e", "item_id": "1", "prompt": "", "reference": "", "screen_fields": json.dumps(item),
          "checksum": "x", "version": "1"}], schema=EVAL_ITEM_SCHEMA)
    before = peak_mb()
    if stage == "screen":
        clean = TableWriter(str(root / "clean"), stored.schema)
        dirty = TableWriter(str(root / "dirty"), stored.schema)
        summary = screen_stream(stored.batches(batch_size=SCREEN_BATCH_ROWS), items, ScreenConfig(), clean=clean.write,
                                contaminated=dirty.write)
        clean.finish(), dirty.finish()
        rows = summary.documents_in
    elif stage == "screen-whole":  # the control: what the asset did before it streamed
        from mixassets.engine.contamination_stream import screen_corpus
        rows = screen_corpus(stored.read(), items, ScreenConfig()).clean.num_rows
    else:
        budget = docs * words * scale // 2
        spec = MixtureSpec.model_validate({"weights": {"s0": 1, "s1": 1, "s2": 1}, "token_budget": budget})
        index, tokens = corpus_index(stored.batches(batch_size=8192), stored.schema, Words())
        plan = plan_mixture(index, tokens, spec)
        out = TableWriter(str(root / "mixture"), mixture_schema(stored.schema, plan))
        spill = Path(tempfile.mkdtemp(dir=root))
        write_mixture(stored.batches(batch_size=8192), stored.schema, plan, out.write, spill=spill)
        rows = out.finish().rows
    print(json.dumps({"rise_mb": peak_mb() - before, "before_mb": before, "rows": rows,
                      "text_mb": stored.rows * words * scale * 6 / 2**20}))
    """
)


def _child(stage: str, scale: int, root: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", CHILD, stage, str(scale), str(DOCS), str(WORDS), str(root)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The corpus at both text lengths, each written by a process of its own."""
    roots = {scale: tmp_path_factory.mktemp(f"corpus-x{scale}") for scale in (1, 4)}
    for scale, root in roots.items():
        _child("write", scale, root)
    return roots


def _rise(stage: str, scale: int, root: Path) -> dict:
    return json.loads(_child(stage, scale, root).strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
@pytest.mark.parametrize("stage", ["screen", "mixture"])
def test_peak_memory_does_not_follow_text_length(stage: str, corpora: dict[int, Path]) -> None:
    short, long = _rise(stage, 1, corpora[1]), _rise(stage, 4, corpora[4])
    extra_text = long["text_mb"] - short["text_mb"]
    print(f"{stage}: rise {short['rise_mb']:.0f} MB -> {long['rise_mb']:.0f} MB for {extra_text:.0f} MB more text")
    assert long["rows"] == short["rows"] > 0
    # Measured (mimalloc, 100k docs, 11 -> 46 MB of text): the whole-table screen rose 86 -> 154 MB (+68, twice
    # the extra text); streamed, the screen rose 33 -> 48 MB (+15) and the mixture 62 -> 63 MB (+1).
    assert long["rise_mb"] - short["rise_mb"] < 0.6 * extra_text
