"""Boilerplate: lines that many documents of one source share (headers, navigation, footers, license banners).

They are stripped rather than used to hold a document: the rest of the page is usually fine, and leaving the
banner in would make it one of the most repeated strings in the corpus. The rule sees the documents still
standing when it runs (one source per ``gate()`` call), so "share of the source's documents" is the share
of those. Stripped spans are whole lines including their line break, as offsets into the original text, so
``text[start:end]`` is exactly what was removed. Chat documents are left alone: a repeated message ("Hello!
How can I help?") is part of the conversation, and stripping it would change what a turn means.

The runner applies the strips before the rules that follow, so the length rules judge the stripped text:
a page that was nothing but header and footer ends up empty or too short and is rejected there.

Whether a line is boilerplate depends on the whole source, so a streaming runner calls ``prepare`` over all
batches first. The counts are kept as 8-byte line hashes in sorted NumPy arrays (12 bytes per distinct line)
and the distinct documents as 16-byte hashes in a sorted NumPy array (16 bytes per document), never as text
and never as one Python object per document or line, which would cost ~100 bytes each and leave the prepare
pass growing several times faster than its data; ``gate()`` goes through the same code with its one table as
the only batch, so both runners strip exactly the same lines. Both sets are exact: whether a line clears
``min_doc_fraction`` depends on the exact distinct-document count, so no sketch may stand in for them.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate

import numpy as np
import pyarrow as pa

from mixassets.engine.rules.base import DocOutcomes, GateContext, Outcome, Rule, texts
from mixassets.engine.rules.exact_duplicates import normalize_for_dedupe, normalized_handoff
from mixassets.engine.text_keys import NormalizedHandoff, document_keys, line_hashes
from mixtrain.config.data import BoilerplateConfig

# Hashes buffered before they are merged into the sorted counts: bounds both the buffer and the merge cost.
_MERGE_EVERY = 1 << 20
# Document keys buffered in a Python set before they join the sorted array; the buffer may also grow to an
# eighth of the array, so the merges (a sort of everything seen) stay amortised O(n log n) on big sources.
_SEEN_MERGE_MIN = 1 << 16
_KEY = np.dtype("S16")


def line_key(line: str) -> str:
    """Whitespace runs and surrounding spaces do not make two banner lines different."""
    return " ".join(line.split())


@dataclass(frozen=True)
class Boilerplate:
    """What ``RepeatedLineRule.prepare`` found: the source's distinct-document count and, for the lines that
    qualify as boilerplate only, their hash -> number of distinct documents that contain them."""

    n_docs: int
    lines: dict[int, int]


class _SeenKeys:
    """Exact set of 16-byte document keys at ~16 bytes each: a sorted ``S16`` array, plus a small set of the
    keys added since the last merge (fixed-width ``S16`` compares all 16 bytes, trailing zero bytes included)."""

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype=_KEY)
        self._recent: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def in_sorted(self, keys: list[bytes]) -> list[bool]:
        """Which of ``keys`` were merged already: one vectorised look-up per batch, not one per document."""
        if not keys or not len(self._sorted):
            return [False] * len(keys)
        wanted = np.array(keys, dtype=_KEY)
        at = np.minimum(np.searchsorted(self._sorted, wanted), len(self._sorted) - 1)
        return (self._sorted[at] == wanted).tolist()

    def add_if_new(self, key: bytes, merged: bool) -> bool:
        """Add ``key`` (``merged``: found by :meth:`in_sorted` for this batch); False when it was seen before."""
        if merged or key in self._recent:
            return False
        self._recent.add(key)
        return True

    def merge_if_full(self) -> None:
        """Call between batches only: :meth:`in_sorted` answers for the array as it was when it was asked."""
        if len(self._recent) >= max(_SEEN_MERGE_MIN, len(self._sorted) // 8):
            recent = np.array(list(self._recent), dtype=_KEY)
            self._sorted = np.sort(np.concatenate([self._sorted, recent]), kind="mergesort")
            self._recent = set()


class _LineDocCounts:
    """Document frequency of line hashes in bounded memory: new hashes are buffered in one flat 8-byte array
    and merged in bulk into one sorted key array with a parallel count array, instead of a Python dict entry
    (~100 bytes) per line or a NumPy array object per document."""

    def __init__(self) -> None:
        self._keys = np.empty(0, dtype=np.uint64)
        self._counts = np.empty(0, dtype=np.uint32)
        self._pending = array("Q")

    def add_pairs(self, docs: np.ndarray, hashes: np.ndarray) -> None:
        """Each document's hashes (``docs[i]`` holds ``hashes[i]``), a hash counted once per document."""
        if len(hashes):
            order = np.lexsort((hashes, docs))
            docs, hashes = docs[order], hashes[order]
            distinct = np.ones(len(hashes), dtype=bool)
            distinct[1:] = (docs[1:] != docs[:-1]) | (hashes[1:] != hashes[:-1])
            self._pending.frombytes(hashes[distinct].astype(np.uint64).tobytes())
            if len(self._pending) >= _MERGE_EVERY:
                self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        new = np.frombuffer(self._pending, dtype=np.uint64)
        keys = np.concatenate([self._keys, new])
        weights = np.concatenate([self._counts, np.ones(len(new), dtype=np.uint32)])
        del new  # the buffer cannot be replaced while a NumPy view of it is alive
        self._keys, inverse = np.unique(keys, return_inverse=True)
        self._counts = np.bincount(inverse, weights=weights, minlength=len(self._keys)).astype(np.uint32)
        self._pending = array("Q")

    def at_least(self, min_count: int) -> dict[int, int]:
        self._merge()
        chosen = self._counts >= min_count
        return dict(zip(self._keys[chosen].tolist(), self._counts[chosen].tolist(), strict=True))


