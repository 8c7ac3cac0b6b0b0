"""The Ray Data drivers give exactly the local engine's outputs, also with the input rows shuffled and read from
parquet files. Marked ``ray``: ``make test-ray`` runs them (they need the ``ray`` extra and start a local Ray).

One local Ray (2 CPUs) serves the module; every shuffle gets an explicit partition count.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.bench_gate_dedupe import make_corpus
from benchmarks.labelled_contamination import build_labelled_set
from mixassets.engine.contamination import ScreenConfig
from mixassets.engine.contamination_stream import screen_corpus
from mixassets.engine.dedupe import DedupeConfig, dedupe_incremental
from mixassets.engine.mixture import sample_mixture
from mixassets.engine.tokens import count_tokens, load_tokenizer
from mixtrain.config.data import MixtureSpec

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

from mixassets.engine.distributed import components, dedupe_ray, screen_ray, token_counts_ray  # noqa: E402
from mixtrain.compute import ComputeResource  # noqa: E402

PARTS = 4
DOCS = 3000
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    compute = ComputeResource(backend="ray", num_cpus=2, shuffle_partitions=PARTS)
    compute.ensure_ray()
    yield compute
    compute.shutdown()
    assert not ray.is_initialized()


def shuffled(table: pa.Table, seed: int) -> pa.Table:
    return table.take(np.random.default_rng(seed).permutation(table.num_rows))


def as_files(table: pa.Table, tmp_path, parts: int = 3) -> list[str]:
    """``table`` as ``parts`` parquet files, in order (a storage table's parts)."""
    step = -(-table.num_rows // parts)
    paths = []
    for k, start in enumerate(range(0, table.num_rows, step)):
        path = tmp_path / f"part-{k:05d}.parquet"
        pq.write_table(table.slice(start, step), path)
        paths.append(str(path))
    return paths


def by_ids(table: pa.Table, *extra: str) -> pa.Table:
    return table.sort_by([("source_id", "ascending"), ("doc_id", "ascending"), *((c, "ascending") for c in extra)])


@pytest.fixture(scope="module")
def corpus() -> pa.Table:
    docs, planted = make_corpus(DOCS, seed=0)  # 3% exact, 10% near, 2% hard copies, spread over 4 sources
    assert len(planted) > 400
    return docs


def assert_same_dedupe(docs, inp, cfg: DedupeConfig, min_clusters: int = 300, **kw) -> None:
    t0 = time.perf_counter()
    local = dedupe_incremental(docs, config=cfg, **kw)
    t1 = time.perf_counter()
    got = dedupe_ray(inp, config=cfg, num_partitions=PARTS, **kw)
    TIMINGS.setdefault("dedupe local s", t1 - t0)
    TIMINGS.setdefault("dedupe ray s", time.perf_counter() - t1)
    assert local.clusters.num_rows > min_clusters  # the planted copies are found
    assert got.kept.equals(local.kept)
    assert got.clusters.equals(local.clusters)
    assert got.verified_pairs.equals(local.verified_pairs, check_metadata=True)
    assert got.sketches.equals(local.sketches, check_metadata=True)
    assert got.candidate_pairs == local.stats.candidate_pairs


def test_dedupe_equals_the_local_engine(corpus) -> None:
    assert_same_dedupe(corpus, corpus, DedupeConfig())


def test_dedupe_of_shuffled_parquet_files_equals_the_local_engine(corpus, tmp_path) -> None:
    """Caps, per-source thresholds, trust and code sources all exercised; input shuffled and split into files."""
    cfg = DedupeConfig(source_threshold={"forum": 0.9}, max_per_cluster={"books": 2}, threshold=0.75)
    docs = shuffled(corpus, 1)
    kw = {"trust": {"web": 1, "books": 2}, "code_sources": {"code"}}
    assert_same_dedupe(docs, as_files(docs, tmp_path), cfg, min_clusters=100, **kw)  # code: fewer matches
    # and the decisions do not depend on the input order
    base = dedupe_incremental(corpus, config=cfg, **kw)
    again = dedupe_ray(docs, config=cfg, num_partitions=PARTS, **kw)
    assert by_ids(again.kept).equals(by_ids(base.kept))
    assert again.clusters.equals(base.clusters)


def test_components_are_those_of_the_edges() -> None:
    nodes, comp = components(np.array([5, 1, 9, 3]), np.array([1, 7, 3, 11]))
    assert nodes.tolist() == [1, 3, 5, 7, 9, 11]
    assert comp.tolist() == [1, 3, 1, 1, 3, 3]


@pytest.fixture(scope="module")
def screen_data():
    from eval_assets.engine.registry import load_humaneval

    items = load_humaneval()
    return build_labelled_set(items, clean_docs=2000, seed=0).docs, items


@pytest.mark.parametrize("order", ["input", "shuffled"])
def test_screen_equals_the_local_engine(screen_data, order, tmp_path) -> None:
    docs, items = screen_data
    docs = docs if order == "input" else shuffled(docs, 2)
    cfg = ScreenConfig()
    t0 = time.perf_counter()
    local = screen_corpus(docs, items, cfg)
    t1 = time.perf_counter()
    got = screen_ray(as_files(docs, tmp_path) if order == "shuffled" else docs, items, cfg, num_partitions=PARTS)
    TIMINGS.setdefault("screen local s", t1 - t0)
    TIMINGS.setdefault("screen ray s", time.perf_counter() - t1)
    assert local.contaminated.num_rows > 100 and local.findings.num_rows > 100  # the planted documents
    for name in ("clean", "contaminated", "findings", "report", "leaks"):
        assert getattr(got, name).equals(getattr(local, name)), name


def test_workers_check_each_part_against_the_manifest(screen_data, tmp_path) -> None:
    from upath import UPath

    from mixassets.engine.distributed.screen import screen_hits_ray
    from mixtrain.tables import PendingTable

    docs, items = screen_data
    stored = PendingTable.of(docs.slice(0, 300), rows_per_part=100).commit(UPath(tmp_path) / "corpus")
    findings, hits, _ = screen_hits_ray(stored.part_refs, items, ScreenConfig(), num_partitions=PARTS)
    local = screen_corpus(docs.slice(0, 300), items, ScreenConfig())
    assert findings.equals(local.findings) and len(hits) == local.contaminated.num_rows
    part = stored.part_paths[1]
    part.write_bytes(part.read_bytes()[:-9] + b"corrupted")
    with pytest.raises(Exception, match=f"{part.name}: sha256 does not match the table manifest"):
        screen_hits_ray(stored.part_refs, items, ScreenConfig(), num_partitions=PARTS)


def test_token_counts_and_mixture_equal_the_local_engine(screen_data, tiny_model_dir) -> None:
    docs = screen_data[0].slice(0, 600)
    chat = '[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]'
    kinds = pa.array(["chat" if k % 7 == 0 else "text" for k in range(docs.num_rows)])
    docs = docs.set_column(docs.schema.get_field_index("kind"), "kind", kinds)
    messages = pa.array([chat if k == "chat" else None for k in kinds.to_pylist()], docs.schema.field("messages").type)
    docs = docs.set_column(docs.schema.get_field_index("messages"), docs.schema.field("messages"), messages)
    local_counts = count_tokens(docs, load_tokenizer(str(tiny_model_dir)))
    index, counts = token_counts_ray(docs, str(tiny_model_dir), num_partitions=PARTS)
    assert counts == local_counts
    assert index.equals(docs.drop_columns(["text", "messages"]))
    spec = MixtureSpec(weights={"stdlib": 1, "planted": 1}, token_budget=20_000, seed=3)
    allowed = [True] * docs.num_rows
    local_mix, local_stats = sample_mixture(docs, local_counts, spec, allowed=allowed)
    mix, stats = sample_mixture(index, counts, spec, allowed=allowed)
    assert mix.equals(local_mix.drop_columns(["text", "messages"]))
    assert stats == local_stats


def test_chat_records_are_compared_on_content_as_locally() -> None:
    """The template lines are found on Ray (grouped by source) and each chat record's view is what is sketched."""
    from tests.test_dedupe_content import OTHER, RESYSTEM, SFT, table

    docs = table([*SFT, *OTHER, RESYSTEM])
    assert_same_dedupe(docs, docs, DedupeConfig(), min_clusters=5)  # the six true copies, no template matches
    assert dedupe_ray(docs, num_partitions=PARTS).clusters.num_rows == 6


def test_report_timings() -> None:
    print("\nRay vs local, same run, 2 CPUs:", {k: round(v, 2) for k, v in TIMINGS.items()})
