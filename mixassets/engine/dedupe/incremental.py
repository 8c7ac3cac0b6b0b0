"""Whole runs: a full build (:func:`dedupe`) and a refresh that reuses an earlier run's sketches and
verified pairs (:func:`dedupe_incremental`), with the typed result a caller persists.

Why a module: it composes the stages (sketch, band, verify, resolve) and owns what is reused between runs.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.dedupe.bands import _pairs_touching, _reband, candidate_pairs
from mixassets.engine.dedupe.config import (
    _META_BANDING,
    _META_FINGERPRINT,
    _META_SKETCH_SET,
    REQUIRED_COLUMNS,
    DedupeConfig,
)
from mixassets.engine.dedupe.content import VIEW_COLUMNS, ContentView, find_templates
from mixassets.engine.dedupe.corpus import Corpus, CorpusInput, check_row_ids
from mixassets.engine.dedupe.digest import (
    _digest_lanes,
    _format_digest,
    _parse_digest,
    _row_keys,
    _stored_sketch_set,
    _with_sketch_set,
)
from mixassets.engine.dedupe.resolution import resolve
from mixassets.engine.dedupe.shingle_sets import ShingleSpill
from mixassets.engine.dedupe.sketching import _content_hashes, sketch_streamed
from mixassets.engine.dedupe.tables import _capture_utc, _check_columns, _check_sketches, _in_set, _optional_string
from mixassets.engine.dedupe.verification import VerifiedPairs, _cached_pairs, _verify
from mixassets.engine.freed_memory import release_freed_memory

# Above this many runs of consecutive reused rows, a refresh gathers its sketches with one take instead of slices.
_MAX_SLICES = 64
# The data version of each source the sketches were made from (see with_sketched_versions).
_META_SKETCHED_VERSIONS = b"mixtrain.dedupe.gated_versions"
# Each chat source's template lines, as hex line hashes (see with_templates).
_META_TEMPLATES = b"mixtrain.dedupe.templates"
# Input rows per batch of kept rows handed to a writer: ~30 MB of text at ~2 KB/doc.
_KEPT_BATCH_ROWS = 16_384


# -- whole runs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DedupeStats:
    """What a run had to compute, and what it could reuse from an earlier run."""

    documents: int
    sketched: int
    sketches_reused: int
    candidate_pairs: int  # pairs proposed by the band index in this run
    pairs_verified: int  # exact Jaccard computed from text in this run
    pairs_reused: int  # taken from the previous verified pairs
    incremental: bool  # True when only pairs touching new documents were queried
    note: str = ""


@dataclass(frozen=True)
class DedupeResult:
    """What a run decided, and what to persist for the next one.

    The kept rows are not copied by the run, nor held: a copy holds every kept text again (the bulk of the
    corpus), so a caller that writes them out takes them a batch at a time (:meth:`kept_batches`), read back
    from the corpus, and memory holds one batch. :attr:`kept` builds the whole table on first use.
    """

    kept_mask: np.ndarray  # by input row
    clusters: pa.Table  # DEDUPE_CLUSTER_SCHEMA
    sketches: pa.Table  # sketch_schema(config), input row order: persist for the next run
    verified_pairs: pa.Table  # VERIFIED_PAIR_SCHEMA: persist for the next run
    stats: DedupeStats
    corpus: Corpus = field(repr=False)  # the input documents, which the kept rows are read from

    @property
    def docs(self) -> pa.Table:
        """The input documents as one table: the caller's own for an in-memory table, else read whole."""
        return self.corpus.table()

    def metadata(self) -> dict[str, int | float | bool]:
        """What the run decided and what it reused, as the deduplicated corpus reports it."""
        match = self.clusters.column("match_type").to_pylist()
        actions = self.clusters.column("action").to_pylist()
        n, kept, stats = self.stats.documents, self.kept_count, self.stats
        return {
            "documents_in": n,
            "documents_kept": kept,
            "exact_duplicates": match.count("exact"),
            "near_duplicates": match.count("near"),
            "kept_under_cluster_cap": actions.count("kept_capped"),
            "dedupe_rate": round(1 - kept / n, 4),
            "sketched": stats.sketched,
            "sketches_reused": stats.sketches_reused,
            "pairs_verified": stats.pairs_verified,
            "pairs_reused": stats.pairs_reused,
            "incremental": stats.incremental,
        }

    def dropped_per_source(self) -> dict[str, int]:
        """``dropped/<source>``: how many documents of each source were dropped as duplicates."""
        dropped = self.clusters.filter(pc.equal(self.clusters["action"], "dropped"))
        counts = pc.value_counts(dropped.column("source_id")).to_pylist() if dropped.num_rows else []
        return {f"dropped/{c['values']}": int(c["counts"]) for c in counts}

    @cached_property
    def kept(self) -> pa.Table:
        """The input rows kept, in the input's schema and order (every kept text in memory at once)."""
        schema = self.corpus.schema
        parts = [p if p.schema.equals(schema) else p.cast(schema) for p in self.kept_batches()]
        return pa.concat_tables(parts) if parts else schema.empty_table()

    @property
    def kept_count(self) -> int:
        return int(np.count_nonzero(self.kept_mask))

    def kept_batches(self, max_rows: int | None = None) -> Iterator[pa.Table]:
        """The kept rows in input order, as tables of up to ``max_rows`` input rows each (default
        ``_KEPT_BATCH_ROWS``; fewer from a stored table, which is read ``Corpus.read_rows`` rows at a time); a
        batch where every row is kept is not copied. Together they equal :attr:`kept`."""
        yield from self.corpus.kept_batches(self.kept_mask, _KEPT_BATCH_ROWS if max_rows is None else max_rows)


