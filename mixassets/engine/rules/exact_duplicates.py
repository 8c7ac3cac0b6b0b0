"""Exact duplicates inside one source (cross-source and near duplicates are the dedupe stage's job).

The rule must remember every kept document of the source, which is the one piece of gating state that grows
with the source. It is kept packed, never as one Python object per document (a dict entry of a bytes key and
a str id costs ~200 bytes, which made a streaming run grow by that much per document): the 16-byte keys with
an 8-byte index into the kept ids sit in a few sorted NumPy runs, and the ids themselves in one byte buffer
with an 8-byte end offset each, so a kept document costs 32 bytes plus the length of its id.
"""

from __future__ import annotations

import unicodedata
from array import array

import numpy as np
import pyarrow as pa

from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule, texts
from mixassets.engine.text_keys import NormalizedHandoff, document_keys
from mixassets.engine.text_norm import text_key

# ``ctx.cache`` key of the seen-map: it lives as long as the context, so a streaming run that keeps one
# context for all its batches finds a duplicate of a document gated batches earlier.
SEEN_CACHE_KEY = "dedupe.exact_in_source:seen"
# ``ctx.cache`` key of the texts the boilerplate rule normalized for this rule (see :func:`normalized_handoff`).
HANDOFF_CACHE_KEY = "dedupe.exact_in_source:normalized"
# Fixed-width bytes compare (and sort) on all 16 bytes, trailing zero bytes included.
_KEY = np.dtype("S16")


def normalize_for_dedupe(text: str) -> str:
    """Case, Unicode compatibility forms and whitespace runs do not make two documents different."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def normalized_handoff(ctx: GateContext) -> NormalizedHandoff:
    """Where the boilerplate rule leaves the ``normalize_for_dedupe`` of the texts it keyed for this rule, which
    keys most of the same text objects next (one per gate call)."""
    return ctx.cache.setdefault(HANDOFF_CACHE_KEY, NormalizedHandoff(normalize_for_dedupe))


def dedupe_key(source_id: str, text: str) -> bytes:
    """16 bytes per document instead of its text: a collision needs ~2**64 documents in one source."""
    return text_key(f"{source_id}\x00{normalize_for_dedupe(text)}")


def _merge_runs(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One sorted run from two with disjoint keys, in linear time (plus a binary search per key of ``b``)."""
    (a_keys, a_vals), (b_keys, b_vals) = a, b
    at = np.searchsorted(a_keys, b_keys) + np.arange(len(b_keys))
    from_a = np.ones(len(a_keys) + len(b_keys), dtype=bool)
    from_a[at] = False
    keys = np.empty(len(from_a), dtype=_KEY)
    vals = np.empty(len(from_a), dtype=np.int64)
    keys[at], vals[at] = b_keys, b_vals
    keys[from_a], vals[from_a] = a_keys, a_vals
    return keys, vals


class FirstSeen:
    """Exact map of document key -> id of the first document with that key, in ~32 bytes plus the id's
    length per kept document.

    Keys live in sorted runs of geometrically decreasing size (each more than twice the next, as in a
    log-structured merge), so a batch is looked up with one binary search per run, a new batch's keys become
    a run of their own, and each key takes part in O(log n) merges in all; a single sorted array with a
    buffer of recent keys would instead re-sort everything once the buffer fills, and a buffer small enough
    to stay flat would make those re-sorts quadratic in the source size.
    """

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted S16 keys, index of the kept id)
        self._id_bytes = bytearray()
        self._id_ends = array("Q")

    def __len__(self) -> int:
        return len(self._id_ends)

    def kept_id(self, index: int) -> str:
        start = self._id_ends[index - 1] if index else 0
        return self._id_bytes[start : self._id_ends[index]].decode()

    def _find(self, keys: np.ndarray) -> np.ndarray:
        """Index of the kept id of each of ``keys``, -1 for keys not seen yet."""
        found = np.full(len(keys), -1, dtype=np.int64)
        for run_keys, run_vals in self._runs:
            at = np.minimum(np.searchsorted(run_keys, keys), len(run_keys) - 1)
            hit = run_keys[at] == keys
            found[hit] = run_vals[at[hit]]
        return found

    def _add_run(self, keys: np.ndarray, vals: np.ndarray) -> None:
        run = (keys, vals)
        while self._runs and len(self._runs[-1][0]) <= 2 * len(run[0]):
            run = _merge_runs(self._runs.pop(), run)
        self._runs.append(run)

    def first_ids(self, doc_ids: list[str], keys: list[bytes]) -> list[str]:
        """For each document in order, the id of the first document (this one or an earlier one, in this
        call or an earlier call) with its key; the documents whose key is new are remembered."""
        if not keys:
            return []
        batch = np.frombuffer(b"".join(keys), dtype=_KEY)
        # Sorted distinct keys, where each first occurs in the batch, and which distinct key each row has.
        distinct, first_row, which = np.unique(batch, return_index=True, return_inverse=True)
        found = self._find(distinct)
        new = np.flatnonzero(found < 0)
        found[new] = np.arange(len(self), len(self) + len(new))
        for row in first_row[new].tolist():
            self._id_bytes += doc_ids[row].encode()
            self._id_ends.append(len(self._id_bytes))
        if len(new):
            self._add_run(distinct[new], found[new])
        return [self.kept_id(i) for i in found[which].tolist()]


class ExactDedupeRule(Rule):
    """A repeated document only over-weights itself; the first one (in source order) is kept and named.

    Only documents before a duplicate decide about it, so the rule needs no pass over the whole source: the
    packed seen-map (normalized-text hash -> kept doc id) in ``ctx.cache`` is all it carries between batches.
    """

    id = "dedupe.exact_in_source"
    version = 1

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        seen: FirstSeen = ctx.cache.setdefault(SEEN_CACHE_KEY, FirstSeen())
        # DOCUMENT_SCHEMA forbids a null id, but a cast does not check that; an empty id is still remembered.
        doc_ids = ["" if d is None else d for d in docs.column("doc_id").to_pylist()]
        prefixes = [f"{source_id}\x00" for source_id in docs.column("source_id").to_pylist()]
        keys = document_keys(texts(docs), normalize_for_dedupe, prefixes, handoff=normalized_handoff(ctx))  # dedupe_key
        return [
            [] if kept == doc_id else [Outcome("reject", f"same normalized text as kept doc {kept}")]
            for doc_id, kept in zip(doc_ids, seen.first_ids(doc_ids, keys), strict=True)
        ]
