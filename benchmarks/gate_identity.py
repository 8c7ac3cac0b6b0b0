"""Snapshot the gate's outputs on fixed inputs, or compare them with a snapshot taken earlier.

Run ``python benchmarks/gate_identity.py save DIR`` before a change to the gate and
``python benchmarks/gate_identity.py compare DIR`` after it: every case's accepted, quarantine and decision
tables must be ``Table.equals`` to the saved ones, and its counts equal but for the ``time_s.*`` timings.

The cases: the realistic prose corpus of :mod:`benchmarks.gate_corpus` through ``gate()`` and through
``gate_stream`` in batches, the same corpus judged as a code source, and (with ``--demo PROJECT``, a directory
``examples/demo/generate.py`` wrote) every demo source read with ``read_source``, without its moderation model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TABLES = ("accepted", "quarantine", "decisions")


class _ListSink:
    def __init__(self) -> None:
        self.parts: dict[str, list[Any]] = {n: [] for n in TABLES}

    def write(self, accepted: Any, quarantine: Any, decisions: Any) -> None:
        for name, table in zip(TABLES, (accepted, quarantine, decisions), strict=True):
            self.parts[name].append(table)


def _cases(docs: int, demo: Path | None) -> Iterator[tuple[str, Any]]:
    """(name, thunk returning (tables, counts, text bytes, cpu seconds))."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import yaml

    from benchmarks.gate_corpus import realistic_corpus, realistic_spec
    from mixassets.engine.gating import gate
    from mixassets.engine.gating_stream import gate_stream
    from mixassets.engine.readers import read_source
    from mixtrain.config.data import SourceSpec
    from mixtrain.schema import DECISION_SCHEMA, DOCUMENT_SCHEMA, QUARANTINE_SCHEMA

    corpus = realistic_corpus(docs, 0)
    spec = realistic_spec()
    code_spec = spec.model_copy(update={"domain": "code"})

    def text_bytes(table: Any) -> int:
        return int(pc.sum(pc.binary_length(table.column("text").cast(pa.binary()))).as_py() or 0)

    def whole(table: Any, s: Any, tags: frozenset[str] = frozenset()) -> Any:
        def run() -> Any:
            started = time.process_time()
            r = gate(table, s, forbidden_tags=tags)
            cpu = time.process_time() - started
            return {"accepted": r.accepted, "quarantine": r.quarantine, "decisions": r.decisions}, r.counts, cpu

        return run

    def stream(table: Any, s: Any, batch: int) -> Any:
        def run() -> Any:
            sink = _ListSink()
            started = time.process_time()
            counts = gate_stream(lambda: table.to_batches(batch), s, sink=sink)
            cpu = time.process_time() - started
            schemas = (DOCUMENT_SCHEMA, QUARANTINE_SCHEMA, DECISION_SCHEMA)
            tables = {
                n: pa.concat_tables([sc.empty_table(), *sink.parts[n]]).combine_chunks()
                for n, sc in zip(TABLES, schemas, strict=True)
            }
            return tables, counts, cpu

        return run

    yield "prose_whole", (text_bytes(corpus), whole(corpus, spec))
    yield "prose_stream", (text_bytes(corpus), stream(corpus, spec, 1_000))
    yield "code_whole", (text_bytes(corpus), whole(corpus, code_spec))
    if demo is None:
        return
    forbidden = frozenset(yaml.safe_load((demo / "mixtrain.yaml").read_text()).get("forbidden_license_tags", []))
    for path in sorted((demo / "sources").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        raw.get("gating", {}).get("safety", {}).pop("classifier_path", None)
        s = SourceSpec.model_validate(raw)
        files = sorted(str(p) for p in demo.glob(s.path))
        docs_table, _ = read_source(s, files, base=str(demo), capture_time=datetime(2024, 1, 1, tzinfo=timezone.utc))
        yield f"demo_{s.id}", (text_bytes(docs_table), whole(docs_table, s, forbidden))


def _plain_counts(counts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in counts.items() if not k.startswith("time_s.")}


def main(argv: list[str] | None = None) -> int:
    import pyarrow.parquet as pq

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("save", "compare"))
    ap.add_argument("dir", type=Path)
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--demo", type=Path, default=None)
    ap.add_argument("--only", nargs="*", default=None, help="case names to run (default: all)")
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for name, (nbytes, run) in _cases(args.docs, args.demo):
        if args.only and name not in args.only:
            continue
        tables, counts, cpu = run()
        rate = nbytes / 1e6 / cpu if cpu else float("inf")
        line = f"{name:28s} {nbytes / 1e6:7.2f} MB  cpu {cpu:7.2f} s  {rate:6.2f} MB/s/core"
        if args.mode == "save":
            for t, table in tables.items():
                pq.write_table(table, args.dir / f"{name}.{t}.parquet")
            (args.dir / f"{name}.counts.json").write_text(json.dumps(_plain_counts(counts), indent=1))
            print(line, "saved", flush=True)
            continue
        problems = []
        for t, table in tables.items():
            saved = pq.read_table(args.dir / f"{name}.{t}.parquet")
            if not table.equals(saved):
                problems.append(f"{t} differs ({table.num_rows} rows vs {saved.num_rows} saved)")
        saved_counts = json.loads((args.dir / f"{name}.counts.json").read_text())
        if list(json.loads(json.dumps(_plain_counts(counts))).items()) != list(saved_counts.items()):  # order too
            problems.append("counts differ")
        failures += bool(problems)
        print(line, "IDENTICAL" if not problems else "DIFFERS: " + "; ".join(problems), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
