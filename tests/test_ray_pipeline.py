"""The data half of the tiny project's pipeline on both backends: the same decisions, row for row.

One project copy runs locally and incrementally (first without one source, then with it, so dedupe reuses the
first run's sketches and pairs); the other runs on a local Ray (2 CPUs, explicit partition counts) in one full
build. Every data output must be identical: kept and dropped ids, the clusters with keeper, matched document and
Jaccard, the contamination findings, the screened corpus, the mixture and its manifest (its id included: it names
shards relative to each copy's storage root). A third copy, with the records of every line-based source file in
another order, runs on Ray too: its documents get other ids (a locator is ``file:line``), so its decisions are
compared by content. Marked ``ray``: ``make test-ray`` runs it.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from mixtrain.tables import open_table
from tests.conftest import build_tiny_project
from tests.pipeline_session import run_data_stages

pytestmark = pytest.mark.ray

TABLES = ("deduplicated_corpus", "dedupe_clusters", "dedupe_pairs", "contamination_findings", "screened_corpus",
          "contaminated_documents", "contamination_report", "leaked_items", "mixture", "heldout_text")  # fmt: skip
LATE_SOURCE = "code_paste"  # in no mixture weight or adapter: the config stays valid without it


def _run(root: Path, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    monkeypatch.setenv("MIXTRAIN_COMPUTE_BACKEND", backend)
    report = run_data_stages(root)
    assert "mixture" in {k for k, _ in report.materialized}


def _table(root: Path, name: str) -> pa.Table:
    return open_table(root / "storage" / name).read()


def _manifest(root: Path) -> dict:
    manifest = json.loads((root / "storage" / "mixture_manifest.json").read_text())
    for shard in manifest["shards"]:  # named under each copy's own storage root, so the two copies agree
        assert (root / "storage" / shard["path"]).is_file()
    manifest.pop("previous_manifest_id", None)  # the local copy built a mixture before, the Ray copy did not
    return manifest


@pytest.fixture(scope="module", autouse=True)
def stop_ray_afterwards():
    """The assets start a local Ray through the compute resource and leave it up for the process (steps reuse
    it); the next test module expects to start its own."""
    yield
    import sys

    if "ray" in sys.modules:
        sys.modules["ray"].shutdown()


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, Path]:
    base = build_tiny_project(tmp_path_factory.mktemp("ray-pipeline") / "local", tiny_model_dir)
    other = base.parent / "ray"
    shutil.copytree(base, other)
    return base, other


def test_both_backends_make_the_same_data_outputs(copies, monkeypatch) -> None:
    local, ray = copies
    late = local / "sources" / f"{LATE_SOURCE}.yaml"
    parked = local / f"{LATE_SOURCE}.yaml.parked"
    late.rename(parked)
    _run(local, monkeypatch, "local")
    parked.rename(late)
    _run(local, monkeypatch, "local")  # incremental: the late source is sketched and queried alone
    dedupe_meta = json.loads((local / "storage" / "dedupe_index" / "_manifest.json").read_text())
    assert dedupe_meta["rows"] > 0
    _run(ray, monkeypatch, "ray")  # one full build on Ray
    for name in TABLES:
        a, b = _table(local, name), _table(ray, name)
        assert a.schema.equals(b.schema), name
        assert a.equals(b), f"{name}: {a.num_rows} rows locally, {b.num_rows} on Ray"
    clusters = _table(ray, "dedupe_clusters")
    assert clusters.num_rows > 0 and {"kept_doc_id", "exact_jaccard"} <= set(clusters.column_names)
    assert _table(ray, "contamination_findings").num_rows > 0
    assert _manifest(local) == _manifest(ray)


def _shuffle_sources(root: Path, seed: int) -> int:
    """Permute the lines of every jsonl file a source reads; returns how many files changed order."""
    rng, changed = random.Random(seed), 0
    for spec_file in sorted((root / "sources").glob("*.yaml")):
        spec = yaml.safe_load(spec_file.read_text())
        path = root / spec["path"]
        if spec.get("format") != "jsonl" or not path.is_file():
            continue
        lines = path.read_bytes().splitlines(keepends=True)
        lines = [ln if ln.endswith(b"\n") else ln + b"\n" for ln in lines]
        order = list(range(len(lines)))
        rng.shuffle(order)
        if len(lines) > 1 and order != sorted(order):
            changed += 1
        path.write_bytes(b"".join(lines[i] for i in order))
    return changed


def _digest(text: str | None) -> str:
    return hashlib.sha256((text or "").encode()).hexdigest()[:16]


def _by_content(root: Path) -> dict[str, object]:
    """Each data decision keyed by what it is about (source and text digest) instead of by document id."""
    text_of: dict[str, str] = {}
    for part in sorted(p for p in (root / "storage" / "gated_documents").iterdir() if p.is_dir()):  # per source
        docs = open_table(part).read(columns=["doc_id", "text"])
        digests = map(_digest, docs.column("text").to_pylist())
        text_of.update(zip(docs.column("doc_id").to_pylist(), digests, strict=True))

    def texts(name: str) -> list[tuple[str, str]]:
        t = _table(root, name)
        return sorted(zip(t.column("source_id").to_pylist(), map(_digest, t.column("text").to_pylist()), strict=True))

    clusters = _table(root, "dedupe_clusters").to_pylist()
    findings = _table(root, "contamination_findings").to_pylist()
    return {
        "kept": texts("deduplicated_corpus"),
        "screened": texts("screened_corpus"),
        "clusters": sorted(
            (text_of[c["doc_id"]], text_of[c["kept_doc_id"]], c["match_type"], round(c["exact_jaccard"], 12))
            for c in clusters
        ),
        "findings": sorted(
            (text_of[f["doc_id"]], *(str(v) for k, v in sorted(f.items()) if k not in {"doc_id", "row_id"}))
            for f in findings
        ),
    }


def test_decisions_do_not_depend_on_the_order_of_the_input(
    copies, tmp_path_factory, tiny_model_dir, monkeypatch
) -> None:
    """Dedupe keepers, clusters with their Jaccard and contamination findings are the same documents when every
    source lists its records in another order and Ray runs the stages (block order arbitrary as well)."""
    local, _ = copies
    if not (local / "storage" / "mixture").exists():
        _run(local, monkeypatch, "local")
    shuffled = build_tiny_project(tmp_path_factory.mktemp("ray-pipeline-shuffled") / "project", tiny_model_dir)
    assert _shuffle_sources(shuffled, seed=7) >= 3
    _run(shuffled, monkeypatch, "ray")
    want, got = _by_content(local), _by_content(shuffled)
    assert want["clusters"] and want["findings"], "the tiny project must exercise dedupe and the screen"
    for key in want:
        assert got[key] == want[key], key
