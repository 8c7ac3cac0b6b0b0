"""Compare two storage roots of the same project built by two code versions: exit 0 only when every output matters
the same.

Run: ``python benchmarks/compare_storage.py A B [--json OUT] [--differences-only]`` where A and B are storage roots
(``<project>/storage``). It needs only pyarrow, and imports nothing from the project, so it judges any two versions.

Every file under either root is paired by its path relative to the root (names starting with ``.`` are temporary
or staging files and are skipped):

* **parquet** (``*.parquet``): row count, schema and content (``pyarrow.Table.equals`` after reading) and whether
  the file bytes are identical.
* **JSON** (``*.json``): the parsed content, with the volatile fields below removed, and whether the bytes are
  identical.
* **anything else** (model weights, tokenizer files, adapter READMEs): the bytes (sha256).

A file is *identical* (same bytes), *equal* (same content, other bytes: parquet written with other options, JSON
with other key order or whitespace), *equal, volatile fields aside* (same content once the ignore list below is
applied), *DIFFERENT*, or present on one side only. Only the last two make the exit status non-zero.

What is ignored, and why (nothing else is):

* ``IGNORED_KEYS`` anywhere in JSON: facts about the execution, not consequences of the inputs: wall times
  and throughput (``wall_time_s``, ``tokens_per_s``, ``session_wall_time_s``) and release timestamps
  (``released_at``).
* ``RUN_MANIFEST_SECTIONS`` of a run manifest (a JSON object with a ``config_fingerprint``): ``hardware``,
  ``packages``, ``git`` and ``execution``, the volatile part of a manifest (``training_assets.engine.run_manifest``
  keeps them out of its stable fingerprint for the same reason).
* ``VOLATILE_COLUMNS`` of tables: ``latency_s`` (per-item generation wall time in the eval reports).
* The two roots themselves: in every string (JSON values, parquet string columns) the storage root and the project
  directory above it are replaced by ``<storage>`` and ``<project>``, since two builds live in two directories.

Then it reports, side by side, what the refactor must keep: the mixture manifest id(s), the dedupe clusters table,
the eval report numbers (eval report and comparison tables, per-adapter reports and comparisons) and the sha256 of
every model's output weights as its run manifest records them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mixtrain.identity import file_sha256

IGNORED_KEYS = frozenset({"wall_time_s", "tokens_per_s", "session_wall_time_s", "released_at"})
RUN_MANIFEST_SECTIONS = frozenset({"hardware", "packages", "git", "execution"})
RUN_MANIFEST_MARK = "config_fingerprint"
VOLATILE_COLUMNS = frozenset({"latency_s"})

IDENTICAL = "identical"
EQUAL = "equal"
EQUAL_VOLATILE = "equal, volatile fields aside"
DIFFERENT = "DIFFERENT"
ONLY_A = "only in A"
ONLY_B = "only in B"
FAILING = (DIFFERENT, ONLY_A, ONLY_B)

MIXTURE_MANIFEST = "mixture_manifest.json"
MIXTURE_HISTORY = "mixture_manifest_history"
DEDUPE_CLUSTERS = "dedupe_clusters.parquet"
EVAL_TABLES = ("eval_report", "eval_comparison", "task_adapter_report", "task_adapter_comparison")
HISTORY_DIRS = ("model_history", MIXTURE_HISTORY)


@dataclass
class FileResult:
    path: str
    kind: str  # parquet | json | bytes
    status: str
    bytes_identical: bool | None = None
    rows: tuple[int | None, int | None] | None = None
    schema_equal: bool | None = None
    note: str = ""


@dataclass
class Report:
    a: str
    b: str
    files: list[FileResult] = field(default_factory=list)
    highlights: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(f.status in FAILING for f in self.files)


# ----------------------------------------------------------------------------------------------- roots


class Roots:
    """Replaces a build's storage root and project directory by placeholders in strings."""

    def __init__(self, storage: Path):
        pairs = []
        for path in dict.fromkeys([storage, storage.resolve()]):
            pairs += [(str(path), "<storage>"), (str(path.parent), "<project>")]
        self.pairs = sorted(set(pairs), key=lambda p: -len(p[0]))  # longest first: the storage root before its parent

    def text(self, value: str) -> str:
        for prefix, placeholder in self.pairs:
            value = value.replace(prefix, placeholder)
        return value

    def column(self, column: pa.ChunkedArray) -> pa.ChunkedArray:
        for prefix, placeholder in self.pairs:
            column = pc.replace_substring(column, prefix, placeholder)
        return column


