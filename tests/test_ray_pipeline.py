"""The data half of the tiny project's pipeline on both backends: the same decisions, row for row.

One project copy runs locally and incrementally (first without one source, then with it, so dedupe reuses the
first run's sketches and pairs); the other runs on a local Ray (2 CPUs, explicit partition counts) in one full
build. Every data output must be identical: kept and dropped ids, the clusters with keeper, matched document and
Jaccard, the contamination findings, the screened corpus, the mixture and its manifest (its id included: it names
shards relative to each copy's storage root). Marked ``ray``: ``make test-ray`` runs it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

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
