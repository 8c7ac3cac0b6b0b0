"""Cost and false-positive rate of the secret detectors, and the speed of PII overlap resolution, against a
baseline revision of ``mixassets/engine/pii.py`` loaded in the same process (same machine, same run).

Run: ``python benchmarks/bench_secrets.py [--base main] [--repeat 3] [--out benchmarks/results]``

The corpus is ordinary text that holds next to no secrets: every ``.py`` file of this interpreter's standard
library (its tests included, which are full of tokens, hashes and example URLs) plus the help topics of
``pydoc_data.topics``. For each revision it reports documents per CPU-second of ``find_pii`` with every
detector, of the ``secret`` detector alone, and of the gate's way (``possible_detectors`` over the column, then
``find_pii`` with what it leaves), and how many documents get a ``SECRET`` hit. The resolver part times both
revisions' ``_resolve`` on one text of 16,000 IPv4 addresses, the case that made the old one quadratic.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from benchmarks._harness import machine_info, write_report  # noqa: E402

PII_PATH = "mixassets/engine/pii.py"


def load_revision(rev: str, tmp: Path) -> ModuleType:
    """``pii.py`` as it is at ``rev``, imported under its own name so both revisions live side by side."""
    source = subprocess.run(["git", "show", f"{rev}:{PII_PATH}"], cwd=ROOT, check=True, capture_output=True).stdout
    path = tmp / f"pii_{rev.replace('/', '_')}.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stdlib_corpus() -> list[str]:
    """The standard library's Python files and pydoc's topic texts, in a fixed order."""
    from pydoc_data.topics import topics

    lib = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(lib.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            docs.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    docs.extend(topics[k] for k in sorted(topics))
    return docs


def cpu_rate(fn: Callable[[], Any], n: int, repeat: int) -> tuple[float, Any]:
    """Best-of-``repeat`` documents per CPU-second, and the last result."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        t0 = time.process_time()
        result = fn()
        best = min(best, time.process_time() - t0)
    return n / best, result


def measure(pii: ModuleType, docs: list[str], repeat: int) -> dict[str, Any]:
    import pyarrow as pa

    column = pa.array(docs)
    full_rate, full = cpu_rate(lambda: [pii.find_pii(t) for t in docs], len(docs), repeat)
    secret_rate, _ = cpu_rate(lambda: [pii.find_pii(t, detectors={"secret"}) for t in docs], len(docs), repeat)

    def gated() -> list[list[Any]]:
        possible = pii.possible_detectors(column)
        return [pii.find_pii(t, detectors=d) if d else [] for t, d in zip(docs, possible, strict=True)]

    gated_rate, _ = cpu_rate(gated, len(docs), repeat)
    secret_docs = sum(1 for hits in full if any(h.type == pii.SECRET for h in hits))
    return {
        "docs_per_cpu_s_all_detectors": round(full_rate, 1),
        "docs_per_cpu_s_secret_only": round(secret_rate, 1),
        "docs_per_cpu_s_gate_prefiltered": round(gated_rate, 1),
        "secret_hits": sum(1 for hits in full for h in hits if h.type == pii.SECRET),
        "docs_with_secret_hit": secret_docs,
        "secret_doc_rate": round(secret_docs / len(docs), 5),
    }


def resolve_time(pii: ModuleType, n: int) -> float:
    text = " ".join(f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(n))
    hits = pii._ipv4(text)
    t0 = time.process_time()
    pii._resolve(hits)
    return round(time.process_time() - t0, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="git revision of the baseline pii.py")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--resolve-hits", type=int, default=16_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    import mixassets.engine.pii as new

    docs = stdlib_corpus()
    with tempfile.TemporaryDirectory() as tmp:
        base = load_revision(args.base, Path(tmp))
        result: dict[str, Any] = {
            "machine": machine_info(),
            "corpus": {"docs": len(docs), "chars": sum(map(len, docs))},
            "base_revision": args.base,
            "baseline": measure(base, docs, args.repeat),
            "new": measure(new, docs, args.repeat),
            f"resolve_{args.resolve_hits}_ipv4_cpu_s": {
                "baseline": resolve_time(base, args.resolve_hits),
                "new": resolve_time(new, args.resolve_hits),
            },
        }
    for key in ("baseline", "new"):
        print(key, result[key])
    print("resolve", result[f"resolve_{args.resolve_hits}_ipv4_cpu_s"])
    write_report(args.out, "bench_secrets", result)


if __name__ == "__main__":
    main()
