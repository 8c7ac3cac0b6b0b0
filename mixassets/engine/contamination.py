"""Screen training documents for eval-set contamination: exact n-gram overlap, fuzzy containment/Jaccard, code
structure and paraphrase.

Six methods, each answering a different question about one (document, item field) pair:

* ``ngram<n>`` (exact, GPT-3 appendix C): the document shares at least one ``n``-gram (default 13) of
  normalised tokens with the field. Lowercased ``\\w+`` tokens make the test blind to re-formatting and let
  one rule cover prose and code; a 13-gram is long enough that chance overlap in unrelated text is rare,
  yet short enough that a partial copy of a solution is caught. ``span_start``/``span_end`` locate the
  longest run of consecutive shared n-grams in the document's *original* text.
* ``containment`` (fuzzy): at least ``containment_threshold`` of the field's distinct word
  ``containment_n``-grams (default 5) occur in the document. Local edits that break every 13-gram (a few
  renamed tokens, merged tokens, dropped lines) leave most 5-grams intact, and measuring the share of the
  *item* that is present, rather than a symmetric similarity, still works when the item sits inside a
  document many times its size. A *consistent rename of every identifier* is not such an edit: names are
  most of a solution's tokens, so it breaks nearly every 5-gram too (renamed HumanEval programs without
  their docstring: 2% found by these three methods); that is what ``code<n>`` is for.
* ``jaccard`` (fuzzy): the exact Jaccard similarity of the field's and the whole document's
  ``containment_n``-gram sets reaches ``jaccard_threshold``: the document *is* (an edited copy of) the
  item rather than merely containing it. Jaccard is never larger than containment on the same shingles,
  so this method finds no document that containment (at a threshold no higher) misses; it labels
  near-copies, and screens on its own when containment is disabled.
* ``stem_answer`` (multiple-choice items): the item's stem and its correct answer's text close together, with
  or without the options (:mod:`mixassets.engine.contamination_pairs`); a field ``<name>+answer``, kind target.
* ``code<n>`` (:mod:`~mixassets.engine.contamination_code`): the document shares an ``n``-gram (default
  28) of *canonical* Python tokens with a Python field, every identifier replaced by one placeholder, so a
  renamed or reformatted copy of a solution matches; spans are in characters of the original text. Its fuzzy
  half, ``code_containment``, fires when one window of the document holds at least
  ``code_containment_threshold`` of the field's distinct canonical 10-grams with parentheses and trailing
  commas left out: what ``ast.unparse`` or a formatter rewrites breaks every 28-gram that spans it. Its
  whole-block half, ``code_body`` (:mod:`~mixassets.engine.contamination_body`), finds an answer too short for
  either (``for i in reversed(range(n)): ...``) as a complete block of the document: the same logical lines,
  nested the same way, with the same number literals, alone between a header and a dedent. Its line half,
  ``code_lines`` (:mod:`~mixassets.engine.contamination_lines`), finds a rewrite (some names renamed, lines
  dropped, comments added) by the field's distinctive canonical lines, docstring lines included, in one window.
* ``semantic`` (:mod:`~mixassets.engine.contamination_semantic`, opt-in): a window of the document that
  shares enough of a field's content words is embedded with all-MiniLM-L6-v2 and lies within a calibrated
  cosine of the field's prose: a paraphrase.

N-grams that many items of one eval set share (a few-shot opener) are never evidence for the word methods
(:class:`ScreenConfig`, ``shared_ngram_*``).

Why Jaccard is computed exactly rather than estimated with MinHash: the containment pass already counts,
for every document, how many distinct shingles it shares with every item field (one inverted-index
lookup per shingle), which is the intersection size. With the document's own distinct-shingle count that
*is* the Jaccard similarity, so a MinHash sketch per document would cost time and add estimation error
for no gain. Items are few and documents many, which is also why the index is built over the items and
each document is streamed through it once.

Linear in the corpus: documents are processed in chunks whose token hashes are concatenated, every
n-gram of the chunk is looked up in a sorted array of item n-gram hashes (a bit table over the hashes'
low bits first discards the vast majority that match no item, then one ``searchsorted``), and matches are
grouped per (document, field) with ``np.unique``. Python-level work happens only per finding.
There is no loop over documents x items.

One row per (document, item field, method that fired): the methods say different things (where the exact
overlap is, how much of the item is present, whether the document is a near-copy), and one score cannot
rank them against each other. :func:`contamination_report` and :func:`item_leaks` collapse them per item.

``kind`` tells what leaked: ``"target"`` for an answer (solution, reference output), whose presence lets a
model score by recall; ``"holdout"`` for what the model is shown (prompt, question). It is decided from
the field name by :attr:`ScreenConfig.field_kinds` (case-insensitive). A field name not in the mapping is
labelled ``"holdout"``: a registry puts the answer under a recognisable name (HumanEval's ``solution``, a
task's ``reference``), so an unnamed extra field is most likely part of the input (e.g. the ``code`` a
signature task shows the model); and "target" is the stronger claim (answer leakage inflates scores
directly), which a report should not make by guessing. Either way the document is removed.

Fields too short for every enabled method (fewer than ``n`` tokens and fewer than ``fuzzy_min_shingles``
distinct shingles) cannot be screened; they are listed by :func:`unscreenable_fields` and counted in the
report rather than silently ignored. The fuzzy methods need ``fuzzy_min_shingles`` shingles because a
share of a handful of 5-grams is met by chance in ordinary code (``for i in range len``).

Tokens are the word runs of the text folded by :func:`~mixassets.engine.text_norm.screen_fold` (format
characters such as zero-width spaces and soft hyphens deleted, NFKC, look-alike Cyrillic/Greek letters mapped
to Latin, casefolded), the same for items and documents; :func:`token_spans` folds run by run so that every
token keeps the character offsets of the original text it came from. N-grams are compared by 64-bit
BLAKE2b-derived hashes (:mod:`mixassets.engine.text_norm`), identical in every process; with 2^64 values
a false hit from a collision is negligible next to the volume of any realistic corpus.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixassets.engine.contamination_body import body_findings
from mixassets.engine.contamination_code import DocTokens, code_findings, fuzzy_code_findings
from mixassets.engine.contamination_grams import GramIndex
from mixassets.engine.contamination_index import (
    _DOC_COLUMNS,
    DEFAULT_FIELD_KINDS,
    HOLDOUT,
    METHODS,
    TARGET,
    FieldRef,
    ScreenConfig,
    ScreenIndex,
    UnscreenableField,
    _require,
    _resolve,
    build_index,
    screen_tokens,
    token_spans,
    unscreenable_fields,
)
from mixassets.engine.contamination_lines import line_findings
from mixassets.engine.contamination_pairs import stem_answer_findings
from mixassets.engine.contamination_report import ITEM_LEAK_SCHEMA, REPORT_SCHEMA, contamination_report, item_leaks
from mixassets.engine.contamination_semantic import semantic_findings
from mixassets.engine.text_norm import TokenHasher, ngram_hashes
from mixtrain.schema import FINDING_SCHEMA

__all__ = [
    "DEFAULT_FIELD_KINDS",
    "HOLDOUT",
    "ITEM_LEAK_SCHEMA",
    "METHODS",
    "OVERLAP_MAX_CHARS",
    "REPORT_SCHEMA",
    "TARGET",
    "BatchScreen",
    "FieldRef",
    "ScreenConfig",
    "ScreenIndex",
    "UnscreenableField",
    "build_index",
    "contamination_report",
    "item_leaks",
    "screen",
    "screen_batch",
    "screen_tokens",
    "token_spans",
    "unscreenable_fields",
]

OVERLAP_MAX_CHARS = 300


# Documents per vectorised pass: large enough to amortise numpy call overhead, small enough that the
# chunk's token and n-gram arrays (~3 KB per 2 KB document) stay in cache-friendly sizes.
_CHUNK = 512


def _cut(text: str) -> str:
    if len(text) <= OVERLAP_MAX_CHARS:
        return text
    cut = text.rfind(" ", 0, OVERLAP_MAX_CHARS)
    return text[: cut if cut > 0 else OVERLAP_MAX_CHARS] + " …"


def _longest_run(positions: np.ndarray) -> tuple[int, int]:
    """The longest stretch of consecutive n-gram start positions (sorted, unique), as (first, last)."""
    breaks = np.flatnonzero(np.diff(positions) != 1)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(positions) - 1]))
    best = int(np.argmax(ends - starts))
    return int(positions[starts[best]]), int(positions[ends[best]])


def _densest_window(positions: np.ndarray, width: int) -> tuple[int, int]:
    """(first, last) of the sorted positions within ``width`` tokens of each other that hold the most."""
    last = np.searchsorted(positions, positions + width, side="right") - 1
    best = int(np.argmax(last - np.arange(len(positions))))
    return int(positions[best]), int(positions[last[best]])


@dataclass
class _Finding:
    doc: int  # row in the docs table
    ref: int
    match_type: str
    first: int  # token positions of the overlap, inclusive
    last: int
    score: float
    chars: tuple[int, int] | None = None  # the span in characters, for methods that do not count word tokens


class _Chunk:
    """One batch of documents: their tokens concatenated and hashed once for every method."""

    def __init__(self, texts: Sequence[str], offset: int, hasher: TokenHasher) -> None:
        self.offset = offset
        tokens = [screen_tokens(t) for t in texts]
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(texts))
        self.ends = np.cumsum(lengths)
        self.starts = self.ends - lengths
        self.doc_of = np.repeat(np.arange(len(texts)), lengths)
        self.hashes = hasher.hashes(list(chain.from_iterable(tokens)))
        self._grams: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def grams(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """(n-gram hashes, whether each lies inside one document) for every start position of the chunk."""
        if g not in self._grams:
            grams = ngram_hashes(self.hashes, g)
            self._grams[g] = grams, np.arange(len(grams)) + g <= self.ends[self.doc_of[: len(grams)]]
        return self._grams[g]


def _grouped(pair: np.ndarray, pos: np.ndarray, keys: np.ndarray) -> Iterable[tuple[int, np.ndarray, np.ndarray]]:
    """(pair, positions, keys) per distinct pair value, positions ascending."""
    order = np.lexsort((pos, pair))
    pair, pos, keys = pair[order], pos[order], keys[order]
    bounds = np.flatnonzero(np.diff(pair)) + 1
    heads = np.concatenate(([0], bounds)).astype(np.int64)
    yield from zip(pair[heads].tolist(), np.split(pos, bounds), np.split(keys, bounds), strict=True)


def _chunk_hits(chunk: _Chunk, index: GramIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(global n-gram position, key index, field ref) of every posting hit inside one document."""
    grams, inside = chunk.grams(index.g)
    pos, keys = index.lookup(grams)
    keep = inside[pos]
    pos, keys = pos[keep], keys[keep]
    which, refs = index.expand(keys)
    return pos[which], keys[which], refs


