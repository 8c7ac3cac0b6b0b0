"""Cross-source dedupe: exact and near matches, the keeper rule, and order independence."""

from __future__ import annotations

import datetime as dt
import random
import re
import string
import unicodedata

import pyarrow as pa
import pytest

from mixassets.engine.dedupe import dedupe, keeper_order, lsh_params
from mixassets.engine.text_norm import dedupe_words, normalize
from mixtrain.schema import DEDUPE_CLUSTER_SCHEMA, DOCUMENT_SCHEMA
from tests.helpers import documents

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
VOCAB = [f"word{i}" for i in range(5000)]


def words(seed: int, n: int = 300) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(VOCAB) for _ in range(n)]


def mutate(ws: list[str], positions: list[int], tag: str) -> list[str]:
    out = list(ws)
    for p in positions:
        out[p] = f"changed{tag}{p}"
    return out


def table(rows: list[dict]) -> pa.Table:
    return documents([{"locator": f"f.jsonl:{i + 1}", **r} for i, r in enumerate(rows)], capture_time=T0)


def shingle_jaccard(a: str, b: str, n: int = 5) -> float:
    def sh(t: str) -> set[tuple[str, ...]]:
        w = dedupe_words(t)
        return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}

    x, y = sh(a), sh(b)
    return len(x & y) / len(x | y)


def unicode_words(text: str) -> list[str]:
    """The definition of dedupe's words, written out: NFKC, lowercase, ``[^\\w\\s]`` deleted, split."""
    return re.sub(r"[^\w\s]+", "", unicodedata.normalize("NFKC", text).lower()).split()


def test_ascii_words_match_the_unicode_definition() -> None:
    """Pure-ASCII texts take a byte path; it must give the words of the Unicode one for every ASCII character."""
    every_char = "".join(map(chr, range(128)))
    assert (
        dedupe_words(every_char)
        == unicode_words(every_char)
        == ["0123456789abcdefghijklmnopqrstuvwxyz_abcdefghijklmnopqrstuvwxyz"]
    )
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(128)] + list(string.ascii_letters) * 3 + [" "] * 20
    for _ in range(500):
        text = "".join(rng.choices(alphabet, k=rng.randrange(0, 200)))
        assert dedupe_words(text) == unicode_words(text), repr(text)
    assert dedupe_words("E-Mail, re-sent!\x1fNext\x00word") == ["email", "resent", "nextword"]
    # beyond ASCII the Unicode path still folds compatibility forms and non-ASCII punctuation
    assert dedupe_words("\ufb01ne Caf\u00e9\u2014CAF\u00c9 \uff21\uff22") == ["fine", "cafécafé", "ab"]


BASE1 = words(1)
BASE2 = words(2)
BASE3 = words(3)
# A chain: B is 5 spaced edits from A, C is 5 further edits from B (so A~C is well below 0.8).
CHAIN_A = words(4)
CHAIN_B = mutate(CHAIN_A, [20, 60, 100, 140, 180], "b")
CHAIN_C = mutate(CHAIN_B, [30, 70, 110, 150, 190], "c")

