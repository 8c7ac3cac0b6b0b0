"""Gate throughput in MB of text per CPU-second (one core), against the per-document reference rules, same run.

Run: ``python benchmarks/bench_gate_rules.py [--docs 10000] [--corpus realistic|zipf] [--repeat 1]``

The reference is the gate with the per-document code paths the batched ones replaced: py3langid's own
per-document walk for the language rule, every PII detector on every text (no prefilter, also for the quarantine
copy's redaction), the safety lexicon with all its patterns on every text and the top n-gram counted for every
n. Both runs gate the same table in this process (the language model is loaded before either is timed), their
outputs are compared with ``Table.equals``, and the rate divides the UTF-8 bytes of the texts by the process CPU
time of ``gate()``. The ``zipf`` corpus is ``bench_gate_stream``'s (random words, banners, exact copies);
``realistic`` is ``gate_corpus``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_info  # noqa: E402


def top_ngram_reference(text: str, limits: dict[int, float]) -> list[Any]:
    """The top n-gram rule as it was before its bounds: every n counted (the tests' reference too)."""

    from mixassets.engine.rules.base import Outcome, words

    ws = [w.lower() for w in words(text)]
    total = sum(map(len, ws))
    for n in sorted(limits):
        if len(ws) < n * 2 or not total:
            continue
        counts = Counter(zip(*(ws[i:] for i in range(n)), strict=False))
        gram, count = max(counts.items(), key=lambda kv: kv[1])
        if count < 2:
            continue
        value = count * sum(map(len, gram)) / total
        if value > limits[n]:
            reason = f"top {n}-gram {' '.join(gram)!r} x{count} covers {value:.2f} of characters > {limits[n]}"
            return [Outcome("quarantine", reason, score=value)]
    return []


def _reference_top_ngram(self: Any, text: str, ctx: Any) -> list[Any]:
    """``TopNgramRule.check`` as it was: every n counted."""
    return top_ngram_reference(text, ctx.gating.quality.max_top_ngram_char_fraction)


@contextlib.contextmanager
def reference_rules() -> Iterator[None]:
    """Patch the batched code paths back to per-document ones for the duration."""
    from mixassets.engine import langid, redaction, safety
    from mixassets.engine.pii import DETECTORS
    from mixassets.engine.rules import TextRule, language, pii, quality_prose

    def every_detector(texts: Any, region: str = "US") -> list[frozenset[str]]:
        return [frozenset(DETECTORS)] * len(texts)

    patches: list[tuple[Any, str, Any]] = [
        (language, "detect_languages", lambda texts: [langid.detect_language(t) for t in texts]),
        (pii, "possible_detectors", every_detector),
        (redaction, "possible_detectors", every_detector),
        (safety, "may_match", lambda texts: [True] * len(texts)),
        (safety, "possible_patterns", lambda texts: [(True,) * len(safety._PATTERNS)] * len(texts)),
        (quality_prose.TopNgramRule, "check", _reference_top_ngram),
    ]
    # The rules that judge from word and line counts shared between them, judged one document at a time instead.
    patches += [
        (cls, "evaluate", TextRule.evaluate)
        for cls in (
            quality_prose.LoremIpsumRule,
            quality_prose.MeanWordLengthRule,
            quality_prose.SymbolWordRatioRule,
            quality_prose.BulletLinesRule,
            quality_prose.EllipsisLinesRule,
            quality_prose.DuplicateLinesRule,
            quality_prose.TopNgramRule,
            quality_prose.TerminalPunctuationRule,
        )
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


def _corpus(kind: str, docs: int) -> tuple[Any, Any]:
    import pyarrow.parquet as pq

    if kind == "realistic":
        from benchmarks.gate_corpus import realistic_corpus, realistic_spec

        return realistic_corpus(docs, 0), realistic_spec()
    from benchmarks.bench_gate_dedupe import bench_source_spec
    from benchmarks.bench_gate_stream import SOURCE, generate

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.parquet"
        generate(docs, 0, path)
        return pq.read_table(path), bench_source_spec(SOURCE)


def main(argv: list[str] | None = None) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from mixassets.engine.gating import gate
    from mixassets.engine.langid import _get, _get_walk

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--corpus", choices=("realistic", "zipf"), default="realistic")
    ap.add_argument("--repeat", type=int, default=1, help="best of this many runs of each")
    args = ap.parse_args(argv)
    table, spec = _corpus(args.corpus, args.docs)
    mb = (pc.sum(pc.binary_length(table.column("text").cast(pa.binary()))).as_py() or 0) / 1e6
    _get(), _get_walk()  # model loading is not the gate's work
    results: dict[str, Any] = {}
    for name in ("reference", "batched"):
        best = float("inf")
        for _ in range(args.repeat):
            with reference_rules() if name == "reference" else contextlib.nullcontext():
                started = time.process_time()
                result = gate(table, spec)
                best = min(best, time.process_time() - started)
        results[name] = (best, result)
    same = all(
        getattr(results["reference"][1], t).equals(getattr(results["batched"][1], t))
        for t in ("accepted", "quarantine", "decisions")
    )
    info = machine_info()
    print(f"{args.corpus} corpus: {table.num_rows} documents, {mb:.2f} MB of text; {info}")
    for name, (cpu, _) in results.items():
        print(f"  {name:10s} {cpu:7.2f} CPU s  {mb / cpu:6.2f} MB/s/core")
    print(f"  speed-up {results['reference'][0] / results['batched'][0]:.2f}x; outputs identical: {same}")
    timings = sorted(((v, k[7:]) for k, v in results["batched"][1].counts.items() if k.startswith("time_s.")))[::-1]
    print("  batched, slowest rules (wall s): " + ", ".join(f"{k} {v:.2f}" for v, k in timings[:6]))


if __name__ == "__main__":
    main()