def _exact_findings(chunk: _Chunk, index: GramIndex, match_type: str) -> list[_Finding]:
    pos, keys, refs = _chunk_hits(chunk, index)
    if not len(pos):
        return []
    nfields = len(index.field_counts)
    counts = index.field_counts
    out = []
    for pair, p, k in _grouped(chunk.doc_of[pos] * nfields + refs, pos, keys):
        doc, ref = divmod(pair, nfields)
        first, last = _longest_run(np.unique(p) - chunk.starts[doc])
        score = len(np.unique(k)) / counts[ref]
        out.append(_Finding(chunk.offset + doc, ref, match_type, first, last + index.g - 1, float(score)))
    return out


def _fuzzy_findings(chunk: _Chunk, index: GramIndex, cfg: ScreenConfig, field_tokens: np.ndarray) -> list[_Finding]:
    """Containment and Jaccard per (document, field): distinct shared shingles counted with ``np.unique``.

    The span is the densest stretch of shared shingles no longer than 1.5 times the field (plus one
    shingle), which tolerates insertions in an edited copy yet ignores stray common shingles elsewhere.
    """
    pos, keys, refs = _chunk_hits(chunk, index)
    if not len(pos):
        return []
    nfields = len(index.field_counts)
    docs = chunk.doc_of[pos]
    pair = docs * nfields + refs
    # Distinct (pair, shingle) first, so that a shingle repeated in a document counts once.
    distinct = np.unique(pair * len(index.keys) + keys)
    pairs, shared = np.unique(distinct // len(index.keys), return_counts=True)
    containment = shared / index.field_counts[pairs % nfields]
    want_c = "containment" in cfg.methods
    want_j = "jaccard" in cfg.methods
    # Jaccard <= containment, so only pairs reaching the lower threshold can fire either method.
    floor = min(t for t, on in ((cfg.containment_threshold, want_c), (cfg.jaccard_threshold, want_j)) if on)
    candidates = set(pairs[containment >= floor].tolist())
    if not candidates:
        return []
    stats = dict(zip(pairs.tolist(), zip(shared.tolist(), containment.tolist(), strict=True), strict=True))
    grams, inside = chunk.grams(index.g)
    doc_sizes: dict[int, int] = {}
    out = []
    sel = np.isin(pair, np.fromiter(candidates, dtype=pair.dtype))
    for pr, p, _k in _grouped(pair[sel], pos[sel], keys[sel]):
        doc, ref = divmod(pr, nfields)
        n_shared, cont = stats[pr]
        local = np.unique(p) - chunk.starts[doc]
        first, last = _densest_window(local, int(field_tokens[ref]) * 3 // 2 + index.g)
        span = (first, last + index.g - 1)
        if want_c and cont >= cfg.containment_threshold:
            out.append(_Finding(chunk.offset + doc, ref, "containment", *span, float(cont)))
        if want_j and cont >= cfg.jaccard_threshold:
            if doc not in doc_sizes:
                lo, hi = chunk.starts[doc], chunk.ends[doc]
                doc_sizes[doc] = len(np.unique(grams[lo:hi][inside[lo:hi]]))
            jaccard = n_shared / (index.field_counts[ref] + doc_sizes[doc] - n_shared)
            if jaccard >= cfg.jaccard_threshold:
                out.append(_Finding(chunk.offset + doc, ref, "jaccard", *span, float(jaccard)))
    return out


def _span_findings(texts: list[str], chunk: _Chunk, index: ScreenIndex) -> list[_Finding]:
    """Findings of the methods that locate their evidence in characters: ``code<n>`` and ``semantic``."""
    out = []
    if index.code is not None and index.code_fuzzy is not None:
        docs = DocTokens(texts, index.hasher)
        for doc, ref, lo, hi, score in code_findings(docs, index.code):
            out.append(_Finding(chunk.offset + doc, ref, f"code{index.code.g}", 0, 0, score, (lo, hi)))
        threshold = index.config.code_containment_threshold
        for doc, ref, lo, hi, score in fuzzy_code_findings(docs, index.code_fuzzy, threshold):
            out.append(_Finding(chunk.offset + doc, ref, "code_containment", 0, 0, score, (lo, hi)))
        if index.code_body is not None:
            for doc, ref, lo, hi, score in body_findings(docs, index.code_body, index.bodies):
                out.append(_Finding(chunk.offset + doc, ref, "code_body", 0, 0, score, (lo, hi)))
        if index.code_lines is not None:
            found = line_findings(docs, index.code_lines, index.line_weights, index.line_counts, index.config)
            out += [_Finding(chunk.offset + d, ref, "code_lines", 0, 0, sc, (lo, hi)) for d, ref, lo, hi, sc in found]
    if index.semantic is not None:
        grams, _ = chunk.grams(1)
        hits = semantic_findings(texts, grams, chunk.doc_of, chunk.starts, index.semantic, token_spans, screen_tokens)
        out += [_Finding(chunk.offset + d, ref, "semantic", 0, 0, score, (lo, hi)) for d, ref, lo, hi, score in hits]
    return out


def _emit(findings: list[_Finding], index: ScreenIndex, docs: pa.Table) -> pa.Table:
    rows: dict[str, list] = {name: [] for name in FINDING_SCHEMA.names}
    if not findings:
        return pa.Table.from_pydict(rows, schema=FINDING_SCHEMA)
    rank = {
        "containment": 1,
        "jaccard": 2,
        "stem_answer": 3,
        "code": 4,
        "code_containment": 5,
        "code_body": 6,
        "code_lines": 7,
        "semantic": 8,
    }  # ngram<n> ranks 0
    findings.sort(key=lambda f: (f.doc, f.ref, rank.get(f.match_type.rstrip("0123456789"), 0)))
    take = sorted({f.doc for f in findings})
    sub = docs.select(list(_DOC_COLUMNS)).take(pa.array(take, pa.int64())).to_pylist()
    by_row = dict(zip(take, sub, strict=True))
    spans: dict[int, tuple[list[str], list[int], list[int]]] = {}
    for f in findings:
        doc = by_row[f.doc]
        if f.doc not in spans:
            spans[f.doc] = token_spans(doc["text"] or "")
        tokens, starts, ends = spans[f.doc]
        ref = index.fields[f.ref]
        rows["doc_id"].append(doc["doc_id"])
        rows["source_id"].append(doc["source_id"])
        rows["eval_set"].append(ref.eval_set)
        rows["item_id"].append(ref.item_id)
        rows["field"].append(ref.field)
        rows["kind"].append(ref.kind)
        rows["match_type"].append(f.match_type)
        if f.chars is not None:  # code and semantic evidence: the document's own text
            rows["overlap_text"].append(_cut(" ".join((doc["text"] or "")[f.chars[0] : f.chars[1]].split())))
            rows["span_start"].append(f.chars[0])
            rows["span_end"].append(f.chars[1])
        else:
            rows["overlap_text"].append(_cut(" ".join(tokens[f.first : f.last + 1])))
            rows["span_start"].append(starts[f.first])
            rows["span_end"].append(ends[f.last])
        rows["score"].append(f.score)
    return pa.Table.from_pydict(rows, schema=FINDING_SCHEMA)


@dataclass(frozen=True)
class BatchScreen:
    """What the screen found in one batch of documents: which rows are contaminated, and the findings.

    Both depend on the batch's rows alone (a finding names its document by ``doc_id``), so batches screened
    in any grouping, on any worker, and concatenated in corpus order give the findings of the whole corpus.
    """

    contaminated: np.ndarray  # bool per row of the batch
    findings: pa.Table  # FINDING_SCHEMA, in the batch's row order, then item field, then method
    rows: np.ndarray  # int64: the batch row of each finding (a distributed driver maps it to a corpus position)

    def split(self, batch: pa.Table | pa.RecordBatch) -> tuple[pa.Table, pa.Table]:
        """(clean rows, contaminated rows) of ``batch``, each in batch order."""
        table = _as_table(batch)
        hit = pa.array(self.contaminated)
        return table.filter(pc.invert(hit)), table.filter(hit)


def _as_table(batch: pa.Table | pa.RecordBatch) -> pa.Table:
    return pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch


def _checked_index(items: pa.Table, n: int, config: ScreenConfig | None, index: ScreenIndex | None) -> ScreenIndex:
    if index is None:
        return build_index(items, config=_resolve(n, config))
    if (config is not None and config != index.config) or n not in (13, index.config.n):
        raise ValueError(f"contamination: n/config differ from those the index was built with ({index.config})")
    return index


def screen_batch(batch: pa.Table | pa.RecordBatch, index: ScreenIndex) -> BatchScreen:
    """Screen one batch of documents (``doc_id``, ``source_id``, ``text``) against a built index.

    Pure: it reads only ``batch`` and ``index`` (picklable numpy arrays and a token-hash memo), so a
    distributed driver can broadcast the index once and call this per batch (e.g. in Ray's ``map_batches``),
    then concatenate the findings in batch order. The rules are :func:`screen`'s.
    """
    docs = _as_table(batch)
    _require(docs, _DOC_COLUMNS, "document")
    cfg = index.config
    texts = docs.column("text")
    field_tokens = np.array(index.field_tokens, dtype=np.int64)
    found: list[_Finding] = []
    if index.fields:
        for offset in range(0, docs.num_rows, _CHUNK):
            # Only one chunk of text is held as Python strings at a time.
            strings = [t or "" for t in texts.slice(offset, _CHUNK).to_pylist()]
            chunk = _Chunk(strings, offset, index.hasher)
            if index.exact is not None:
                found += _exact_findings(chunk, index.exact, f"ngram{cfg.n}")
            if index.fuzzy is not None:
                found += _fuzzy_findings(chunk, index.fuzzy, cfg, field_tokens)
            found += [
                _Finding(chunk.offset + d, r, "stem_answer", a, b, sc)
                for d, r, a, b, sc in stem_answer_findings(chunk, index)
            ]
            found += _span_findings(strings, chunk, index)
    hit = np.zeros(docs.num_rows, dtype=bool)
    hit[[f.doc for f in found]] = True
    findings = _emit(found, index, docs)  # sorts ``found`` into the findings' row order
    return BatchScreen(hit, findings, np.array([f.doc for f in found], dtype=np.int64))


def screen(
    docs: pa.Table,
    items: pa.Table,
    *,
    n: int = 13,
    config: ScreenConfig | None = None,
    index: ScreenIndex | None = None,
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Split ``docs`` into (clean, contaminated) and return the findings behind every contaminated doc.

    A document is contaminated when any enabled method fires for any screened field of any item (see the module
    docstring). Findings are in document order, then item field, then method (``ngram``, ``containment``,
    ``jaccard``, ``code``, ``semantic``). ``overlap_text`` is the overlap in normalised tokens (cut to ~300
    characters) and ``span_start``/``span_end`` its character span in the document's text: the longest run of
    consecutive shared n-grams for ``ngram<n>``, the densest stretch of shared shingles (at most 1.5 times the
    field's length) for the fuzzy methods, the matched code for ``code<n>``, the embedded window for ``semantic``
    (these two quote the document's own text). ``score`` is the share of the field's distinct n-grams found for
    ``ngram<n>``, ``containment`` and ``code<n>`` (canonical n-grams), the Jaccard similarity for ``jaccard``, and
    for ``semantic`` the calibrated mix of cosine and word share
    (:func:`~mixassets.engine.contamination_semantic.evidence`).
    A document whose text is null is screened as empty text, so it is clean.

    ``index`` is :func:`build_index` of ``items`` when the caller already has it (to pass its
    ``unscreenable`` list on to :func:`contamination_report` without indexing the items again).
    """
    _require(docs, _DOC_COLUMNS, "document")
    result = screen_batch(docs, _checked_index(items, n, config, index))
    clean, dirty = result.split(docs)
    return clean, dirty, result.findings