def _files(root: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            found[rel.as_posix()] = path
    return found


# --------------------------------------------------------------------------------------------- parquet


def _normalized_table(table: pa.Table, roots: Roots) -> pa.Table:
    table = table.drop_columns([c for c in table.column_names if c in VOLATILE_COLUMNS])
    for i, f in enumerate(table.schema):
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            table = table.set_column(i, f, roots.column(table.column(i)))
    return table


def _first_difference(a: pa.Table, b: pa.Table) -> str:
    if a.num_rows != b.num_rows:
        return f"rows {a.num_rows} vs {b.num_rows}"
    if not a.schema.equals(b.schema):
        only_a = sorted(set(a.column_names) - set(b.column_names))
        only_b = sorted(set(b.column_names) - set(a.column_names))
        if only_a or only_b:
            return f"columns only in A {only_a}, only in B {only_b}"
        return "column types or order differ"
    columns = [name for name in a.column_names if not a.column(name).equals(b.column(name))]
    shown = []
    for name in columns[:3]:
        differs = [i for i, (x, y) in enumerate(zip(a[name].to_pylist(), b[name].to_pylist(), strict=True)) if x != y]
        shown.append(f"{name} ({len(differs)} rows, first row {differs[0] if differs else '?'})")
    return "differs in " + ", ".join(shown) + (f" and {len(columns) - 3} more columns" if len(columns) > 3 else "")


def compare_parquet(rel: str, a: Path, b: Path, roots: tuple[Roots, Roots]) -> FileResult:
    same_bytes = file_sha256(a) == file_sha256(b)
    ta, tb = pq.read_table(a), pq.read_table(b)
    result = FileResult(rel, "parquet", DIFFERENT, same_bytes, (ta.num_rows, tb.num_rows))
    result.schema_equal = ta.schema.equals(tb.schema)
    if same_bytes:
        result.status = IDENTICAL
    elif ta.equals(tb):
        result.status = EQUAL
    else:
        na, nb = _normalized_table(ta, roots[0]), _normalized_table(tb, roots[1])
        if na.equals(nb):
            result.status = EQUAL_VOLATILE
            ignored = sorted(VOLATILE_COLUMNS & set(ta.column_names))
            result.note = "ignoring " + (", ".join(ignored) if ignored else "root paths")
        else:
            result.note = _first_difference(na, nb)
    return result


# ------------------------------------------------------------------------------------------------ json


def normalized_json(value: Any, roots: Roots) -> Any:
    """``value`` without the ignored fields, with the roots replaced by placeholders."""
    if isinstance(value, dict):
        drop = IGNORED_KEYS | (RUN_MANIFEST_SECTIONS if RUN_MANIFEST_MARK in value else frozenset())
        return {roots.text(k): normalized_json(v, roots) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [normalized_json(v, roots) for v in value]
    if isinstance(value, str):
        return roots.text(value)
    return value


def _json_difference(a: Any, b: Any, where: str = "") -> str:
    if type(a) is not type(b):
        return f"{where or '/'}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{where}/{key}: only in {'A' if key in a else 'B'}"
            if a[key] != b[key]:
                return _json_difference(a[key], b[key], f"{where}/{key}")
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _json_difference(x, y, f"{where}[{i}]")
    return f"{where or '/'}: {json.dumps(a)[:60]} vs {json.dumps(b)[:60]}"


def compare_json(rel: str, a: Path, b: Path, roots: tuple[Roots, Roots]) -> FileResult:
    same_bytes = a.read_bytes() == b.read_bytes()
    ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
    result = FileResult(rel, "json", DIFFERENT, same_bytes)
    if same_bytes:
        result.status = IDENTICAL
    elif ja == jb:
        result.status = EQUAL
    else:
        na, nb = normalized_json(ja, roots[0]), normalized_json(jb, roots[1])
        if na == nb:
            result.status = EQUAL_VOLATILE
        else:
            result.note = _json_difference(na, nb)
    return result


def compare_bytes(rel: str, a: Path, b: Path, roots: tuple[Roots, Roots]) -> FileResult:
    same = file_sha256(a) == file_sha256(b)
    return FileResult(rel, "bytes", IDENTICAL if same else DIFFERENT, same)


COMPARERS: dict[str, Callable[[str, Path, Path, tuple[Roots, Roots]], FileResult]] = {
    ".parquet": compare_parquet,
    ".json": compare_json,
}


# ---------------------------------------------------------------------------------------------- report


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def model_weights(root: Path) -> dict[str, str]:
    """Current model records (``<asset>.json``, ``<asset>/<partition>.json``; not the histories or the files inside
    model directories): the output weights sha256 their run manifests record (the base model's own hash for a
    record without one), by record path."""
    found = {}
    for rel, path in _files(root).items():
        parts = rel.split("/")
        if not rel.endswith(".json") or len(parts) > 2 or parts[0] in HISTORY_DIRS:
            continue
        record = _load_json(path)
        if not isinstance(record, dict):
            continue
        run = record.get("run_manifest")
        if isinstance(run, dict) and "output_weights_sha256" in run:
            found[rel] = run["output_weights_sha256"]
        elif "weights_sha256" in record:
            found[rel] = record["weights_sha256"]
    return found


def mixture_ids(root: Path) -> dict[str, Any]:
    manifest = _load_json(root / MIXTURE_MANIFEST) or {}
    history = (
        sorted(p.stem for p in (root / MIXTURE_HISTORY).glob("*.json")) if (root / MIXTURE_HISTORY).is_dir() else []
    )
    return {
        "manifest_id": manifest.get("manifest_id"),
        "doc_ids_digest": manifest.get("doc_ids_digest"),
        "history": history,
    }


def highlights(report: Report, a: Path, b: Path) -> dict[str, Any]:
    by_path = {f.path: f for f in report.files}
    eval_files = [f for f in report.files if f.path.split("/")[0].removesuffix(".parquet") in EVAL_TABLES]
    wa, wb = model_weights(a), model_weights(b)
    return {
        "mixture manifest id": {"A": mixture_ids(a), "B": mixture_ids(b), "equal": mixture_ids(a) == mixture_ids(b)},
        "dedupe clusters": asdict(by_path[DEDUPE_CLUSTERS]) if DEDUPE_CLUSTERS in by_path else None,
        "eval report numbers": {f.path: f.status for f in eval_files},
        "model weights sha256": {
            rel: {"A": wa.get(rel), "B": wb.get(rel), "equal": wa.get(rel) == wb.get(rel)}
            for rel in sorted(set(wa) | set(wb))
        },
        "only in A": [f.path for f in report.files if f.status == ONLY_A],
        "only in B": [f.path for f in report.files if f.status == ONLY_B],
    }


def compare_roots(a: Path, b: Path) -> Report:
    report = Report(str(a), str(b))
    fa, fb = _files(a), _files(b)
    roots = (Roots(a), Roots(b))
    for rel in sorted(set(fa) | set(fb)):
        if rel not in fb:
            report.files.append(FileResult(rel, Path(rel).suffix.lstrip(".") or "bytes", ONLY_A))
        elif rel not in fa:
            report.files.append(FileResult(rel, Path(rel).suffix.lstrip(".") or "bytes", ONLY_B))
        else:
            compare = COMPARERS.get(Path(rel).suffix, compare_bytes)
            try:
                report.files.append(compare(rel, fa[rel], fb[rel], roots))
            except (OSError, ValueError, pa.ArrowException) as exc:
                report.files.append(FileResult(rel, "?", DIFFERENT, note=f"unreadable: {exc}"))
    report.highlights = highlights(report, a, b)
    return report


def _yes(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def render(report: Report, differences_only: bool = False) -> str:
    lines = [f"A: {report.a}", f"B: {report.b}", ""]
    header = ("file", "kind", "rows A/B", "schema", "content", "bytes same", "note")
    rows = [header]
    for f in report.files:
        if differences_only and f.status in (IDENTICAL, EQUAL):
            continue
        rows_ab = "" if f.rows is None else f"{f.rows[0]}/{f.rows[1]}"
        rows.append((f.path, f.kind, rows_ab, _yes(f.schema_equal), f.status, _yes(f.bytes_identical), f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    h = report.highlights
    mix = h["mixture manifest id"]
    lines += ["", "mixture manifest id", f"  A: {mix['A']}", f"  B: {mix['B']}", f"  equal: {_yes(mix['equal'])}"]
    clusters = h["dedupe clusters"]
    lines += [
        "",
        "dedupe clusters: " + ("missing" if clusters is None else f"{clusters['status']} (rows {clusters['rows']})"),
    ]
    lines += ["", "eval report numbers"] + [f"  {p}: {s}" for p, s in h["eval report numbers"].items()]
    lines += ["", "model weights sha256 (run manifests' output_weights_sha256)"]
    for rel, w in h["model weights sha256"].items():
        shown = w["A"] if w["equal"] else f"A {w['A']}  B {w['B']}"
        lines.append(f"  {rel}: {'same' if w['equal'] else 'DIFFERENT'}  {shown}")
    lines += ["", f"only in A: {len(h['only in A'])}", *[f"  {p}" for p in h["only in A"]]]
    lines += [f"only in B: {len(h['only in B'])}", *[f"  {p}" for p in h["only in B"]]]
    counts: dict[str, int] = {}
    for f in report.files:
        counts[f.status] = counts.get(f.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    lines += [
        "",
        f"{len(report.files)} files: {summary}",
        "RESULT: " + ("same outputs" if report.ok else "OUTPUTS DIFFER"),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="storage root built by the first code version")
    parser.add_argument("b", type=Path, help="storage root built by the second code version")
    parser.add_argument("--json", type=Path, help="also write the full comparison as JSON here")
    parser.add_argument("--differences-only", action="store_true", help="list only files that are not equal")
    args = parser.parse_args(argv)
    for root in (args.a, args.b):
        if not root.is_dir():
            parser.error(f"not a directory: {root}")
    report = compare_roots(args.a, args.b)
    print(render(report, args.differences_only))
    if args.json:
        args.json.write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=1, default=str))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