class RepeatedLineRule(Rule):
    """A line in at least ``min_docs`` documents *and* at least ``min_doc_fraction`` of them is boilerplate
    (exact copies of a document count once). Both conditions, so a tiny source does not lose a line that
    happens to occur twice, and a huge source does not lose a phrase common in absolute terms but rare in share.
    Each strip's score is the line's share of the distinct documents, the number ``min_doc_fraction`` bounds, so
    that threshold can be re-tuned from the decision log (version 2 added the score; it strips the same lines).
    """

    id = "boilerplate.repeated_line"
    version = 2
    needs_prepare = True

    def prepare(self, batches: Iterable[pa.Table], ctx: GateContext) -> Boilerplate:
        cfg = ctx.gating.boilerplate
        if not cfg.enabled:
            return Boilerplate(0, {})
        counter = _Counter(normalized_handoff(ctx))
        for docs in batches:
            prose = [t for kind, t in zip(docs.column("kind").to_pylist(), texts(docs), strict=True) if kind != "chat"]
            counter.add(prose, batch_line_hashes(prose, cfg.min_line_chars))
        return counter.result(cfg)

    def evaluate(self, docs: pa.Table, ctx: GateContext) -> list[DocOutcomes]:
        cfg = ctx.gating.boilerplate
        out: list[DocOutcomes] = [[] for _ in range(docs.num_rows)]
        if not cfg.enabled:
            return out
        rows = [i for i, kind in enumerate(docs.column("kind").to_pylist()) if kind != "chat"]
        all_texts = texts(docs)
        prose = [all_texts[i] for i in rows]
        # Each line is hashed once: without a prepared state (``gate()``) the same hashes count the lines too.
        lines = batch_line_hashes(prose, cfg.min_line_chars)
        state: Boilerplate | None = ctx.prepared.get(self.id)
        if state is None:
            counter = _Counter(normalized_handoff(ctx))
            counter.add(prose, lines)
            state = counter.result(cfg)
        if not state.lines:
            return out
        hashes, line_doc, line_no = lines
        hit = np.isin(hashes, np.fromiter(state.lines, dtype=np.uint64, count=len(state.lines)))
        n_docs = state.n_docs
        hit_doc, hit_no, hit_hash = line_doc[hit].tolist(), line_no[hit].tolist(), hashes[hit].tolist()
        reasons: dict[int, str] = {}  # by document count: the same few counts recur on every page
        j = 0
        while j < len(hit_doc):  # the hits grouped by document, each group in line order
            d = hit_doc[j]
            i = rows[d]
            ends = list(accumulate(map(len, prose[d].splitlines(keepends=True))))
            while j < len(hit_doc) and hit_doc[j] == d:
                n = hit_no[j]
                count = state.lines[hit_hash[j]]
                reason = reasons.get(count)
                if reason is None:
                    reason = reasons[count] = (
                        f"line in {count} of {n_docs} distinct documents "
                        f"(>= min_docs {cfg.min_docs}, share {count / n_docs:.2f} >= {cfg.min_doc_fraction})"
                    )
                span = (ends[n - 1] if n else 0, ends[n])
                out[i].append(Outcome("strip", reason, span, "", score=count / n_docs))
                j += 1
        return out


class _Counter:
    """The prepare pass's state: the distinct documents seen and the document frequency of their lines."""

    def __init__(self, handoff: NormalizedHandoff) -> None:
        self.seen = _SeenKeys()
        self.counts = _LineDocCounts()
        self.handoff = handoff  # the exact-duplicate rule keys most of the same texts next

    def add(self, prose: list[str], lines: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """One batch: its prose texts and their :func:`batch_line_hashes`."""
        # Copies of one document count once: five copies of a page make a duplicate (which the exact-duplicate
        # rule resolves by keeping one), not five pages sharing their every line. The first copy is counted.
        doc_keys = document_keys(prose, normalize_for_dedupe, handoff=self.handoff, remember=True)
        first = np.zeros(len(prose), dtype=bool)
        for d, (key, merged) in enumerate(zip(doc_keys, self.seen.in_sorted(doc_keys), strict=True)):
            first[d] = self.seen.add_if_new(key, merged)
        hashes, line_doc, _ = lines
        keep = first[line_doc]
        self.counts.add_pairs(line_doc[keep], hashes[keep])
        self.seen.merge_if_full()

    def result(self, cfg: BoilerplateConfig) -> Boilerplate:
        n_docs = len(self.seen)
        lines = {h: c for h, c in self.counts.at_least(cfg.min_docs).items() if c / n_docs >= cfg.min_doc_fraction}
        return Boilerplate(n_docs, lines)


def batch_line_hashes(prose: list[str], min_chars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every line of ``prose`` whose :func:`line_key` has at least ``min_chars`` characters, as three parallel
    arrays: the key's ``stable_hash64``, the text's index and the line's index in ``text.splitlines()``."""
    # Flat arrays (8 bytes a line each), not lists of Python objects (~40 bytes a line each).
    return line_hashes(prose, min_chars)