def _assemble(
    previous: pa.Table,
    fresh: pa.Table,
    reuse_from: np.ndarray,
    new_rows: np.ndarray,
    current: pa.Table,
    previous_digest: str,
) -> pa.Table:
    """The sketches in input row order: row i is ``previous[reuse_from[i]]``, or the next row of ``fresh`` where
    ``reuse_from[i] < 0``. A refresh mostly keeps long runs of previous rows in order, so those runs are
    sliced (no copy) and only a scattered layout is gathered with ``take``. The keeper metadata is the
    current rows' (a license or domain may change without the text changing, and the keeper rule must see
    the current values; ``current`` holds them, by input row). The sketch-set digest is ``previous_digest`` (the
    previous sketches' own) less the previous rows not reused plus the fresh ones, so only those rows' ids are
    hashed."""
    n = len(reuse_from)
    src = reuse_from.copy()
    src[new_rows] = previous.num_rows + np.arange(new_rows.size)
    stacked = pa.concat_tables([previous, fresh.cast(previous.schema)])
    breaks = np.flatnonzero(np.diff(src) != 1) + 1
    if breaks.size < _MAX_SLICES:
        starts = np.concatenate([[0], breaks]).tolist()
        stops = [*breaks.tolist(), n]
        out = pa.concat_tables([stacked.slice(src[a], b - a) for a, b in zip(starts, stops, strict=True)])
    else:
        out = stacked.take(pa.array(src, pa.int64()))
    for name, column in (
        ("domain", _optional_string(current, "domain")),
        ("license", _optional_string(current, "license")),
        ("capture_time", _capture_utc(current)),
    ):
        out = out.set_column(out.schema.get_field_index(name), out.schema.field(name), column)
    meta = dict(fresh.schema.metadata or {})
    before = _parse_digest(previous_digest, previous.num_rows)
    added = _parse_digest(meta.get(_META_SKETCH_SET, b"").decode(), fresh.num_rows)
    if before is None or added is None:
        return _with_sketch_set(out.replace_schema_metadata(meta))
    used = np.zeros(previous.num_rows, dtype=bool)
    used[reuse_from[reuse_from >= 0]] = True
    left = previous.select(["source_id", "doc_id", "content_hash"]).take(pa.array(np.flatnonzero(~used), pa.int64()))
    gone = _digest_lanes(left)
    lanes = (before[0] - gone[0] + added[0], before[1] - gone[1] + added[1])
    meta[_META_SKETCH_SET] = _format_digest(n, lanes).encode()
    return out.replace_schema_metadata(meta)


