"""Cross-source exact and near-duplicate removal: sketch -> band index -> verify -> resolve.

Why this shape:

* **Sketches are per document and persistable.** :func:`sketch` turns a table of documents into one row
  per document (:func:`sketch_schema`): the exact-duplicate key, a MinHash signature, its LSH band hashes
  and the metadata the keeper rule needs. A sketch depends only on the document and on the shingling
  parameters (recorded in the schema metadata), so a new or changed source is sketched alone and every
  other source's sketches are reused (:func:`dedupe_incremental`).
* **Exact duplicates** share a 128-bit key of the normalised text (NFKC always; lowercase, whitespace
  collapse, punctuation and digit stripping per :class:`DedupeConfig`), so re-encoded or re-spaced copies
  fall together without any sketching. For code sources the key is over the code tokens with punctuation
  kept (``a + b`` and ``a - b`` are different programs); the other flags apply.
* **Near duplicates.** Prose is shingled on word n-grams (``ngram``) of
  :func:`~mixassets.engine.text_norm.dedupe_words`; code sources on n-grams (``code_ngram``) of identifier,
  number and operator tokens (:func:`~mixassets.engine.text_norm.code_tokens`), where renamed words matter
  less than operators. A document with fewer tokens than n is one shingle of all its tokens. Signatures
  use numpy multiply-shift universal hashing over the ``uint64`` shingle hashes, ``num_perm`` at a time
  (datasketch's ``MinHash.bulk`` does the same arithmetic per document with a modulo and is slower).
  The :class:`~mixassets.engine.dedupe.bands.BandIndex` proposes pairs sharing a band. Bands are chosen for
  recall (>= 95% at the lowest configured threshold, :func:`lsh_params`) because **every candidate is
  verified by the exact Jaccard of the two shingle sets** before anything is dropped: a false candidate
  costs time, a missed one leaves a duplicate. Each text is shingled once: the sketch pass spills every
  document's sorted shingle hashes to a scratch file (:class:`~mixassets.engine.dedupe.shingle_sets.ShingleSpill`,
  an offset per document in memory) and verification reads the candidates' sets back, a window at a time; only
  documents whose sketch was reused from an earlier run are shingled again. The signatures (two thirds of a
  sketch) go to a second scratch file and are read back only for the candidates' MinHash estimates and, once
  the run's other phases are done, into the sketches it hands out: a run's peak memory is those sketches.
* **Thresholds.** A document's threshold is its source's override, else its domain's, else ``threshold``;
  a pair is a near duplicate when its exact Jaccard reaches the *larger* of its two documents' thresholds,
  so a strict source is never merged more loosely because its partner's source is lax.
* **Keeper rule** (deterministic, independent of row order), ``keeper_rule`` in order, default: the more
  permissive license first (public-domain-like < attribution < share-alike < non-commercial / no-derivatives
  / research-only / partner-only < unknown, from :mod:`mixassets.engine.licenses`, the best alternative of
  an ``OR``), the higher trust tier (``trust[source_id]``, missing = 0), the earlier ``capture_time``
  (missing last), the smaller ``doc_id``; then ``doc_id``, ``source_id`` and a hash of the text, which only
  matter for rows that repeat an id.
* **Resolution** (:func:`resolve`): exact-key twins and verified pairs at or above threshold are edges, and each
  connected component keeps one document, its best keeper. Why components: a chain A~B~C where A and C differ
  is one family of copies, and judging C only against kept documents (A) keeps C although it duplicates B, so
  the family survives twice. The walk grows each component from its keeper, best-ranked member next; a member
  names the visited member it matched (an exact twin first, else the highest exact Jaccard, ties to the better
  keeper), so every recorded link is verified and the links lead to the keeper (``cluster_id``).
  ``max_per_cluster`` lets a source or domain keep up to N members of a component (keeper included if it is of
  that source/domain); those rows say ``kept_capped``.
* **Content, not templates** (:mod:`~mixassets.engine.dedupe.content`). What is compared is chosen per source
  kind (``content_fields``): text documents whole, chat records by their user/assistant/tool contents and tool
  calls, never the system prompt; lines that recur in most of a source's chat records (its prompt template) are
  left out, so short examples that share one template are not each other's duplicates.
* **Texts are streamed, never held.** The corpus (:class:`~mixassets.engine.dedupe.corpus.Corpus`: stored tables
  or in-memory ones) is read back in batches: once to sketch (after one pass over chat rows for templates), for
  reused rows in candidate pairs to verify (in windows of a bounded size of held shingle sets), and to write the
  kept rows. Memory holds ids, keeper metadata and
  sketches, so it grows with the number of documents, not with their length.
* A document whose normalised text is empty has no key and no shingles: it is kept and never used as a
  keeper, since dropping it would be losing a document for no stated reason.
"""

from mixassets.engine.dedupe.bands import BandIndex, band_index, pairs_in_runs
from mixassets.engine.dedupe.config import KEEPER_CRITERIA, DedupeConfig, lsh_params
from mixassets.engine.dedupe.corpus import Corpus, check_row_ids
from mixassets.engine.dedupe.incremental import (
    DedupeResult,
    DedupeStats,
    dedupe,
    dedupe_incremental,
    unchanged_sources,
    with_sketched_versions,
)
from mixassets.engine.dedupe.keepers import keeper_order, license_rank
from mixassets.engine.dedupe.resolution import resolve
from mixassets.engine.dedupe.sketching import band_hashes, shingle_set, signatures, sketch, sketch_streamed
from mixassets.engine.dedupe.tables import SKETCH_PARQUET_OPTIONS, SKETCH_SCHEMA, VERIFIED_PAIR_SCHEMA, sketch_schema
from mixassets.engine.dedupe.verification import TextSource, VerifiedPairs, verify

__all__ = [
    "KEEPER_CRITERIA",
    "SKETCH_PARQUET_OPTIONS",
    "SKETCH_SCHEMA",
    "VERIFIED_PAIR_SCHEMA",
    "BandIndex",
    "Corpus",
    "DedupeConfig",
    "DedupeResult",
    "DedupeStats",
    "TextSource",
    "VerifiedPairs",
    "band_hashes",
    "band_index",
    "check_row_ids",
    "dedupe",
    "dedupe_incremental",
    "keeper_order",
    "license_rank",
    "lsh_params",
    "pairs_in_runs",
    "resolve",
    "shingle_set",
    "signatures",
    "sketch",
    "sketch_schema",
    "sketch_streamed",
    "unchanged_sources",
    "verify",
    "with_sketched_versions",
]