ROWS = [
    # exact duplicate across sources: the higher-ranked source wins though its copy is newer
    {"doc_id": "web-001", "source_id": "web", "text": " ".join(BASE1)},
    {
        "doc_id": "books-009",
        "source_id": "books",
        "text": "  " + " ".join(BASE1).upper().replace(" ", ",  ") + "!",
        "capture_time": T0 + dt.timedelta(days=30),
    },
    # near duplicate within a rank: the earlier capture wins although its doc_id sorts later
    {"doc_id": "web-100", "source_id": "web", "text": " ".join(mutate(BASE2, [150], "x")), "capture_time": T0},
    {"doc_id": "web-002", "source_id": "web", "text": " ".join(BASE2), "capture_time": T0 + dt.timedelta(days=1)},
    # below-threshold near duplicate: 10% of words changed -> both kept
    {"doc_id": "forum-001", "source_id": "forum", "text": " ".join(BASE3)},
    {"doc_id": "forum-002", "source_id": "forum", "text": " ".join(mutate(BASE3, list(range(0, 300, 10)), "y"))},
    # the chain
    {"doc_id": "chain-a", "source_id": "forum", "text": " ".join(CHAIN_A)},
    {"doc_id": "chain-b", "source_id": "forum", "text": " ".join(CHAIN_B)},
    {"doc_id": "chain-c", "source_id": "forum", "text": " ".join(CHAIN_C)},
    # unrelated, short and content-free documents
    {"doc_id": "web-unrelated", "source_id": "web", "text": " ".join(words(99))},
    {"doc_id": "short-1", "source_id": "web", "text": "Hello, world!"},
    {"doc_id": "short-2", "source_id": "forum", "text": "hello world"},
    {"doc_id": "short-3", "source_id": "forum", "text": "hello there world"},
    {"doc_id": "punct-1", "source_id": "web", "text": "!!! ..."},
    {"doc_id": "punct-2", "source_id": "web", "text": "???"},
]
RANK = {"books": 3, "web": 1, "forum": 1}


def run(rows: list[dict]) -> tuple[pa.Table, pa.Table]:
    return dedupe(table(rows), source_rank=RANK)


def clusters_by_doc(clusters: pa.Table) -> dict[str, dict]:
    return {r["doc_id"]: r for r in clusters.to_pylist()}


def test_fixture_similarities_are_what_the_tests_assume() -> None:
    assert shingle_jaccard(ROWS[2]["text"], ROWS[3]["text"]) > 0.9
    assert shingle_jaccard(ROWS[4]["text"], ROWS[5]["text"]) < 0.5
    assert shingle_jaccard(" ".join(CHAIN_A), " ".join(CHAIN_B)) >= 0.8
    assert shingle_jaccard(" ".join(CHAIN_B), " ".join(CHAIN_C)) >= 0.8
    assert shingle_jaccard(" ".join(CHAIN_A), " ".join(CHAIN_C)) < 0.8
    assert normalize(ROWS[1]["text"]) == normalize(ROWS[0]["text"])


def test_exact_and_near_duplicates_and_keeper_rule() -> None:
    kept, clusters = run(ROWS)
    assert clusters.schema == DEDUPE_CLUSTER_SCHEMA
    assert kept.schema == DOCUMENT_SCHEMA
    c = clusters_by_doc(clusters)
    assert c["web-001"] == {
        "cluster_id": "books/books-009",
        "doc_id": "web-001",
        "source_id": "web",
        "kept_doc_id": "books-009",
        "kept_source_id": "books",
        "match_type": "exact",
        "estimated_jaccard": 1.0,
        "exact_jaccard": 1.0,
        "action": "dropped",
    }
    assert c["web-002"]["kept_doc_id"] == "web-100"
    assert c["web-002"]["match_type"] == "near"
    assert 0.8 <= c["web-002"]["estimated_jaccard"] <= 1.0
    assert c["short-2"]["kept_doc_id"] == "short-1"  # same rank and time: smaller doc_id wins
    assert c["short-2"]["match_type"] == "exact"
    # the chain is one component with one keeper: B matched A, C matched B (A~C is below threshold, yet C is
    # B's near duplicate, so keeping it would keep B's content twice); each link names a verified partner
    assert c["chain-b"]["kept_doc_id"] == "chain-a"
    assert c["chain-c"]["kept_doc_id"] == "chain-b"
    assert c["chain-c"]["cluster_id"] == c["chain-b"]["cluster_id"] == "forum/chain-a"
    assert c["chain-c"]["exact_jaccard"] == pytest.approx(shingle_jaccard(" ".join(CHAIN_B), " ".join(CHAIN_C)))
    kept_ids = set(kept.column("doc_id").to_pylist())
    assert set(c) == {"web-001", "web-002", "short-2", "chain-b", "chain-c"}
    assert kept_ids == {r["doc_id"] for r in ROWS} - set(c)
    # every cluster's keeper is itself in the output
    assert {r["cluster_id"].split("/", 1)[1] for r in c.values()} <= kept_ids