def dedupe_incremental(
    docs: CorpusInput,
    *,
    previous_sketches: pa.Table | None = None,
    previous_pairs: pa.Table | None = None,
    config: DedupeConfig | None = None,
    trust: Mapping[str, int] | None = None,
    code_sources: Sequence[str] | set[str] | frozenset[str] = frozenset(),
    unchanged_sources: Collection[str] = frozenset(),
) -> DedupeResult:
    """Dedupe the whole corpus ``docs``, reusing an earlier run's ``sketches`` and ``verified_pairs``.

    ``docs`` is an in-memory table, a committed :class:`~mixtrain.tables.StoredTable`, a sequence of them (in
    order) or a :class:`~mixassets.engine.dedupe.corpus.Corpus`. Memory holds the text-free columns and the
    sketches, never the texts: they are streamed back in batches to sketch (one pass, plus one over the rows
    whose content hash a refresh must check), to verify candidate pairs (the pairs' rows only) and, by
    :meth:`DedupeResult.kept_batches`, to write the kept rows. Row ids must be unique (:func:`check_row_ids`).

    A row reuses a previous sketch when its (source_id, doc_id) is unique in ``docs`` and its text and
    code/prose shingling are unchanged (content hash); every other row is sketched now. Rows of
    ``unchanged_sources`` — sources the caller knows hold exactly the documents they held when
    ``previous_sketches`` were made (the asset layer compares partition data versions) — are matched by
    (source_id, doc_id) and shingling mode alone, without reading their text: a refresh that adds one
    source then costs time in proportion to that source, not to the corpus. When
    ``previous_pairs`` is the verified-pairs table of the run that produced ``previous_sketches`` (checked
    by the digest in its metadata), only candidate pairs touching newly sketched rows are queried and
    verified; otherwise all candidates are queried and the old values serve only as a cache. Either way
    the result equals a full build (:func:`dedupe`) of ``docs``. Sketches made with other shingling
    settings are ignored (and reported in ``stats.note``): they cannot be compared with new ones.
    """
    cfg = config or DedupeConfig()
    corpus = Corpus.of(docs)
    missing = [c for c in REQUIRED_COLUMNS if c not in corpus.column_names]
    if missing:
        raise ValueError(f"dedupe: input table lacks required column(s) {missing}; got {corpus.column_names}")
    meta = corpus.metadata()
    _check_columns(meta, [c for c in REQUIRED_COLUMNS if c != "text"])
    check_row_ids(meta)
    n = meta.num_rows
    codes = _in_set(meta.column("source_id"), code_sources)
    notes: list[str] = []
    if previous_sketches is not None:
        try:
            _check_sketches(previous_sketches, cfg, "previous sketches")
        except ValueError as e:
            notes.append(f"previous sketches not reused: {e}")
            previous_sketches, previous_pairs = None, None
    # Every text below is what the content view compares (chat: the selected parts without the source's template).
    templates = _templates(corpus, meta, cfg, previous_sketches, unchanged_sources)
    corpus = corpus.with_view(ContentView(cfg.content_fields, templates))
    release_freed_memory()  # the metadata's read buffers and chunks, and the template pass's batches
    if previous_pairs is not None:
        pairs_meta = previous_pairs.schema.metadata or {}
        if pairs_meta.get(_META_FINGERPRINT, b"").decode() != cfg.fingerprint():
            notes.append("previous verified pairs not reused: made with other shingling settings")
            previous_pairs = None

    reuse_from = np.full(n, -1, dtype=np.int64)
    known_hashes: pa.UInt64Array | None = None  # content hash by row, null where it was not needed
    if previous_sketches is not None and previous_sketches.num_rows and n:
        ident = pc.binary_join_element_wise(meta.column("source_id"), meta.column("doc_id"), "\x1f")
        trusted = _in_set(meta.column("source_id"), unchanged_sources)
        if trusted.any():
            prev_ident = pc.binary_join_element_wise(
                previous_sketches.column("source_id"), previous_sketches.column("doc_id"), "\x1f"
            )
            found = pc.fill_null(pc.index_in(ident, value_set=prev_ident), -1).to_numpy(zero_copy_only=False)
            prev_code = previous_sketches.column("code").to_numpy(zero_copy_only=False)
            same_mode = (found >= 0) & (prev_code[np.maximum(found, 0)] == codes)
            reuse_from[trusted & same_mode] = found[trusted & same_mode]
        check = np.flatnonzero(~trusted)
        if check.size:
            values = _corpus_hashes(corpus, ~trusted, codes)
            at = pa.array(check, pa.int64())
            hashes = pa.array(values[check], pa.uint64())
            here = _row_keys(meta.column("source_id").take(at), meta.column("doc_id").take(at), hashes)
            there = _row_keys(
                previous_sketches.column("source_id"),
                previous_sketches.column("doc_id"),
                previous_sketches.column("content_hash"),
            )
            found = pc.index_in(here, value_set=there)
            reuse_from[check] = pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
            known_hashes = hashes if check.size == n else pa.array(values, pa.uint64(), mask=trusted)
        counts = pc.value_counts(ident)
        repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
        if len(repeated):
            reuse_from[pc.is_in(ident, value_set=repeated).to_numpy(zero_copy_only=False)] = -1
    new_rows = np.flatnonzero(reuse_from < 0)
    old_rows = np.flatnonzero(reuse_from >= 0)

    # The shingle sets and signatures of the rows sketched now go to scratch files: verification does not shingle
    # them again, and no signature is held in memory until the sketches are handed out.
    spill = ShingleSpill()
    try:
        fresh = _sketch_rows(corpus, meta, reuse_from < 0, cfg, code_sources, known_hashes, spill)
        spill.bind(new_rows)
        release_freed_memory()  # each phase's temporaries are freed pages the allocators keep: hand them back
        if old_rows.size == 0:  # a full build: the sketches are already in input order
            sketches = fresh.combine_chunks()
        else:  # a refresh takes rows of the fresh sketches, which would read every mapped page: read them now
            sketches = _assemble(
                _reband(previous_sketches, cfg),
                _resident_signatures(fresh, spill, cfg),
                reuse_from,
                new_rows,
                meta,
                _stored_sketch_set(previous_sketches),
            )
        del fresh

        is_new = np.zeros(n, dtype=bool)
        is_new[new_rows] = True
        pairs_meta = (previous_pairs.schema.metadata or {}) if previous_pairs is not None else {}
        complete_cache = (
            previous_pairs is not None
            and previous_sketches is not None
            and pairs_meta.get(_META_BANDING, b"").decode() == "{},{}".format(*cfg.banding)
            and pairs_meta.get(_META_SKETCH_SET, b"").decode() == _stored_sketch_set(previous_sketches)
        )
        if previous_pairs is not None and not complete_cache:
            notes.append("previous verified pairs are not those of the previous sketches: all pairs queried")
        candidates = _pairs_touching(sketches, is_new, cfg) if complete_cache else candidate_pairs(sketches, cfg)
        release_freed_memory()
        want_cache = (
            previous_pairs is not None and previous_pairs.num_rows > 0 and (len(candidates) > 0 or complete_cache)
        )
        cached = _cached_pairs(previous_pairs, sketches) if want_cache else None
        verified = _verify(sketches, candidates, corpus, cfg, cached, spill)
        if complete_cache and old_rows.size and cached is not None:
            cpos, cexact, cest = cached
            old_old = ~is_new[cpos[:, 0]] & ~is_new[cpos[:, 1]]
            verified = VerifiedPairs(
                np.concatenate([verified.positions, cpos[old_old]]),
                np.concatenate([verified.exact_jaccard, cexact[old_old]]),
                np.concatenate([verified.estimated_jaccard, cest[old_old]]),
                computed=verified.computed,
                reused=verified.reused + int(old_old.sum()),
            )
        release_freed_memory()
        kept_mask, clusters = resolve(sketches, verified, cfg, trust=trust)
        verified_pairs = verified.table(sketches, cfg)
        release_freed_memory()
        if old_rows.size == 0:  # last, once every other phase has handed its memory back
            sketches = _resident_signatures(sketches, spill, cfg)
        release_freed_memory()
    finally:
        spill.close()
    stats = DedupeStats(
        documents=n,
        sketched=int(new_rows.size),
        sketches_reused=int(old_rows.size),
        candidate_pairs=len(candidates),
        pairs_verified=verified.computed,
        pairs_reused=verified.reused,
        incremental=bool(complete_cache),
        note="; ".join(notes),
    )
    return DedupeResult(
        kept_mask=kept_mask,
        clusters=clusters,
        sketches=with_templates(sketches, templates),
        verified_pairs=verified_pairs,
        stats=stats,
        corpus=corpus,
    )


