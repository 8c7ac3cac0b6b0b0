"""Calibration of the code screen's line test (match type ``code_lines``) on the labelled contamination set.

Run: ``python benchmarks/lines_calibration.py``

Positives: the labelled set's ``rewritten`` plants (a HumanEval program with about half its names renamed, one
line in seven dropped, comments inserted; :func:`benchmarks.contamination_cases.rewrite_edit`). Negatives: its
6,000 negative documents (ordinary, same-topic, same-API and few-shot-opener stdlib/pydoc chunks) and every ``.py``
file of CPython's standard library as one document. Split for honesty, as the semantic threshold was: items with an
even number and every other labelled negative (sorted by id) calibrate, the rest are held out; the stdlib files are
calibration negatives. A plant counts as found when the line test or any default method names its item, so the
grid shows what the test adds to the screen. Rule: among the settings with no calibration false positive, the
highest calibration recall; ties go to the strictest setting (largest threshold, then weight, then line length).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402

from benchmarks.code_contamination import docs_table, stdlib_files  # noqa: E402
from benchmarks.labelled_contamination import benchmark_items, build_labelled_set  # noqa: E402
from mixassets.engine.contamination import ScreenConfig, build_index, screen  # noqa: E402
from mixassets.engine.contamination_code import DocTokens  # noqa: E402
from mixassets.engine.contamination_lines import _field_weights, line_keys, line_windows  # noqa: E402

MIN_TOKENS = (4, 5, 6, 8)
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6)
MIN_WEIGHTS = (12, 16, 20, 24, 30)
MIN_LINES = 2  # one line, however long, can be an idiom (``for i in range(len(x) - 1):``)


def windows(docs: pa.Table, items: pa.Table, min_tokens: int) -> dict[tuple[str, str], list[tuple[float, int, float]]]:
    """(doc_id, item_id) -> (weight, lines, share) of the best window of each of the item's fields, from the index
    built with ``min_tokens``."""
    index = build_index(items, config=ScreenConfig(code_lines_min_tokens=min_tokens, code_lines_min_weight=1))
    assert index.code_lines is not None
    field_weight = _field_weights(index.code_lines, index.line_weights)
    ids, texts = docs.column("doc_id").to_pylist(), docs.column("text").to_pylist()
    out: dict[tuple[str, str], list[tuple[float, int, float]]] = {}
    for start in range(0, len(texts), 256):
        keys = line_keys(DocTokens([t or "" for t in texts[start : start + 256]], index.hasher))
        found = line_windows(keys, index.code_lines, index.line_weights, index.line_counts, min_tokens, 1)
        for doc, ref, weight, lines, _, _ in found:
            key = (ids[start + doc], index.fields[ref].item_id)
            out.setdefault(key, []).append((weight, lines, weight / field_weight[ref]))
    return out


def main() -> None:
    items, opener = benchmark_items()
    labelled = build_labelled_set(items, opener=opener)
    stdlib = docs_table([t for _, t in stdlib_files()], "stdlib")
    rewritten = {d: p for d, p in labelled.planted.items() if p.kind == "rewritten"}
    cal_items = {p.item_id for p in rewritten.values() if int(p.item_id.split("/")[1]) % 2 == 0}
    negatives = sorted(labelled.clean)
    cal_negatives = set(negatives[::2]) | set(stdlib.column("doc_id").to_pylist())
    held_negatives = set(negatives[1::2])
    docs = pa.concat_tables([labelled.docs.select(["doc_id", "text"]), stdlib.select(["doc_id", "text"])])
    # What the other default methods already find (the line test switched off by an unreachable weight).
    others = ScreenConfig(code_lines_min_weight=10**6)
    _, _, findings = screen(labelled.docs, items, config=others)
    found_before = {(r["doc_id"], r["item_id"]) for r in findings.select(["doc_id", "item_id"]).to_pylist()}
    rows = []
    for min_tokens in MIN_TOKENS:
        best = windows(docs, items, min_tokens)
        for threshold in THRESHOLDS:
            for min_weight in MIN_WEIGHTS:
                fired = {
                    k
                    for k, scores in best.items()
                    if any(w >= min_weight and n >= MIN_LINES and s >= threshold for w, n, s in scores)
                }
                hits = {d for d, _ in fired}
                recall = {True: 0, False: 0}
                for d, p in rewritten.items():
                    ok = (d, p.item_id) in fired or (d, p.item_id) in found_before
                    recall[p.item_id in cal_items] += ok
                fp_cal, fp_held = len(hits & cal_negatives), len(hits & held_negatives)
                rows.append((fp_cal == 0, recall[True], threshold, min_weight, min_tokens, recall[False], fp_held))
                print(
                    f"min_tokens {min_tokens} threshold {threshold} min_weight {min_weight}: calibration recall"
                    f" {recall[True]}/{len(cal_items)}, FP {fp_cal}/{len(cal_negatives)}; held-out recall"
                    f" {recall[False]}/{len(rewritten) - len(cal_items)}, FP {fp_held}/{len(held_negatives)}"
                )
    chosen = max(rows)
    print(f"chosen: min_tokens {chosen[4]}, threshold {chosen[2]}, min_weight {chosen[3]} (min_lines {MIN_LINES}):")
    print(f"  calibration recall {chosen[1]}/{len(cal_items)} with no false positive in {len(cal_negatives)}")
    held = len(rewritten) - len(cal_items)
    print(f"  held-out recall {chosen[5]}/{held} ({chosen[5] / held:.3f}), FP {chosen[6]}/{len(held_negatives)}")
    print(f"  (before the line test: {sum((d, p.item_id) in found_before for d, p in rewritten.items())} found)")


if __name__ == "__main__":
    main()