def test_below_threshold_unrelated_short_and_empty_docs_are_kept() -> None:
    kept, _ = run(ROWS)
    ids = set(kept.column("doc_id").to_pylist())
    assert {"forum-001", "forum-002", "web-unrelated", "short-3", "punct-1", "punct-2"} <= ids


def test_kept_docs_keep_input_order_and_all_columns() -> None:
    kept, _ = run(ROWS)
    ids = kept.column("doc_id").to_pylist()
    input_ids = [r["doc_id"] for r in ROWS]
    assert ids == [d for d in input_ids if d in set(ids)]
    assert kept.column("locator").to_pylist()[0] == "f.jsonl:2"  # books-009 row, untouched


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_result_is_independent_of_input_order(seed: int) -> None:
    kept, clusters = run(ROWS)
    shuffled = list(ROWS)
    random.Random(seed).shuffle(shuffled)
    kept2, clusters2 = run(shuffled)
    assert sorted(kept2.column("doc_id").to_pylist()) == sorted(kept.column("doc_id").to_pylist())
    assert clusters2.to_pylist() == clusters.to_pylist()


def test_rank_beats_time_and_time_beats_doc_id() -> None:
    rows = [
        {"doc_id": "a", "source_id": "low", "text": "same text here", "capture_time": T0},
        {"doc_id": "b", "source_id": "high", "text": "same text here", "capture_time": T0 + dt.timedelta(days=9)},
        {"doc_id": "c", "source_id": "high", "text": "same text here", "capture_time": None},
    ]
    t = table(rows)
    assert [t.column("doc_id")[i].as_py() for i in keeper_order(t, {"high": 2, "low": 1})] == ["b", "c", "a"]
    assert [t.column("doc_id")[i].as_py() for i in keeper_order(t)] == ["a", "b", "c"]
    kept, clusters = dedupe(t, source_rank={"high": 2, "low": 1})
    assert kept.column("doc_id").to_pylist() == ["b"]
    assert clusters.column("kept_doc_id").to_pylist() == ["b", "b"]


def test_threshold_controls_near_matches() -> None:
    a = " ".join(BASE3)
    b = " ".join(mutate(BASE3, list(range(0, 300, 30)), "z"))  # 10 edits: J ~ 0.71
    j = shingle_jaccard(a, b)
    assert 0.6 < j < 0.8
    rows = [{"doc_id": "x1", "source_id": "s", "text": a}, {"doc_id": "x2", "source_id": "s", "text": b}]
    assert dedupe(table(rows), threshold=0.8)[0].num_rows == 2
    kept, clusters = dedupe(table(rows), threshold=0.6)
    assert kept.column("doc_id").to_pylist() == ["x1"]
    assert clusters.column("match_type").to_pylist() == ["near"]


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="capture_time"):
        dedupe(table(ROWS[:2]).drop_columns(["capture_time"]))
    with pytest.raises(ValueError, match="threshold"):
        dedupe(table(ROWS[:2]), threshold=0)


def test_empty_input() -> None:
    kept, clusters = dedupe(DOCUMENT_SCHEMA.empty_table())
    assert kept.num_rows == 0
    assert clusters.num_rows == 0
    assert clusters.schema == DEDUPE_CLUSTER_SCHEMA