def _resident_signatures(sketches: pa.Table, spill: ShingleSpill, cfg: DedupeConfig) -> pa.Table:
    """``sketches`` (just sketched into ``spill``) with their signature column read into memory from the spill
    rather than mapped from its scratch file: what the run hands out must not depend on a file it deletes."""
    at = sketches.schema.get_field_index("signature")
    return sketches.set_column(at, sketches.schema.field(at), spill.signature_column(cfg.num_perm, mapped=False))


def with_templates(sketches: pa.Table, templates: Mapping[str, frozenset[int]]) -> pa.Table:
    """``sketches`` recording each chat source's template lines (:mod:`~mixassets.engine.dedupe.content`), so a
    refresh that trusts an unchanged source need not read its records again to find them."""
    value = json.dumps({s: sorted(f"{h:016x}" for h in t) for s, t in sorted(templates.items())})
    return sketches.replace_schema_metadata({**(sketches.schema.metadata or {}), _META_TEMPLATES: value.encode()})


def _stored_templates(sketches: pa.Table | None) -> dict[str, frozenset[int]] | None:
    raw = ((sketches.schema.metadata or {}) if sketches is not None else {}).get(_META_TEMPLATES)
    if raw is None:
        return None
    return {s: frozenset(int(h, 16) for h in hs) for s, hs in json.loads(raw).items()}


