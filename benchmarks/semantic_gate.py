"""Calibration of the semantic screen's gate: which candidate windows may skip the model.

Run: ``python benchmarks/semantic_gate.py [--margin 0.02] [--throughput-docs 20000]``

The semantic method embeds a window of every candidate (document, field) pair with MiniLM, ~0.3 ms a token on one
core. :func:`~mixassets.engine.contamination_semantic.static_scores` estimates the same score from static word
vectors for almost nothing (and rules out windows holding half of the field's words or fewer, or none of its rare
ones); a window whose estimate is below the gate is not embedded.

Two sets of paraphrases of HumanEval's prose, each split by item number (even: calibration, odd: held out):
the labelled benchmark's (:mod:`benchmarks.labelled_contamination`: synonyms and sentence order, each alone as a
document) and :mod:`benchmarks.semantic_contamination`'s (its own rewriting, passive voice too, inside ~1 KB of
pydoc help text, which dilutes a window's words). The gate is the lowest estimate among the calibration
paraphrases of both that the ungated method finds, minus ``--margin``. Reported, ungated and gated, in the same
process on the same documents:

* per set and half, the paraphrases whose window reaches the model, and those found;
* the labelled negatives' (document, field) pairs embedded, and false positives;
* on the throughput documents (:func:`~benchmarks.labelled_contamination.throughput_docs`), the pairs embedded
  and the CPU seconds of the semantic method alone (item index built beforehand, torch on one thread).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from benchmarks import semantic_contamination as sc  # noqa: E402
from benchmarks.code_contamination import docs_table  # noqa: E402
from benchmarks.labelled_contamination import benchmark_items, build_labelled_set, throughput_docs  # noqa: E402
from mixassets.engine.contamination import ScreenConfig, ScreenIndex, build_index, screen, screen_tokens  # noqa: E402
from mixassets.engine.contamination_semantic import STATIC_GATE, _is_content, static_scores  # noqa: E402

THRESHOLD = ScreenConfig().semantic_threshold
PROBE = ScreenConfig(methods=("semantic",), semantic_threshold=1e-6)  # every embedded pair becomes a finding


def gated(index: ScreenIndex, gate: float) -> ScreenIndex:
    assert index.semantic is not None
    semantic = dataclasses.replace(index.semantic, settings=dataclasses.replace(index.semantic.settings, gate=gate))
    return dataclasses.replace(index, semantic=semantic)


def probe(docs: pa.Table, items: pa.Table, index: ScreenIndex) -> tuple[list[dict], float]:
    """(findings at a threshold just above 0: one per embedded (document, field) pair, its best window; CPU-s)."""
    start = time.process_time()
    findings = screen(docs, items, config=PROBE, index=index)[2]
    seconds = time.process_time() - start
    return findings.select(["doc_id", "item_id", "field", "span_start", "span_end", "score"]).to_pylist(), seconds


def static_of(findings: list[dict], texts: dict[str, str], index: ScreenIndex) -> list[float]:
    """The static estimate of each finding's window, against the best of its field's prose pieces (a field has
    several when its prompt documents a helper too)."""
    assert index.semantic is not None
    ref_of = {(f.item_id, f.field): k for k, f in enumerate(index.fields)}
    out = []
    for f in findings:
        words = [w for w in screen_tokens(texts[f["doc_id"]][f["span_start"] : f["span_end"]]) if _is_content(w)]
        rows = np.flatnonzero(index.semantic.refs == ref_of[f["item_id"], f["field"]]).tolist()
        out.append(float(static_scores([words] * len(rows), rows, index.semantic).max()))
    return out


def own(findings: list[dict], owners: dict[str, str], at: float = 0.0) -> dict[str, float]:
    """Planted document -> its best score for its own item (at or above ``at``)."""
    best: dict[str, float] = {}
    for f in findings:
        if owners.get(f["doc_id"]) == f["item_id"] and f["score"] >= at:
            best[f["doc_id"]] = max(best.get(f["doc_id"], 0.0), f["score"])
    return best


def number(item_id: str) -> int:
    return int(item_id.rsplit("/", 1)[1])


def independent_set(seed: int = 0) -> tuple[pa.Table, dict[str, str]]:
    """benchmarks/semantic_contamination.py's positives: each HumanEval prose paraphrased its way in pydoc text."""
    from eval_assets.engine.registry import load_humaneval

    rng = random.Random(seed)
    pool = sc.prose_chunks()
    rng.shuffle(pool)
    texts, owners = [], []
    for row in load_humaneval().to_pylist():
        prose = sc.field_prose(json.loads(row["screen_fields"])["prompt"])
        if prose is None:
            continue
        host = pool[rng.randrange(2000, len(pool))]
        cut = host.find("\n\n", len(host) // 2)
        cut = len(host) // 2 if cut < 0 else cut + 2
        texts.append(host[:cut] + sc.paraphrase(prose, rng) + "\n\n" + host[cut:])
        owners.append(row["item_id"])
    return docs_table(texts, "ind"), {f"ind{k}": o for k, o in enumerate(owners)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--margin", type=float, default=0.02)
    parser.add_argument("--throughput-docs", type=int, default=20000)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # CPU seconds per core, as the labelled benchmark's timed runs
    items, opener = benchmark_items()
    humaneval = items.filter(pc.equal(items.column("eval_set"), "humaneval"))
    labelled = build_labelled_set(items, opener=opener)
    ind_docs, ind_owners = independent_set()
    sets = {  # name -> (documents, planted document -> item, items screened, their index)
        "labelled": (
            labelled.docs,
            {d: p.item_id for d, p in labelled.planted.items() if p.kind == "paraphrase"},
            items,
            build_index(items, config=PROBE),
        ),
        "independent": (ind_docs, ind_owners, humaneval, build_index(humaneval, config=PROBE)),
    }
    ungated, calibration = {}, []
    for name, (docs, owners, its, index) in sets.items():
        texts = dict(zip(docs.column("doc_id").to_pylist(), docs.column("text").to_pylist(), strict=True))
        ungated[name] = probe(docs, its, gated(index, float("-inf")))[0]
        para = [f for f in ungated[name] if owners.get(f["doc_id"]) == f["item_id"] and f["score"] >= THRESHOLD]
        statics = static_of(para, texts, index)
        calibration += [
            (s, name, f["item_id"]) for f, s in zip(para, statics, strict=True) if number(f["item_id"]) % 2 == 0
        ]
    lowest = min(calibration)
    floor = lowest[0] - args.margin
    print(f"calibration: {len(calibration)} paraphrases found ungated (even items, both sets), lowest estimate")
    print(
        f"  {lowest[0]:.4f} ({lowest[1]} {lowest[2]}); gate = that - {args.margin} = {floor:.4f} (module {STATIC_GATE})"
    )
    for name, (docs, owners, its, index) in sets.items():
        found_gated = probe(docs, its, gated(index, floor))[0]
        print(f"{name} paraphrases, ungated -> gated:")
        for half, label in ((0, "calibration"), (1, "held-out")):
            planted = [d for d, o in owners.items() if number(o) % 2 == half]
            (p0, h0), (p1, h1) = [
                (sum(d in own(f, owners) for d in planted), sum(d in own(f, owners, THRESHOLD) for d in planted))
                for f in (ungated[name], found_gated)
            ]
            print(f"  {label:<12} window reaches the model {p0} -> {p1}, found {h0} -> {h1} of {len(planted)}")
        if name == "labelled":
            clean = set(labelled.clean)
            for label, found in (("ungated", ungated[name]), ("gated", found_gated)):
                pairs = [f for f in found if f["doc_id"] in clean]
                fps = sorted({f["doc_id"] for f in pairs if f["score"] >= THRESHOLD})
                print(f"  negatives ({len(clean)}) {label}: {len(pairs)} pairs embedded, false positives {fps}")
    docs = throughput_docs(args.throughput_docs)
    mb = sum(len(t.encode()) for t in docs.column("text").to_pylist()) / 1e6
    he_index = sets["independent"][3]
    probe(docs.slice(0, 200), humaneval, he_index)  # warm-up: the model and the word memo
    for label, gate in (("ungated", float("-inf")), ("gated", floor)):
        found, seconds = probe(docs, humaneval, gated(he_index, gate))
        print(
            f"throughput {docs.num_rows} docs ({mb:.1f} MB) {label}: {len(found)} pairs embedded, "
            f"semantic method alone {seconds:.2f} CPU-s ({mb / seconds:.1f} MB per CPU-second)"
        )


if __name__ == "__main__":
    main()
