"""Incremental dedupe: reusing sketches and verified pairs must end exactly where a full build ends,
while sketching only the new documents and verifying only the candidate pairs that touch them."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mixassets.engine.dedupe as engine
from mixassets.engine.dedupe import (
    BandIndex,
    DedupeConfig,
    band_index,
    bands,
    dedupe,
    dedupe_incremental,
    incremental,
    sketching,
    verification,
)
from mixassets.engine.dedupe import digest as digests
from mixassets.engine.dedupe.config import _META_SKETCH_SET
from mixtrain.schema import DOCUMENT_SCHEMA
from mixtrain.storage import PARQUET_OPTIONS

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
VOCAB = [f"w{i}" for i in range(3000)]


def words(seed: int, n: int = 200) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(VOCAB) for _ in range(n)]


def near(ws: list[str], seed: int, edits: int = 2) -> str:
    rng = random.Random(seed)
    out = list(ws)
    for p in rng.sample(range(len(out)), edits):
        out[p] = f"edit{seed}x{p}"
    return " ".join(out)


def doc(doc_id: str, source: str, text: str, *, days: int = 0, license: str | None = "CC-BY-4.0") -> dict:
    return {"doc_id": doc_id, "source_id": source, "locator": f"{source}.jsonl:1", "kind": "text", "text": text,
            "messages": None, "license": license, "rights_tags": [], "domain": "general", "language": "en",
            "capture_time": T0 + dt.timedelta(days=days)}  # fmt: skip


BASES = [words(s) for s in range(40)]
OLD = [doc(f"a{i:02d}", "alpha", " ".join(BASES[i]), days=i) for i in range(25)]
OLD += [doc(f"b{i:02d}", "beta", near(BASES[i], 100 + i), days=50) for i in range(0, 10)]  # near copies of alpha
OLD += [doc(f"b{i:02d}", "beta", " ".join(BASES[i]), days=60) for i in range(25, 32)]
# the new source: exact and near copies of old documents, copies of each other, and a better-licensed
# copy that takes over as keeper of an old cluster
NEW = [doc(f"g{i:02d}", "gamma", near(BASES[i], 200 + i), days=70) for i in range(5, 15)]
NEW += [doc("g-exact", "gamma", " ".join(BASES[27]).upper(), days=80)]
NEW += [doc("g-pd", "gamma", " ".join(BASES[2]), days=90, license="CC0-1.0")]
NEW += [doc(f"g{i:02d}", "gamma", " ".join(BASES[i]), days=70) for i in range(32, 36)]
NEW += [doc(f"g{i:02d}-twin", "gamma", near(BASES[i], 300 + i), days=71) for i in range(32, 34)]
NEW += [doc(f"g05-{k}", "gamma", near(BASES[5], 400 + k), days=72) for k in range(2)]  # over gamma's cap of 2


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)


CFG = DedupeConfig(max_per_cluster={"gamma": 2})
CODE: frozenset[str] = frozenset()


def patch_engine(monkeypatch: pytest.MonkeyPatch, name: str, value: object) -> None:
    """Replace an engine helper in every dedupe module that calls it."""
    for module in (bands, digests, incremental, sketching, verification):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, value)


def same_result(a: engine.DedupeResult, b: engine.DedupeResult) -> None:
    assert a.clusters.to_pylist() == b.clusters.to_pylist()
    assert a.kept.to_pylist() == b.kept.to_pylist()
    assert a.verified_pairs.equals(b.verified_pairs)
    assert a.sketches.equals(b.sketches)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts documents shingled for sketches and for verification, independently of the engine's stats."""
    calls = {"sketched": 0, "verified_docs": 0}
    prepare, shingles = sketching._prepare, verification.shingle_set

    def counting_prepare(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["sketched"] += 1
        return prepare(*args, **kwargs)

    def counting_shingles(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["verified_docs"] += 1
        return shingles(*args, **kwargs)

    monkeypatch.setattr(sketching, "_prepare", counting_prepare)
    monkeypatch.setattr(verification, "shingle_set", counting_shingles)
    return calls


def test_incremental_equals_full_and_touches_only_new_documents(tmp_path, counted: dict[str, int]) -> None:
    before = dedupe_incremental(table(OLD), config=CFG)
    pq.write_table(before.sketches, tmp_path / "sketches.parquet")  # what the asset persists
    pq.write_table(before.verified_pairs, tmp_path / "pairs.parquet")
    corpus = table(OLD + NEW)
    full = dedupe_incremental(corpus, config=CFG)
    counted.update(sketched=0, verified_docs=0)
    inc = dedupe_incremental(
        corpus,
        previous_sketches=pq.read_table(tmp_path / "sketches.parquet"),
        previous_pairs=pq.read_table(tmp_path / "pairs.parquet"),
        config=CFG,
    )
    same_result(inc, full)
    assert inc.stats.incremental and inc.stats.note == ""
    # sketched: exactly the new rows
    assert counted["sketched"] == len(NEW) == inc.stats.sketched
    assert inc.stats.sketches_reused == len(OLD)
    # verified: exactly the full build's candidate pairs that touch a new row, and only their documents
    positions = full.sketches
    is_new = np.array([s == "gamma" for s in positions.column("source_id").to_pylist()])
    all_pairs = band_index(full.sketches, CFG).candidate_pairs()
    touching = all_pairs[is_new[all_pairs[:, 0]] | is_new[all_pairs[:, 1]]]
    assert inc.stats.pairs_verified == len(touching) > 0
    # only the reused (old) documents are shingled from text again: the new ones' sets come from the sketch pass
    touched = np.unique(touching)
    assert counted["verified_docs"] == int((~is_new[touched]).sum()) > 0
    assert inc.stats.pairs_reused == len(all_pairs) - len(touching) > 0
    # the new better-licensed copy took over an old cluster, and a capped gamma member stays
    clusters = {r["doc_id"]: r for r in inc.clusters.to_pylist()}
    assert clusters["a02"]["cluster_id"] == "gamma/g-pd"
    assert [clusters[d]["action"] for d in ("g05", "g05-0", "g05-1")] == ["kept_capped", "kept_capped", "dropped"]


def test_reordered_corpus_and_a_changed_document(counted: dict[str, int]) -> None:
    before = dedupe_incremental(table(OLD + NEW), config=CFG)
    rows = [dict(r) for r in OLD + NEW]
    rows[3]["text"] = near(BASES[3], 999, edits=1)  # a changed document: new text, same id
    random.Random(1).shuffle(rows)
    counted.update(sketched=0, verified_docs=0)
    inc = dedupe_incremental(
        table(rows), previous_sketches=before.sketches, previous_pairs=before.verified_pairs, config=CFG
    )
    assert counted["sketched"] == 1 and inc.stats.sketched == 1
    same_result(inc, dedupe_incremental(table(rows), config=CFG))


def test_unchanged_sources_are_matched_without_hashing_their_text(monkeypatch: pytest.MonkeyPatch) -> None:
    before = dedupe_incremental(table(OLD), config=CFG)
    corpus = table(OLD + NEW)
    hashed: list[str | None] = []
    content_hash = sketching._content_hash

    def counting(text: str | None, code: bool) -> int:
        hashed.append(text)
        return content_hash(text, code)

    patch_engine(monkeypatch, "_content_hash", counting)
    old_sources = {r["source_id"] for r in OLD}
    inc = dedupe_incremental(
        corpus,
        previous_sketches=before.sketches,
        previous_pairs=before.verified_pairs,
        config=CFG,
        unchanged_sources=old_sources,
    )
    patch_engine(monkeypatch, "_content_hash", content_hash)
    full = dedupe_incremental(corpus, config=CFG)
    same_result(inc, full)
    assert inc.stats.sketched == len(NEW) and inc.stats.sketches_reused == len(OLD)
    # Old texts are hashed only where verification re-reads a candidate partner of a new document; an old
    # document with no new partner is matched by id alone.
    pairs = band_index(full.sketches, CFG).candidate_pairs()
    is_new = np.array([s == "gamma" for s in full.sketches.column("source_id").to_pylist()])
    partners = set(pairs[is_new[pairs[:, 0]] | is_new[pairs[:, 1]]].ravel().tolist())
    texts = corpus.column("text").to_pylist()
    old_hashed = set(hashed) - {r["text"] for r in NEW}
    assert old_hashed <= {texts[i] for i in partners if not is_new[i]}
    assert len(old_hashed) < len(OLD) // 2


def test_pairs_from_another_run_are_only_a_cache() -> None:
    unrelated = dedupe_incremental(table(OLD[:10]), config=CFG)
    previous = dedupe_incremental(table(OLD), config=CFG)
    inc = dedupe_incremental(
        table(OLD + NEW), previous_sketches=previous.sketches, previous_pairs=unrelated.verified_pairs, config=CFG
    )
    assert not inc.stats.incremental and "all pairs queried" in inc.stats.note
    same_result(inc, dedupe_incremental(table(OLD + NEW), config=CFG))


def test_sketches_of_other_settings_are_not_reused() -> None:
    previous = dedupe_incremental(table(OLD), config=DedupeConfig(ngram=4))
    inc = dedupe_incremental(
        table(OLD + NEW), previous_sketches=previous.sketches, previous_pairs=previous.verified_pairs, config=CFG
    )
    assert inc.stats.sketched == len(OLD + NEW) and "not reused" in inc.stats.note
    same_result(inc, dedupe_incremental(table(OLD + NEW), config=CFG))
    with pytest.raises(ValueError, match="re-sketch"):
        band_index(previous.sketches, CFG)


def test_a_lower_threshold_rebands_stored_signatures() -> None:
    previous = dedupe_incremental(table(OLD), config=CFG)
    lower = DedupeConfig(threshold=0.6, max_per_cluster={"gamma": 2})
    assert lower.banding != CFG.banding
    inc = dedupe_incremental(
        table(OLD + NEW), previous_sketches=previous.sketches, previous_pairs=previous.verified_pairs, config=lower
    )
    assert inc.stats.sketched == len(NEW) and not inc.stats.incremental
    same_result(inc, dedupe_incremental(table(OLD + NEW), config=lower))


def test_dedupe_convenience_matches_the_engine() -> None:
    kept, clusters = dedupe(table(OLD + NEW), config=CFG)
    full = dedupe_incremental(table(OLD + NEW), config=CFG)
    assert kept.equals(full.kept) and clusters.equals(full.clusters)


def test_band_index_pairs_and_incremental_query() -> None:
    bands = np.array([[1, 7], [1, 8], [2, 8], [3, 9], [1, 9], [4, 4]], dtype=np.uint64)
    index = BandIndex(bands, active=np.array([True, True, True, True, True, False]))
    assert index.candidate_pairs().tolist() == [[0, 1], [0, 4], [1, 2], [1, 4], [3, 4]]
    assert index.candidate_pairs(touching=[4]).tolist() == [[0, 4], [1, 4], [3, 4]]
    assert index.candidate_pairs(touching=np.array([False] * 6)).tolist() == []
    assert index.nbytes == 2 * 5 * (8 + 4)
    with pytest.raises(ValueError, match="touching"):
        index.candidate_pairs(touching=[9])


def test_sketch_set_digest_is_stored_with_the_sketches_and_a_stale_one_is_not_trusted() -> None:
    previous = dedupe_incremental(table(OLD), config=CFG)
    stored = previous.sketches.schema.metadata[_META_SKETCH_SET].decode()
    assert stored == digests._sketch_set_digest(previous.sketches)
    # a key the asset layer adds beside it does not stop a refresh from trusting the stored digest
    meta = {**previous.sketches.schema.metadata, b"mixtrain.dedupe.gated_versions": b"{}"}
    tagged = previous.sketches.replace_schema_metadata(meta)
    inc = dedupe_incremental(
        table(OLD + NEW), previous_sketches=tagged, previous_pairs=previous.verified_pairs, config=CFG
    )
    assert inc.stats.incremental
    assert inc.sketches.schema.metadata[_META_SKETCH_SET].decode() == digests._sketch_set_digest(inc.sketches)
    # a sliced table keeps the old digest in its metadata: it is recomputed, and the pairs are only a cache
    sliced = dedupe_incremental(
        table(OLD + NEW), previous_sketches=tagged.slice(0, 20), previous_pairs=previous.verified_pairs, config=CFG
    )
    assert not sliced.stats.incremental
    same_result(sliced, inc)


def test_a_run_spills_its_signatures_yet_hands_out_the_sketches_sketch_makes() -> None:
    # The run keeps signatures in a scratch file until it ends; the sketches it returns are those made in memory.
    docs = table(OLD + NEW)
    made = dedupe_incremental(docs, config=CFG).sketches
    assert made.equals(engine.sketch(docs, CFG).replace_schema_metadata(made.schema.metadata))
    assert made.column("signature").num_chunks == 1


def test_sketch_uses_given_content_hashes_and_computes_the_missing_ones() -> None:
    docs = table(OLD[:3])
    plain = engine.sketch(docs, CFG)
    given = pa.array([7, None, 9], pa.uint64())
    hashed = engine.sketch(docs, CFG, content_hashes=given)
    expected = plain.column("content_hash").to_pylist()
    assert hashed.column("content_hash").to_pylist() == [7, expected[1], 9]
    assert hashed.drop_columns(["content_hash"]).equals(plain.drop_columns(["content_hash"]))
    with pytest.raises(ValueError, match="2 content hashes given for 3 documents"):
        engine.sketch(docs, CFG, content_hashes=given.slice(0, 2))


def test_a_refresh_hashes_each_text_once_and_places_the_previous_pairs_once(
    monkeypatch: pytest.MonkeyPatch, counted: dict[str, int]
) -> None:
    previous = dedupe_incremental(table(OLD), config=CFG)
    calls = {"hash": 0, "cached_pairs": 0}
    content_hash, cached_pairs = sketching._content_hash, incremental._cached_pairs

    def counting_hash(text: str | None, code: bool) -> int:
        calls["hash"] += 1
        return content_hash(text, code)

    def counting_cached(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["cached_pairs"] += 1
        return cached_pairs(*args, **kwargs)

    patch_engine(monkeypatch, "_content_hash", counting_hash)
    patch_engine(monkeypatch, "_cached_pairs", counting_cached)
    counted.update(sketched=0, verified_docs=0)
    inc = dedupe_incremental(
        table(OLD + NEW), previous_sketches=previous.sketches, previous_pairs=previous.verified_pairs, config=CFG
    )
    assert inc.stats.incremental and inc.stats.sketched == len(NEW)
    # every row once to match it with its previous sketch (new rows are not hashed again when sketched), then
    # the documents verification re-reads, to check them against their sketches
    assert calls["hash"] == len(OLD + NEW) + counted["verified_docs"]
    assert calls["cached_pairs"] == 1


def test_pairs_touching_new_rows_match_the_full_index_query() -> None:
    sketches = dedupe_incremental(table(OLD + NEW), config=CFG).sketches
    is_new = np.array([s == "gamma" for s in sketches.column("source_id").to_pylist()])
    expected = band_index(sketches, CFG).candidate_pairs(touching=is_new)
    got = bands._pairs_touching(sketches, is_new, CFG)
    assert len(expected) > 0
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, expected.tolist()))
    assert len(bands._pairs_touching(sketches, np.zeros(len(is_new), dtype=bool), CFG)) == 0


@pytest.mark.parametrize("max_slices", [64, 1])
def test_refresh_with_the_new_source_between_old_ones_equals_a_full_build(
    monkeypatch: pytest.MonkeyPatch, max_slices: int
) -> None:
    """Reused sketches are laid out by slicing runs of previous rows, or gathered with one take when the
    layout is scattered; either way the sketches are in input order and the result is a full build's."""
    patch_engine(monkeypatch, "_MAX_SLICES", max_slices)
    previous = dedupe_incremental(table(OLD), config=CFG)
    rows = OLD[:25] + NEW + OLD[25:]
    inc = dedupe_incremental(
        table(rows),
        previous_sketches=previous.sketches,
        previous_pairs=previous.verified_pairs,
        config=CFG,
        unchanged_sources={"alpha", "beta"},
    )
    assert inc.stats.incremental and inc.stats.sketches_reused == len(OLD)
    same_result(inc, dedupe_incremental(table(rows), config=CFG))


def test_sketch_set_digest_ignores_row_order_and_tells_versions_apart() -> None:
    sk = dedupe_incremental(table(OLD), config=CFG).sketches
    digest = digests._sketch_set_digest(sk)
    assert digests._sketch_set_digest(sk.take(pa.array(np.arange(sk.num_rows)[::-1]))) == digest
    bumped = sk.set_column(
        sk.schema.get_field_index("content_hash"),
        sk.schema.field("content_hash"),
        pa.array(sk.column("content_hash").to_numpy() + np.uint64(1), pa.uint64()),
    )
    assert digests._sketch_set_digest(bumped) != digest
    renamed = sk.set_column(
        sk.schema.get_field_index("doc_id"), "doc_id", pa.array([f"x{i}" for i in range(sk.num_rows)])
    )
    assert digests._sketch_set_digest(renamed) != digest
    assert digests._sketch_set_digest(sk.slice(0, 0)).startswith("v2:0:")


def test_files_with_the_first_digest_format_still_refresh_incrementally() -> None:
    """Sketches and pairs persisted before the digest changed carry the same old-format string: it is
    still trusted, so the first refresh after an upgrade stays incremental."""
    previous = dedupe_incremental(table(OLD), config=CFG)
    old_digest = {_META_SKETCH_SET: f"{previous.sketches.num_rows}:0123456789abcdef".encode()}
    sketches = previous.sketches.replace_schema_metadata({**previous.sketches.schema.metadata, **old_digest})
    pairs = previous.verified_pairs.replace_schema_metadata({**previous.verified_pairs.schema.metadata, **old_digest})
    inc = dedupe_incremental(table(OLD + NEW), previous_sketches=sketches, previous_pairs=pairs, config=CFG)
    assert inc.stats.incremental
    same_result(inc, dedupe_incremental(table(OLD + NEW), config=CFG))


@pytest.mark.parametrize("options", ["sketch", "project", "default"])
def test_refresh_from_sketches_read_back_memory_mapped_equals_a_full_build(tmp_path, options: str) -> None:
    """The asset writes sketches with the sketch options (random hash columns plain and uncompressed) and
    reads them memory-mapped; files written before that (zstd, or pyarrow's defaults) still refresh."""
    write = {
        "sketch": dict(engine.SKETCH_PARQUET_OPTIONS),
        "project": dict(PARQUET_OPTIONS),
        "default": {},
    }[options]
    previous = dedupe_incremental(table(OLD), config=CFG)
    pq.write_table(previous.sketches, tmp_path / "sketches.parquet", **write)
    pq.write_table(previous.verified_pairs, tmp_path / "pairs.parquet", **PARQUET_OPTIONS)
    if options == "sketch":
        meta = pq.ParquetFile(tmp_path / "sketches.parquet").metadata.row_group(0)
        chunks = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
        assert chunks["signature.list.element"].compression == "UNCOMPRESSED"
        assert not chunks["signature.list.element"].has_dictionary_page
        assert chunks["doc_id"].compression == "ZSTD"
    inc = dedupe_incremental(
        table(OLD + NEW),
        previous_sketches=pq.read_table(tmp_path / "sketches.parquet", memory_map=True),
        previous_pairs=pq.read_table(tmp_path / "pairs.parquet", memory_map=True),
        config=CFG,
        unchanged_sources={"alpha", "beta"},
    )
    assert inc.stats.incremental and inc.stats.sketches_reused == len(OLD)
    same_result(inc, dedupe_incremental(table(OLD + NEW), config=CFG))


def test_kept_rows_come_whole_or_batch_by_batch_and_the_run_does_not_copy_them() -> None:
    result = dedupe_incremental(table(OLD + NEW), config=CFG)
    assert "kept" not in vars(result)  # built on first use only
    mask = result.kept_mask
    assert 0 < result.kept_count == int(mask.sum()) < len(mask)
    expected = table(OLD + NEW).filter(pa.array(mask))
    assert result.kept.equals(expected)
    for max_rows in (1, 4, 7, len(mask), 10 * len(mask)):
        parts = list(result.kept_batches(max_rows))
        assert all(0 < p.num_rows <= max_rows for p in parts)
        assert pa.concat_tables(parts).equals(expected)
    # a batch whose rows are all kept is a slice of the input, not a copy (rows 3..24 are distinct alpha docs)
    assert mask[3:25].all()
    whole = list(result.kept_batches(3))[1]
    assert whole.equals(result.docs.slice(3, 3))
    texts = result.docs.column("text").chunk(0)
    assert whole.column("text").chunk(0).buffers()[2].address == texts.buffers()[2].address
    with pytest.raises(ValueError, match="max_rows"):
        next(result.kept_batches(0))


def test_a_refresh_updates_the_sketch_set_digest_by_the_rows_that_left_and_came(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    previous = dedupe_incremental(table(OLD), config=CFG)
    rows = [dict(r) for r in OLD[3:] + NEW]  # three documents gone, one changed, the new source added
    rows[5]["text"] = near(BASES[8], 998, edits=1)
    hashed: list[int] = []
    lanes = digests._digest_lanes

    def counting_lanes(sketches: pa.Table) -> tuple[int, int]:
        hashed.append(sketches.num_rows)
        return lanes(sketches)

    patch_engine(monkeypatch, "_digest_lanes", counting_lanes)
    inc = dedupe_incremental(
        table(rows), previous_sketches=previous.sketches, previous_pairs=previous.verified_pairs, config=CFG
    )
    assert inc.stats.sketched == len(NEW) + 1
    assert hashed == [len(NEW) + 1, 4]  # the fresh sketches, then the previous rows that were not reused
    patch_engine(monkeypatch, "_digest_lanes", lanes)
    stored = inc.sketches.schema.metadata[_META_SKETCH_SET].decode()
    assert stored == digests._sketch_set_digest(inc.sketches)
    same_result(inc, dedupe_incremental(table(rows), config=CFG))
    # a previous digest in another format is not updated but computed afresh
    old_format = {_META_SKETCH_SET: f"{previous.sketches.num_rows}:0123456789abcdef".encode()}
    sketches = previous.sketches.replace_schema_metadata({**previous.sketches.schema.metadata, **old_format})
    again = dedupe_incremental(table(rows), previous_sketches=sketches, config=CFG)
    assert again.sketches.schema.metadata[_META_SKETCH_SET].decode() == stored