def _templates(
    corpus: Corpus,
    meta: pa.Table,
    cfg: DedupeConfig,
    previous: pa.Table | None,
    unchanged: Collection[str],
) -> dict[str, frozenset[int]]:
    """Each chat source's template lines: found from its records (one pass over the chat rows' messages), or,
    for a source the caller trusts as unchanged, taken from the previous sketches that recorded them."""
    if "kind" not in meta.column_names:
        return {}
    chat = pc.fill_null(pc.equal(meta.column("kind"), "chat"), False).to_numpy(zero_copy_only=False)
    stored = _stored_templates(previous)
    out: dict[str, frozenset[int]] = {}
    if stored is not None and unchanged:
        reused = set(unchanged)
        out.update({s: t for s, t in stored.items() if s in reused})
        chat &= ~_in_set(meta.column("source_id"), reused)
    if chat.any():
        out.update(
            find_templates(
                corpus.column_batches(VIEW_COLUMNS, chat),
                cfg.content_fields,
                cfg.template_min_share,
                cfg.template_min_records,
            )
        )
    return out


def _corpus_hashes(corpus: Corpus, wanted: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The content hash of each ``wanted`` row (0 elsewhere), reading only the texts of tables that hold one."""
    out = np.zeros(corpus.rows, dtype=np.uint64)
    for start, texts in corpus.text_batches(wanted):
        local = np.flatnonzero(wanted[start : start + len(texts)])
        if local.size:
            rows = start + local
            out[rows] = _content_hashes(texts.take(pa.array(local, pa.int64())), codes[rows]).to_numpy()
    return out


def _sketch_rows(
    corpus: Corpus,
    meta: pa.Table,
    wanted: np.ndarray,
    cfg: DedupeConfig,
    code_sources: Sequence[str] | set[str] | frozenset[str],
    known_hashes: pa.UInt64Array | None,
    spill: ShingleSpill | None = None,
) -> pa.Table:
    """The sketches of the ``wanted`` rows, in row order: texts are read batch by batch (only tables and parts
    that hold a wanted row) and sketched as they come, so memory holds one batch of texts."""
    rows = np.flatnonzero(wanted)
    every = rows.size == len(wanted)
    take = None if every else pa.array(rows, pa.int64())

    def texts() -> Iterator[pa.Array]:
        for start, batch in corpus.text_batches(None if every else wanted):
            local = np.flatnonzero(wanted[start : start + len(batch)])
            if local.size == len(batch):
                yield batch
            elif local.size:
                yield batch.take(pa.array(local, pa.int64()))

    hashes = known_hashes if known_hashes is None or take is None else known_hashes.take(take)
    return sketch_streamed(
        meta if take is None else meta.take(take),
        texts(),
        cfg,
        code_sources=code_sources,
        content_hashes=hashes,
        spill=spill,
    )


def dedupe(
    docs: pa.Table,
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    seed: int = 1,
    source_rank: Mapping[str, int] | None = None,
    config: DedupeConfig | None = None,
    code_sources: Sequence[str] | set[str] | frozenset[str] = frozenset(),
) -> tuple[pa.Table, pa.Table]:
    """Drop exact and near duplicates across all sources of ``docs`` (a full build).

    ``config``, when given, replaces ``threshold``/``num_perm``/``ngram``/``seed``; ``source_rank`` is the
    trust tier per source. Returns ``(kept, clusters)``: ``kept`` has the input's schema and row order;
    ``clusters`` is in ``DEDUPE_CLUSTER_SCHEMA``, one row per non-keeper member, in keeper order.
    """
    cfg = config or DedupeConfig(threshold=threshold, num_perm=num_perm, ngram=ngram, seed=seed)
    result = dedupe_incremental(docs, config=cfg, trust=source_rank, code_sources=code_sources)
    return result.kept, result.clusters


def with_sketched_versions(sketches: pa.Table, versions: Mapping[str, str]) -> pa.Table:
    """``sketches`` recording the data version of each source they were made from, so that a later refresh can
    pass the sources still at those versions as ``unchanged_sources`` (:func:`unchanged_sources`)."""
    meta = {**(sketches.schema.metadata or {}), _META_SKETCHED_VERSIONS: json.dumps(dict(versions), sort_keys=True)}
    return sketches.replace_schema_metadata(meta)


def unchanged_sources(previous: pa.Table | None, versions: Mapping[str, str]) -> set[str]:
    """Sources whose data version in ``versions`` is the one the ``previous`` sketches recorded."""
    raw = ((previous.schema.metadata or {}) if previous is not None else {}).get(_META_SKETCHED_VERSIONS)
    seen = json.loads(raw) if raw else {}
    return {sid for sid, version in versions.items() if seen.get(sid) == version}
