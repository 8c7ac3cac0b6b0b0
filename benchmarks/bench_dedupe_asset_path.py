"""The dedupe asset's path on stored gated partitions: peak RSS, time, and the data versions of its four outputs,
for one checkout of mixtrain or two (to show a change leaves every output byte-identical).

Run: ``python benchmarks/bench_dedupe_asset_path.py --docs 20000 --code /path/to/checkout [--code /other]``.

What it does, per checkout, each step in a fresh interpreter (so peak RSS, VmHWM, is the step's own):

* ``prepare`` (once, shared): the synthetic corpus of :mod:`benchmarks.bench_gate_dedupe` (~2 KB documents, four
  sources, planted exact/near copies), written as one committed gated partition per source with ``TableWriter``
  (row ids set, as ingest sets them), plus a changed version of one source (some texts edited, some rows gone);
  and three source manifests: every source but one, every source, every source with the changed one.
* ``full``: what ``deduplicated_corpus`` does on every source with no earlier outputs: ``_gated_corpus``, then
  ``dedupe_incremental``, then the kept rows written with ``TableWriter(...).write_all(result.kept_batches())``,
  the clusters, sketches (with the gated versions) and verified pairs committed as the IO manager would.
* ``refresh``: the same body three times on one output root: all but one source (a full build), then all sources
  (the earlier outputs reused, the unchanged sources matched by version), then with the changed source.

The asset body is replayed with the asset module's own helpers (``_gated_corpus``, ``_previous``) rather than
through Dagster, so the figures are the engine's and the storage's, not the orchestrator's. Every output's data
version (the hash of its manifest, which lists each part's sha256) is printed: equal versions mean equal bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
OUTPUTS = ("deduplicated_corpus", "dedupe_clusters", "dedupe_index", "dedupe_pairs")
MANIFESTS = ("holdout", "all", "changed")


def _use(code: str) -> None:
    """Import mixtrain from ``code`` (a checkout), whatever checkout this script lives in."""
    sys.path.insert(0, str(Path(code).resolve()))


def _peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found (Linux only)")


def prepare(root: Path, docs: int, seed: int) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from upath import UPath

    from benchmarks.bench_gate_dedupe import SOURCES, make_corpus
    from mixtrain.schema import with_row_ids
    from mixtrain.tables import TableWriter

    table, _ = make_corpus(docs, seed)
    table = with_row_ids(table)
    rows = []

    def commit(name: str, sid: str, part: pa.Table) -> None:
        location = UPath(root / name / sid)
        stored = TableWriter(location, part.schema).write_all([part]).commit(location)
        rows.append(
            {"name": name, "source_id": sid, "gated_data_version": stored.version, "gated_path": f"{name}/{sid}"}
        )

    for sid in SOURCES:
        commit("gated_documents", sid, table.filter(pc.equal(table["source_id"], sid)))
    changed = table.filter(pc.equal(table["source_id"], SOURCES[0]))
    rng = np.random.default_rng(seed + 1)
    keep = rng.random(changed.num_rows) > 0.01
    texts = changed.column("text").to_pylist()
    edit = rng.random(changed.num_rows) < 0.05
    texts = [t + " Edited." if e else t for t, e in zip(texts, edit, strict=True)]
    changed = changed.set_column(changed.schema.get_field_index("text"), changed.schema.field("text"), pa.array(texts))
    commit("gated_documents_changed", SOURCES[0], changed.filter(pa.array(keep)))
    index = {(r["name"], r["source_id"]): r for r in rows}
    schema = pa.schema([("source_id", pa.string()), ("gated_data_version", pa.string()), ("gated_path", pa.string())])
    choice = {
        "holdout": [("gated_documents", s) for s in SOURCES[:-1]],
        "all": [("gated_documents", s) for s in SOURCES],
        "changed": [("gated_documents_changed", SOURCES[0])] + [("gated_documents", s) for s in SOURCES[1:]],
    }
    (root / "manifests").mkdir(parents=True, exist_ok=True)
    for name, keys in choice.items():
        picked = [{k: index[key][k] for k in schema.names} for key in keys]
        pq.write_table(pa.Table.from_pylist(picked, schema=schema), root / "manifests" / f"{name}.parquet")
    text_bytes = pc.sum(pc.binary_length(table["text"])).as_py()
    return {"documents": table.num_rows, "text_mb": round(text_bytes / 2**20, 1)}


def run_asset(gated_root: Path, out_root: Path, manifest: str) -> dict[str, Any]:
    """The body of ``deduplicated_corpus`` with the outputs committed under ``out_root``."""
    import pyarrow.parquet as pq
    from upath import UPath

    from benchmarks.labelled_neardup import NGRAM
    from mixassets.assets import curation
    from mixassets.engine.dedupe import (
        SKETCH_PARQUET_OPTIONS,
        DedupeConfig,
        dedupe_incremental,
        unchanged_sources,
        with_sketched_versions,
    )
    from mixtrain.tables import PendingTable, TableWriter

    rss_imports = _peak_rss_mb()
    config = DedupeConfig(threshold=0.8, ngram=NGRAM, source_threshold={"forum": 0.85}, max_per_cluster={"books": 2})
    trust = {"books": 1}
    source_manifest = pq.read_table(gated_root / "manifests" / f"{manifest}.parquet")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    corpus = curation._gated_corpus(str(gated_root), source_manifest)
    previous = curation._previous(UPath(out_root / "dedupe_index"))
    versions = curation.gated_versions(source_manifest)
    result = dedupe_incremental(
        corpus,
        previous_sketches=previous,
        previous_pairs=curation._previous(UPath(out_root / "dedupe_pairs")),
        config=config,
        trust=trust,
        unchanged_sources=(unchanged := unchanged_sources(previous, versions)),
    )
    sketches = with_sketched_versions(result.sketches, versions)
    schema = result.corpus.schema if hasattr(result, "corpus") else corpus.schema
    target = UPath(out_root / "deduplicated_corpus")
    stored = {"deduplicated_corpus": TableWriter(target, schema).write_all(result.kept_batches()).commit(target)}
    pending = {
        "dedupe_clusters": PendingTable.of(result.clusters),
        "dedupe_index": PendingTable.of(sketches, options=SKETCH_PARQUET_OPTIONS),
        "dedupe_pairs": PendingTable.of(result.verified_pairs),
    }
    for name, table in pending.items():
        stored[name] = table.commit(UPath(out_root / name))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "manifest": manifest,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_after_imports_mb": round(rss_imports, 1),
        "versions": {name: stored[name].version for name in OUTPUTS},
        "metadata": {**result.metadata(), "sources_unchanged": len(unchanged)},
        "note": result.stats.note,
    }


def _child(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run([sys.executable, str(HERE), *args], capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{args}: exit {done.returncode}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _compare(work: Path, step: str, a: dict[str, Any], b: dict[str, Any]) -> str:
    """Equal data versions, else whether the tables read back are equal (rows, order, schema and metadata): the
    parquet writer may encode the same rows differently when they come in other chunks (where a column falls
    back from dictionary to plain encoding depends on where its chunks start)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    said = []
    for name in OUTPUTS:
        if a["versions"][name] == b["versions"][name]:
            said.append(f"{name} identical bytes")
            continue
        tables = []
        for k in (0, 1):
            folder = work / f"out-{k}-{step}-{a['manifest']}" / name
            listed = json.loads((folder / "_manifest.json").read_bytes())["parts"]
            tables.append(pa.concat_tables([pq.read_table(folder / p["name"]) for p in listed]))
        same = tables[0].equals(tables[1]) and tables[0].schema.metadata == tables[1].schema.metadata
        said.append(f"{name} {'identical rows (other encoding)' if same else 'ROWS DIFFER'}")
    meta = "metadata identical" if a["metadata"] == b["metadata"] and a["note"] == b["note"] else "METADATA DIFFERS"
    return ", ".join([*said, meta])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--code", action="append", required=True, help="a mixtrain checkout (repeat to compare)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_dedupe_asset_path"))
    ap.add_argument("--steps", default="full,refresh")
    ap.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _use(args.code[0])
        what = args.child[0]
        out = prepare(Path(args.child[1]), args.docs, args.seed) if what == "prepare" else None
        if what == "run":
            out = run_asset(Path(args.child[1]), Path(args.child[2]), args.child[3])
        print(json.dumps(out))
        return
    work = args.work / f"docs{args.docs}"
    gated = work / "gated"
    if not (gated / "manifests" / "changed.parquet").exists():
        print("prepare:", _child(["--docs", str(args.docs), "--code", args.code[0], "--child", "prepare", str(gated)]))
    steps = args.steps.split(",")
    report: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for k, code in enumerate(args.code):
        runs: dict[str, list[dict[str, Any]]] = {}
        for step, manifests in (("full", ["all"]), ("refresh", list(MANIFESTS))):
            if step not in steps:
                continue
            out_root = work / f"out-{k}-{step}"
            subprocess.run(["rm", "-rf", str(out_root)], check=True)
            runs[step] = []
            for manifest in manifests:
                got = _child(["--code", code, "--child", "run", str(gated), str(out_root), manifest])
                runs[step].append(got)
                snapshot = work / f"out-{k}-{step}-{manifest}"  # what this run wrote, for the comparison
                subprocess.run(["rm", "-rf", str(snapshot)], check=True)
                subprocess.run(["cp", "-r", str(out_root), str(snapshot)], check=True)
                print(
                    f"{code} {step}/{manifest}: {got['seconds']} s ({got['cpu_seconds']} s CPU), peak RSS "
                    f"{got['peak_rss_mb']} MB (after imports {got['rss_after_imports_mb']} MB); "
                    f"kept {got['metadata']['documents_kept']}/{got['metadata']['documents_in']}, "
                    f"sketched {got['metadata']['sketched']}, pairs verified {got['metadata']['pairs_verified']}, "
                    f"reused {got['metadata']['pairs_reused']}",
                    flush=True,
                )
        report[code] = runs
    codes = list(report)
    for code in codes[1:]:
        for step, runs in report[code].items():
            for a, b in zip(report[codes[0]][step], runs, strict=True):
                print(f"{step}/{a['manifest']}: {_compare(work, step, a, b)}")
    (work / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