def test_lsh_banding_favours_recall_at_the_threshold() -> None:
    for threshold in (0.5, 0.7, 0.8, 0.9):
        bands, rows = lsh_params(threshold, 128)
        assert bands * rows <= 128
        assert 1 - (1 - threshold**rows) ** bands >= 0.95
        # and it is the most selective such banding: one more row per band would miss too much
        wider = rows + 1
        assert 1 - (1 - threshold**wider) ** (128 // wider) < 0.95


def test_pairs_just_above_threshold_are_all_found() -> None:
    # 30 pairs at shingle Jaccard ~0.84; datasketch's default banding for 0.8 finds only ~70% of these
    rows = []
    for k in range(30):
        base = words(1000 + k)
        copy = mutate(base, [30, 80, 130, 180, 230], "p")
        assert 0.8 <= shingle_jaccard(" ".join(base), " ".join(copy)) < 0.86
        rows += [
            {"doc_id": f"{k:02d}-orig", "source_id": "s", "text": " ".join(base)},
            {"doc_id": f"{k:02d}-the-copy", "source_id": "s", "text": " ".join(copy)},
        ]
    kept, clusters = dedupe(table(rows))
    assert sorted(kept.column("doc_id").to_pylist()) == [f"{k:02d}-orig" for k in range(30)]
    assert set(clusters.column("match_type").to_pylist()) == {"near"}


def test_rows_repeating_a_doc_id_are_ordered_by_text_not_position() -> None:
    rows = [
        {"doc_id": "same", "source_id": "s", "text": "first version of the text"},
        {"doc_id": "same", "source_id": "s", "text": "second version of the text"},
    ]
    t1, t2 = table(rows), table(rows[::-1])
    texts1 = [t1.column("text")[i].as_py() for i in keeper_order(t1)]
    texts2 = [t2.column("text")[i].as_py() for i in keeper_order(t2)]
    assert texts1 == texts2


# -- configurable engine ---------------------------------------------------------------------------------
from mixassets.engine.dedupe import (  # noqa: E402
    SKETCH_SCHEMA,
    DedupeConfig,
    band_index,
    dedupe_incremental,
    license_rank,
    resolve,
    sketch,
    verify,
)


def test_license_ranks_follow_the_policy_tags() -> None:
    assert license_rank("CC0-1.0") == 0
    assert license_rank("MIT") == 1
    assert license_rank("CC-BY-SA-4.0") == 2
    assert license_rank("CC-BY-NC-4.0") == 3
    assert license_rank("LicenseRef-research-only") == 3
    assert license_rank(None) == license_rank("Nonsense-1.0") == license_rank("MIT AND (") == 4
    assert license_rank("CC-BY-NC-4.0 OR CC0-1.0") == 0  # the licensee may pick the better alternative


def test_license_comes_before_trust_tier_by_default() -> None:
    text = " ".join(BASE1)
    rows = [
        {"doc_id": "nc", "source_id": "books", "text": text, "license": "CC-BY-NC-4.0"},
        {"doc_id": "by", "source_id": "web", "text": text, "license": "CC-BY-4.0"},
        {"doc_id": "unknown", "source_id": "books", "text": text, "license": None},
    ]
    kept, clusters = dedupe(table(rows), source_rank={"books": 5, "web": 1})
    assert kept.column("doc_id").to_pylist() == ["by"]
    assert clusters.column("cluster_id").to_pylist() == ["web/by", "web/by"]
    by_trust = DedupeConfig(keeper_rule=("trust_tier", "license", "capture_time", "doc_id"))
    kept, _ = dedupe(table(rows), source_rank={"books": 5, "web": 1}, config=by_trust)
    assert kept.column("doc_id").to_pylist() == ["nc"]


def test_pair_threshold_is_the_larger_of_the_two_documents() -> None:
    a = " ".join(BASE3)
    b = " ".join(mutate(BASE3, list(range(0, 300, 30)), "z"))  # J ~ 0.71
    rows = [{"doc_id": "x1", "source_id": "lax", "text": a}, {"doc_id": "x2", "source_id": "strict", "text": b}]
    both_lax = DedupeConfig(source_threshold={"lax": 0.6, "strict": 0.6})
    assert dedupe(table(rows), config=both_lax)[0].column("doc_id").to_pylist() == ["x1"]
    one_lax = DedupeConfig(source_threshold={"lax": 0.6})  # strict keeps the default 0.8
    assert dedupe(table(rows), config=one_lax)[0].num_rows == 2
    by_domain = DedupeConfig(domain_threshold={"general": 0.6})
    assert dedupe(table(rows), config=by_domain)[0].num_rows == 1
    # the banding is chosen for the lowest configured threshold, so the lax pairs are still proposed
    assert one_lax.banding == DedupeConfig(threshold=0.6).banding


CODE_A = "\n".join(f"def f{i}(a, b):\n    return a + b * {i} - (a // b)" for i in range(12))


def test_code_sources_shingle_on_tokens_and_keep_operators() -> None:
    changed = CODE_A.replace(" + ", " - ").replace(" // ", " % ")
    rows = [
        {"doc_id": "c1", "source_id": "repo", "text": CODE_A},
        {"doc_id": "c2", "source_id": "repo", "text": changed},
    ]
    # as prose, punctuation is stripped and the two are the same text
    kept, clusters = dedupe(table(rows))
    assert kept.column("doc_id").to_pylist() == ["c1"] and clusters.column("match_type").to_pylist() == ["exact"]
    # as code, operators are tokens: different key, low token-shingle Jaccard, both kept
    kept, clusters = dedupe(table(rows), code_sources={"repo"})
    assert kept.num_rows == 2 and clusters.num_rows == 0
    # a reformatted copy of code (whitespace only) is still an exact duplicate
    reflowed = CODE_A.replace("\n    ", "\n\t").replace(", ", ",")
    rows[1]["text"] = reflowed
    kept, clusters = dedupe(table(rows), code_sources={"repo"})
    assert kept.column("doc_id").to_pylist() == ["c1"] and clusters.column("match_type").to_pylist() == ["exact"]
    sk = sketch(table(rows[:1]), code_sources={"repo"})
    assert sk.column("code").to_pylist() == [True]


def test_max_per_cluster_keeps_capped_members() -> None:
    text = " ".join(BASE2)
    rows = [{"doc_id": "keeper", "source_id": "books", "text": text, "capture_time": T0}]
    later = T0 + dt.timedelta(days=1)
    rows += [{"doc_id": f"web-{i}", "source_id": "web", "text": text, "capture_time": later} for i in range(3)]
    rows += [{"doc_id": f"forum-{i}", "source_id": "forum", "text": text, "capture_time": later} for i in range(2)]
    rows.append(
        {"doc_id": "web-near", "source_id": "web", "text": " ".join(mutate(BASE2, [150], "q")), "capture_time": later}
    )
    cfg = DedupeConfig(max_per_cluster={"web": 3})
    kept, clusters = dedupe(table(rows), config=cfg)
    actions = {r["doc_id"]: r["action"] for r in clusters.to_pylist()}
    # web may keep 3 members of the cluster (the keeper is not web); forum keeps none beyond the keeper
    assert actions == {"web-0": "kept_capped", "web-1": "kept_capped", "web-2": "kept_capped",
                       "forum-0": "dropped", "forum-1": "dropped", "web-near": "dropped"}  # fmt: skip
    assert set(clusters.column("cluster_id").to_pylist()) == {"books/keeper"}
    assert sorted(kept.column("doc_id").to_pylist()) == ["keeper", "web-0", "web-1", "web-2"]
    # when the keeper is of the capped source it counts towards the cap
    same = [dict(r, source_id="web") for r in rows if r["source_id"] != "forum"]
    kept, clusters = dedupe(table(same), config=DedupeConfig(max_per_cluster={"web": 2}))
    assert sorted(kept.column("doc_id").to_pylist()) == ["keeper", "web-0"]
    # and a domain key applies to every source of that domain
    kept, _ = dedupe(table(rows), config=DedupeConfig(max_per_cluster={"general": 2}))
    assert kept.num_rows == 2


@pytest.mark.parametrize("seed", [5, 6])
def test_configured_result_is_independent_of_input_order(seed: int) -> None:
    cfg = DedupeConfig(max_per_cluster={"forum": 2}, source_threshold={"web": 0.9})
    rows = [dict(r, license=lic) for r, lic in zip(ROWS, ["MIT", "CC-BY-NC-4.0", None, "CC0-1.0"] * 4, strict=False)]
    rows += [{"doc_id": f"dup-{i}", "source_id": "forum", "text": " ".join(BASE1)} for i in range(3)]
    first = dedupe(table(rows), config=cfg, source_rank=RANK)
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    second = dedupe(table(shuffled), config=cfg, source_rank=RANK)
    assert second[1].to_pylist() == first[1].to_pylist()
    assert sorted(second[0].column("doc_id").to_pylist()) == sorted(first[0].column("doc_id").to_pylist())


def test_verification_prevents_drops_of_lsh_candidates_below_threshold() -> None:
    # pairs at shingle Jaccard ~0.7: LSH banded for recall at 0.8 proposes most of them, none may go
    rows = []
    for k in range(20):
        base = words(2000 + k)
        copy = mutate(base, list(range(5, 300, 25)), "v")
        assert 0.6 < shingle_jaccard(" ".join(base), " ".join(copy)) < 0.75
        rows += [{"doc_id": f"{k:02d}-a", "source_id": "s", "text": " ".join(base)},
                 {"doc_id": f"{k:02d}-b", "source_id": "s", "text": " ".join(copy)}]  # fmt: skip
    docs = table(rows)
    cfg = DedupeConfig()
    sketches = sketch(docs, cfg)
    candidates = band_index(sketches, cfg).candidate_pairs()
    assert len(candidates) >= 10  # the LSH did propose these pairs
    verified = verify(sketches, candidates, docs.column("text"), cfg)
    assert verified.computed == len(candidates)
    assert (verified.exact_jaccard < 0.8).all()
    kept, clusters = resolve(sketches, verified, cfg)
    assert kept.all() and clusters.num_rows == 0


def test_verify_rejects_texts_that_do_not_match_the_sketches() -> None:
    docs = table(ROWS[2:4])
    sketches = sketch(docs)
    with pytest.raises(ValueError, match="not the text it was sketched from"):
        verify(sketches, [(0, 1)], docs.column("text").take([1, 0]))


def test_index_and_sketches_cost_at_most_2_kb_per_document() -> None:
    rng = random.Random(7)
    rows = [{"doc_id": f"doc-{i:05d}", "source_id": "web", "text": " ".join(rng.choices(VOCAB, k=300)),
             "license": "CC-BY-4.0"} for i in range(2000)]  # fmt: skip
    docs = table(rows)
    assert docs.column("text").nbytes / docs.num_rows > 2000  # ~2 KB documents
    result = dedupe_incremental(docs)
    # the schema's fields and settings metadata, plus the digest of this sketch set
    assert result.sketches.schema.equals(SKETCH_SCHEMA)
    assert SKETCH_SCHEMA.metadata.items() < result.sketches.schema.metadata.items()
    per_doc = (result.sketches.nbytes + band_index(result.sketches).nbytes) / docs.num_rows
    assert per_doc <= 2048, per_doc


def test_band_by_band_candidates_equal_the_band_index_and_hashes_do_not_depend_on_slicing(monkeypatch):
    """The full build's one-band-at-a-time pairs are the index's pairs, and id hashes computed in slices (bounded
    memory) equal those of one pass."""
    import numpy as np

    from mixassets.engine.dedupe import digest
    from mixassets.engine.dedupe.bands import candidate_pairs

    rng = random.Random(3)
    words = [f"w{k}" for k in range(300)]
    base = [" ".join(rng.choice(words) for _ in range(80)) for _ in range(40)]
    texts = [t if rng.random() < 0.5 else t.replace(t.split()[3], "zz", 1) for t in base for _ in range(3)]
    docs = pa.table(
        {
            "doc_id": [f"d{k:04d}" for k in range(len(texts))],
            "source_id": ["s"] * len(texts),
            "text": texts,
            "capture_time": pa.array([0] * len(texts), pa.timestamp("us", tz="UTC")),
        }
    )
    cfg = DedupeConfig()
    sketches = sketch(docs, cfg)
    expected = band_index(sketches, cfg).candidate_pairs()
    assert len(expected) > 40
    assert np.array_equal(candidate_pairs(sketches, cfg), expected)
    whole = digest._string_hashes(sketches.column("doc_id"))
    monkeypatch.setattr(digest, "_HASH_ROWS", 7)
    assert np.array_equal(digest._string_hashes(sketches.column("doc_id")), whole)
