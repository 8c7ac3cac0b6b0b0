"""Gate throughput of this checkout against another revision, on the same input, in one run.

Run: ``python benchmarks/bench_gate_ab.py --base REV [--docs 10000] [--repeat 3] [--corpus realistic|zipf]``

``REV`` is exported with ``git archive`` into a temporary directory. Each side gates the same corpus in its own
child process (so neither imports the other's modules), the sides alternating ``--repeat`` times so that a busy
machine slows both alike; each child reports the process CPU seconds of ``gate()`` alone (the language model is
loaded first) and its peak RSS, and prints a digest of the three output tables so the sides can be compared.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import hashlib, json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import pyarrow as pa, pyarrow.compute as pc
from benchmarks.bench_gate_rules import _corpus
from mixassets.engine.gating import gate
from mixassets.engine.langid import _get, _get_walk
table, spec = _corpus(sys.argv[2], int(sys.argv[3]))
mb = (pc.sum(pc.binary_length(table.column("text").cast(pa.binary()))).as_py() or 0) / 1e6
_get(), _get_walk()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.process_time()
result = gate(table, spec)
cpu = time.process_time() - started
digest = hashlib.sha256()
for name in ("accepted", "quarantine", "decisions"):
    digest.update(repr(getattr(result, name).to_pydict()).encode())
times = {k[7:]: v for k, v in result.counts.items() if k.startswith("time_s.")}
print(json.dumps({"mb": mb, "cpu": cpu, "rss_before_mb": before / 1024,
                  "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "digest": digest.hexdigest(), "times": times}))
"""


def _run(tree: Path, corpus: str, docs: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tree), corpus, str(docs)],
        cwd=tree, check=True, capture_output=True, text=True, env={"PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare with")
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus", choices=("realistic", "zipf"), default="realistic")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        archive = subprocess.run(["git", "archive", args.base], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        bench = "benchmarks/bench_gate_rules.py"
        (base / bench).write_bytes((ROOT / bench).read_bytes())
        runs: dict[str, list[dict]] = {"base": [], "head": []}
        for _ in range(args.repeat):
            runs["base"].append(_run(base, args.corpus, args.docs))
            runs["head"].append(_run(ROOT, args.corpus, args.docs))
    mb = runs["base"][0]["mb"]
    print(f"{args.corpus} corpus, {args.docs} documents, {mb:.2f} MB of text; base {args.base}, best of {args.repeat}")
    best = {}
    for side, rs in runs.items():
        r = min(rs, key=lambda r: r["cpu"])
        best[side] = r
        peak = max(x["rss_peak_mb"] - x["rss_before_mb"] for x in rs)
        cpus = " ".join(f"{x['cpu']:.2f}" for x in rs)
        print(f"  {side}: {mb / r['cpu']:5.2f} MB/s/core (CPU s {cpus}); peak RSS growth in gate() {peak:.0f} MB")
        slow = sorted(r["times"].items(), key=lambda kv: -kv[1])[:8]
        print("    slowest rules (wall s): " + ", ".join(f"{k} {v:.2f}" for k, v in slow))
    same = len({r["digest"] for rs in runs.values() for r in rs}) == 1
    print(f"  speed-up {best['base']['cpu'] / best['head']['cpu']:.2f}x; outputs identical: {same}")


if __name__ == "__main__":
    main()
