"""Dedupe quality on real text: precision over drops and recall over labelled near-duplicate pairs.

The labels come from :mod:`benchmarks.labelled_neardup` (stdlib sources and the language reference,
edited copies at graded rates, truth = exact word-5-gram Jaccard with plain Python sets), so they do not
depend on the engine's hashing, MinHash or LSH banding.
"""

from __future__ import annotations

import pytest

from benchmarks import labelled_neardup as neardup
from mixassets.engine.dedupe import dedupe

# Issue 19's targets. The set below gives 91-245 drops per threshold (Python 3.11's stdlib), so precision >= 0.999
# allows no false drop there: the test asserts that outright. Recall >= 0.99 over its 60-216 clear pairs allows
# two misses at 0.7, one at 0.8, none at 0.9.
MIN_PRECISION = 0.999
MIN_RECALL = 0.99


@pytest.fixture(scope="module")
def labelled():
    return neardup.build_labelled_set(n_pairs=400, n_singles=200, seed=0)


def test_labels_span_the_band_and_are_exact(labelled) -> None:
    docs, pairs = labelled
    assert docs.num_rows == 1000
    assert len(pairs) == 400
    truths = sorted(p.jaccard for p in pairs)
    assert truths[0] < 0.55
    assert truths[-1] == 1.0
    for lo in (0.5, 0.6, 0.7, 0.8, 0.9):  # every tenth of the band holds enough pairs to measure
        assert sum(lo <= t < lo + 0.1 for t in truths) >= 25, lo
    texts = dict(zip(docs.column("doc_id").to_pylist(), docs.column("text").to_pylist(), strict=True))
    for p in pairs[:50]:
        assert p.jaccard == neardup.jaccard(neardup.shingles(texts[p.base_id]), neardup.shingles(texts[p.copy_id]))
    assert all(p.jaccard == 1.0 for p in pairs if p.edit == "format")


def test_labelled_set_is_deterministic() -> None:
    a_docs, a_pairs = neardup.build_labelled_set(n_pairs=20, n_singles=10, seed=3)
    b_docs, b_pairs = neardup.build_labelled_set(n_pairs=20, n_singles=10, seed=3)
    assert a_docs.equals(b_docs)
    assert a_pairs == b_pairs


@pytest.mark.parametrize("threshold", [0.7, 0.8, 0.9])
def test_engine_precision_and_recall(labelled, threshold: float) -> None:
    docs, pairs = labelled
    kept, clusters = dedupe(docs, threshold=threshold, ngram=5)
    assert kept.num_rows + clusters.num_rows == docs.num_rows
    quality = neardup.score(docs, pairs, neardup.keeper_of_from_clusters(clusters), threshold)
    assert quality.positives >= 40  # enough clear pairs that recall is a measurement
    assert quality.correct_drops == quality.dropped, quality.as_dict()  # what 0.999 means on fewer than 1000 drops
    assert quality.precision >= MIN_PRECISION, quality.as_dict()
    assert quality.recall >= MIN_RECALL, quality.as_dict()


def test_score_punishes_unjustified_drops_and_misses(labelled) -> None:
    """The yardstick can fail: dropping every copy regardless of similarity costs precision, and dropping
    nothing costs recall."""
    docs, pairs = labelled
    drop_all_copies = {p.copy_id: p.base_id for p in pairs}
    q = neardup.score(docs, pairs, drop_all_copies, 0.8)
    assert q.recall == 1.0
    assert q.precision < 0.7
    assert q.merged_negatives == q.negatives > 0
    nothing = neardup.score(docs, pairs, {}, 0.8)
    assert nothing.precision == 1.0
    assert nothing.recall == 0.0


def test_score_follows_chains_and_rejects_unknown_ids(labelled) -> None:
    docs, _ = labelled
    a, b, c = docs.column("doc_id").to_pylist()[:3]
    pair = neardup.LabelledPair(a, b, 1.0, "edit")
    assert neardup.score(docs, [pair], {a: c, b: c}, 0.8).recall == 1.0  # both merged into the same keeper
    with pytest.raises(ValueError, match="not in the labelled set"):
        neardup.score(docs, [pair], {"nope": a}, 0.8)
