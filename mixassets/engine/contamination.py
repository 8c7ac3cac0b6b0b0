"""Screen training documents for eval-set contamination: exact n-gram overlap plus fuzzy containment/Jaccard.

Three methods, each answering a different question about one (document, item field) pair:

* ``ngram<n>`` (exact, GPT-3 appendix C): the document shares at least one ``n``-gram (default 13) of
  normalised tokens with the field. Lowercased ``\\w+`` tokens make the test blind to re-formatting and let
  one rule cover prose and code; a 13-gram is long enough that chance overlap in unrelated text is rare,
  yet short enough that a partial copy of a solution is caught. ``span_start``/``span_end`` locate the
  longest run of consecutive shared n-grams in the document's *original* text.
* ``containment`` (fuzzy): at least ``containment_threshold`` of the field's distinct word
  ``containment_n``-grams (default 5) occur in the document. Edits that break every 13-gram (renamed
  variables, merged tokens, dropped lines) leave most 5-grams intact, and measuring the share of the
  *item* that is present, rather than a symmetric similarity, still works when the item sits inside a
  document many times its size.
* ``jaccard`` (fuzzy): the exact Jaccard similarity of the field's and the whole document's
  ``containment_n``-gram sets reaches ``jaccard_threshold``: the document *is* (an edited copy of) the
  item rather than merely containing it. Jaccard is never larger than containment on the same shingles,
  so this method finds no document that containment (at a threshold no higher) misses; it labels
  near-copies, and screens on its own when containment is disabled.

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

Tokens are lowercased runs of word characters, NFKC-normalised per run (see :func:`token_spans`), so that
every token keeps the character offsets of the text it came from. N-grams are compared by 64-bit
BLAKE2b-derived hashes (:mod:`mixassets.engine.text_norm`), identical in every process; with 2^64 values
a false hit from a collision is negligible next to the volume of any realistic corpus.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from types import MappingProxyType

import numpy as np
import pyarrow as pa

from mixassets.engine.text_norm import TokenHasher, ngram_hashes
from mixtrain.schema import FINDING_SCHEMA

OVERLAP_MAX_CHARS = 300
HOLDOUT, TARGET = "holdout", "target"
METHODS = ("ngram", "containment", "jaccard")
DEFAULT_FIELD_KINDS: Mapping[str, str] = MappingProxyType(
    {
        **dict.fromkeys(("prompt", "question", "input", "context"), HOLDOUT),
        **dict.fromkeys(("solution", "answer", "reference", "output", "canonical_solution"), TARGET),
    }
)
# Documents per vectorised pass: large enough to amortise numpy call overhead, small enough that the
# chunk's token and n-gram arrays (~3 KB per 2 KB document) stay in cache-friendly sizes.
_CHUNK = 512
_ITEM_COLUMNS = ("eval_set", "item_id", "screen_fields")
_DOC_COLUMNS = ("doc_id", "source_id", "text")
_WORD = re.compile(r"\w+")
_ASCII_NON_WORD = str.maketrans({c: " " for c in map(chr, range(128)) if not (c.isalnum() or c == "_")})
# A word run plus any combining marks inside it, so that decomposed text ("e" + U+0301) stays one token
# after NFKC composes it, as it would if the whole text were normalised first.
_RUN = re.compile(r"\w[\w\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]*")

REPORT_SCHEMA = pa.schema(
    [
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("items", pa.int64(), nullable=False),
        pa.field("items_leaked", pa.int64(), nullable=False),  # items with any finding
        pa.field("holdout_leaked", pa.int64(), nullable=False),  # items with a finding of kind "holdout"
        pa.field("target_leaked", pa.int64(), nullable=False),  # items with a finding of kind "target"
        pa.field("leaked_share", pa.float64(), nullable=False),  # items_leaked / items
        pa.field("sources", pa.list_(pa.string()), nullable=False),  # source_ids of the documents hit, sorted
        pa.field("documents_hit", pa.int64(), nullable=False),  # distinct (source_id, doc_id) with a finding
        pa.field("fields_unscreenable", pa.int64(), nullable=False),  # item fields no enabled method can screen
    ]
)
ITEM_LEAK_SCHEMA = pa.schema(
    [
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("kinds", pa.list_(pa.string()), nullable=False),
        pa.field("fields", pa.list_(pa.string()), nullable=False),
        pa.field("match_types", pa.list_(pa.string()), nullable=False),
        pa.field("documents", pa.int64(), nullable=False),
        pa.field("sources", pa.list_(pa.string()), nullable=False),
        pa.field("example_doc_id", pa.string(), nullable=False),  # the document of the longest overlap
        pa.field("example_overlap", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class ScreenConfig:
    """Settings of :func:`screen`.

    The fuzzy defaults were chosen on ``benchmarks/labelled_contamination.py`` (HumanEval planted into 6,000
    ~2 KB chunks of CPython's stdlib and pydoc topics). With 5-gram shingles and at least 8 of them per
    field, no clean chunk reaches a containment above 0.25 (two shared idioms such as ``for i in range
    len`` in an 8-shingle solution), while cosmetically edited copies sit far above 0.5; 0.5 keeps twice
    that margin for corpora much larger than the benchmark. 4-grams or 6-shingle fields put clean chunks
    over 0.4. ``jaccard_threshold`` is 0.8 because that is the near-duplicate bar of dedupe: a document
    this close to an item is a copy of it by the corpus's own standard. ``methods`` lists the enabled
    methods (``ngram``, ``containment``, ``jaccard``); ``field_kinds`` maps field names (matched
    case-insensitively) to ``"holdout"``/``"target"``, names it lacks being holdouts.
    """

    n: int = 13
    containment_n: int = 5
    containment_threshold: float = 0.5
    jaccard_threshold: float = 0.8
    fuzzy_min_shingles: int = 8
    methods: tuple[str, ...] = METHODS
    field_kinds: Mapping[str, str] = field(default_factory=lambda: DEFAULT_FIELD_KINDS)

    def __post_init__(self) -> None:
        for name in ("n", "containment_n", "fuzzy_min_shingles"):
            if getattr(self, name) < 1:
                raise ValueError(f"contamination: ScreenConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("containment_threshold", "jaccard_threshold"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"contamination: ScreenConfig.{name} must be in (0, 1], got {getattr(self, name)}")
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown or not self.methods:
            raise ValueError(
                f"contamination: ScreenConfig.methods must be a non-empty subset of {METHODS}, got {self.methods}"
            )
        bad = {k: v for k, v in self.field_kinds.items() if v not in (HOLDOUT, TARGET)}
        if bad:
            raise ValueError(f"contamination: ScreenConfig.field_kinds values must be '{HOLDOUT}' or '{TARGET}': {bad}")
        lowered = MappingProxyType({k.lower(): v for k, v in self.field_kinds.items()})
        object.__setattr__(self, "field_kinds", lowered)
        object.__setattr__(self, "methods", tuple(m for m in METHODS if m in self.methods))

    @property
    def fuzzy(self) -> bool:
        return "containment" in self.methods or "jaccard" in self.methods

    def kind_of(self, field_name: str) -> str:
        return self.field_kinds.get(field_name.lower(), HOLDOUT)


@dataclass(frozen=True)
class FieldRef:
    """One screened text of an eval item."""

    eval_set: str
    item_id: str
    field: str
    kind: str


@dataclass(frozen=True)
class UnscreenableField:
    eval_set: str
    item_id: str
    field: str
    tokens: int  # too few for every enabled method


@dataclass
class _GramIndex:
    """Inverted index over item n-gram hashes in CSR form: ``refs[ptr[k]:ptr[k+1]]`` hold ``keys[k]``."""

    g: int
    keys: np.ndarray  # sorted unique uint64
    ptr: np.ndarray  # int64, len(keys) + 1
    refs: np.ndarray  # int64 field refs
    field_counts: np.ndarray  # int64 per field ref: its distinct n-grams (0 if not indexed by this method)
    filter: np.ndarray  # bool, indexed by a hash's low bits: could the hash be a key?
    mask: np.uint64

    @classmethod
    def build(cls, g: int, per_field: list[np.ndarray]) -> _GramIndex:
        grams = np.concatenate([np.empty(0, np.uint64), *per_field])
        refs = np.repeat(np.arange(len(per_field), dtype=np.int64), [len(a) for a in per_field])
        order = np.argsort(grams, kind="stable")
        grams, refs = grams[order], refs[order]
        keys, first = np.unique(grams, return_index=True)
        counts = np.array([len(a) for a in per_field], dtype=np.int64)
        bits = int(np.clip(np.ceil(np.log2(max(len(keys), 1) * 64)), 16, 24))
        mask = np.uint64((1 << bits) - 1)
        table = np.zeros(1 << bits, dtype=bool)
        table[keys & mask] = True
        ptr = np.append(first, len(grams)).astype(np.int64)
        return cls(g, keys, ptr, refs, counts, table, mask)

    def lookup(self, grams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``grams``, key indices) of the grams that are in the index.

        Almost every n-gram of a corpus is in no item, so a bit table over the hashes' low bits (a
        one-hash Bloom filter, ~1.5% false candidates) rejects most of them with one gather before the
        binary search, which alone costs a cache miss per level.
        """
        if not len(self.keys) or not len(grams):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        cand = np.flatnonzero(self.filter[grams & self.mask])
        k = np.minimum(np.searchsorted(self.keys, grams[cand]), len(self.keys) - 1)
        hit = self.keys[k] == grams[cand]
        return cand[hit], k[hit]

    def expand(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For key indices, (index into ``keys``, field ref) for every posting of every key."""
        counts = self.ptr[keys + 1] - self.ptr[keys]
        which = np.repeat(np.arange(len(keys)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return which, self.refs[np.repeat(self.ptr[keys], counts) + offsets]


@dataclass
class ScreenIndex:
    """Every screenable item field, with an n-gram index per method family."""

    config: ScreenConfig
    fields: list[FieldRef] = field(default_factory=list)
    field_tokens: list[int] = field(default_factory=list)
    unscreenable: list[UnscreenableField] = field(default_factory=list)
    exact: _GramIndex | None = None
    fuzzy: _GramIndex | None = None
    hasher: TokenHasher = field(default_factory=TokenHasher)


def screen_tokens(text: str) -> list[str]:
    """The tokens :func:`token_spans` gives, without offsets (the fast path used for every document)."""
    if text.isascii():
        # NFKC is the identity on ASCII; translate + split gives _WORD.findall's tokens in half the time.
        return text.lower().translate(_ASCII_NON_WORD).split()
    # The same tokens as token_spans' per-run normalisation, in C: "\n" never composes under NFKC and
    # is not cased, so normalising the runs joined by it equals normalising each run on its own.
    return _WORD.findall(unicodedata.normalize("NFKC", "\n".join(_RUN.findall(text))).lower())


def token_spans(text: str) -> tuple[list[str], list[int], list[int]]:
    """The screen's tokens with their (start, end) character offsets in ``text``.

    Each word run is normalised on its own (NFKC, lowercase) so that its tokens keep the run's offsets; a
    run that normalises into several words gives each of them the run's span. The result equals the
    ``\\w+`` runs of the whole text NFKC-normalised and lowercased, except where NFKC would turn a non-word
    symbol into letters (``㎏`` -> ``kg``), which is no loss: items and documents are tokenised the same way.
    """
    tokens: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    source = text.lower() if text.isascii() else text
    for m in (_WORD if text.isascii() else _RUN).finditer(source):
        run = m.group()
        parts = [run] if text.isascii() else _WORD.findall(unicodedata.normalize("NFKC", run).lower())
        tokens.extend(parts)
        starts.extend([m.start()] * len(parts))
        ends.extend([m.end()] * len(parts))
    return tokens, starts, ends


def _require(table: pa.Table, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"contamination: {what} table lacks required column(s) {missing}; got {table.column_names}")
    for name in columns[:2]:
        nulls = table.column(name).null_count
        if nulls:
            raise ValueError(f"contamination: {what} column '{name}' has {nulls} null value(s)")


def _screen_fields(eval_set: str, item_id: str, raw: str | None) -> dict[str, str]:
    where = f"eval item {eval_set}/{item_id}, field 'screen_fields'"
    try:
        parsed = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from e
    if not isinstance(parsed, dict):
        raise ValueError(f"{where}: expected a JSON object {{field_name: text}}, got {type(parsed).__name__}")
    bad = sorted(k for k, v in parsed.items() if not isinstance(v, str))
    if bad:
        raise ValueError(f"{where}: values must be strings; not a string for {bad}")
    return parsed


def _resolve(n: int, config: ScreenConfig | None) -> ScreenConfig:
    if config is None:
        return ScreenConfig(n=n)
    if n not in (13, config.n):
        raise ValueError(f"contamination: n={n} conflicts with config.n={config.n}; set n in the config only")
    return config


def build_index(items: pa.Table, n: int = 13, *, config: ScreenConfig | None = None) -> ScreenIndex:
    """Index every screen field of every item; a malformed ``screen_fields`` raises naming the item."""
    cfg = _resolve(n, config)
    _require(items, _ITEM_COLUMNS, "eval item")
    index = ScreenIndex(config=cfg)
    exact_sets: list[np.ndarray] = []
    fuzzy_sets: list[np.ndarray] = []
    empty = np.empty(0, np.uint64)
    cols = {c: items.column(c).to_pylist() for c in _ITEM_COLUMNS}
    for eval_set, item_id, raw in zip(cols["eval_set"], cols["item_id"], cols["screen_fields"], strict=True):
        for name, text in _screen_fields(eval_set, item_id, raw).items():
            hashes = index.hasher.hashes(screen_tokens(text))
            exact = np.unique(ngram_hashes(hashes, cfg.n)) if "ngram" in cfg.methods else empty
            fuzzy = np.unique(ngram_hashes(hashes, cfg.containment_n)) if cfg.fuzzy else empty
            if len(fuzzy) < cfg.fuzzy_min_shingles:
                fuzzy = empty
            if not len(exact) and not len(fuzzy):
                index.unscreenable.append(UnscreenableField(eval_set, item_id, name, len(hashes)))
                continue
            index.fields.append(FieldRef(eval_set, item_id, name, cfg.kind_of(name)))
            index.field_tokens.append(len(hashes))
            exact_sets.append(exact)
            fuzzy_sets.append(fuzzy)
    if "ngram" in cfg.methods:
        index.exact = _GramIndex.build(cfg.n, exact_sets)
    if cfg.fuzzy:
        index.fuzzy = _GramIndex.build(cfg.containment_n, fuzzy_sets)
    return index


def unscreenable_fields(items: pa.Table, n: int = 13, *, config: ScreenConfig | None = None) -> list[UnscreenableField]:
    """Item fields too short for every enabled method, which the screen therefore cannot check."""
    return build_index(items, n, config=config).unscreenable


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


def _chunk_hits(chunk: _Chunk, index: _GramIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(global n-gram position, key index, field ref) of every posting hit inside one document."""
    grams, inside = chunk.grams(index.g)
    pos, keys = index.lookup(grams)
    keep = inside[pos]
    pos, keys = pos[keep], keys[keep]
    which, refs = index.expand(keys)
    return pos[which], keys[which], refs


def _exact_findings(chunk: _Chunk, index: _GramIndex, match_type: str) -> list[_Finding]:
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


def _fuzzy_findings(chunk: _Chunk, index: _GramIndex, cfg: ScreenConfig, field_tokens: np.ndarray) -> list[_Finding]:
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


def _emit(findings: list[_Finding], index: ScreenIndex, docs: pa.Table) -> pa.Table:
    rows: dict[str, list] = {name: [] for name in FINDING_SCHEMA.names}
    if not findings:
        return pa.Table.from_pydict(rows, schema=FINDING_SCHEMA)
    rank = {"containment": 1, "jaccard": 2}  # ngram<n> ranks 0
    findings.sort(key=lambda f: (f.doc, f.ref, rank.get(f.match_type, 0)))
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
        rows["overlap_text"].append(_cut(" ".join(tokens[f.first : f.last + 1])))
        rows["span_start"].append(starts[f.first])
        rows["span_end"].append(ends[f.last])
        rows["score"].append(f.score)
    return pa.Table.from_pydict(rows, schema=FINDING_SCHEMA)


def screen(
    docs: pa.Table,
    items: pa.Table,
    *,
    n: int = 13,
    config: ScreenConfig | None = None,
    index: ScreenIndex | None = None,
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Split ``docs`` into (clean, contaminated) and return the findings behind every contaminated doc.

    A document is contaminated when any enabled method fires for any screened field of any item (see the
    module docstring). Findings are in document order, then item field, then method (``ngram``,
    ``containment``, ``jaccard``). ``overlap_text`` is the overlap in normalised tokens (cut to ~300
    characters) and ``span_start``/``span_end`` its character span in the document's text: the longest
    run of consecutive shared n-grams for ``ngram<n>``, the densest stretch of shared shingles (at most
    1.5 times the field's length) for the fuzzy methods. ``score`` is the share of the field's distinct
    n-grams found for ``ngram<n>`` and ``containment``, the Jaccard similarity for ``jaccard``.
    A document whose text is null is screened as empty text, so it is clean.

    ``index`` is :func:`build_index` of ``items`` when the caller already has it (to pass its
    ``unscreenable`` list on to :func:`contamination_report` without indexing the items again).
    """
    _require(docs, _DOC_COLUMNS, "document")
    if index is None:
        index = build_index(items, config=_resolve(n, config))
    elif (config is not None and config != index.config) or n not in (13, index.config.n):
        raise ValueError(f"contamination: n/config differ from those the index was built with ({index.config})")
    cfg = index.config
    texts = docs.column("text")
    field_tokens = np.array(index.field_tokens, dtype=np.int64)
    found: list[_Finding] = []
    if index.fields:
        for offset in range(0, docs.num_rows, _CHUNK):
            # Only one chunk of text is held as Python strings at a time.
            chunk = _Chunk([t or "" for t in texts.slice(offset, _CHUNK).to_pylist()], offset, index.hasher)
            if index.exact is not None:
                found += _exact_findings(chunk, index.exact, f"ngram{cfg.n}")
            if index.fuzzy is not None:
                found += _fuzzy_findings(chunk, index.fuzzy, cfg, field_tokens)
    hit = np.zeros(docs.num_rows, dtype=bool)
    hit[[f.doc for f in found]] = True
    findings = _emit(found, index, docs)
    return docs.filter(pa.array(~hit)), docs.filter(pa.array(hit)), findings


def _sorted_strings(values: Iterable[str]) -> list[str]:
    return sorted(set(values))


def contamination_report(
    findings: pa.Table,
    items: pa.Table,
    *,
    config: ScreenConfig | None = None,
    unscreenable: Sequence[UnscreenableField] | None = None,
) -> pa.Table:
    """One row per eval set of ``items`` (sorted): how many of its items leaked, as holdout or target, from where.

    The unscreenable fields are counted from ``unscreenable`` (the ``ScreenIndex.unscreenable`` of the
    screen) when given; otherwise the items are indexed again under ``config``, which must then be the one
    the findings were screened with. A finding naming an item that ``items`` does not hold means the two
    tables do not belong together, so it raises rather than report a share against the wrong denominator.
    """
    _require(items, ("eval_set", "item_id"), "eval item")
    _require(findings, ("eval_set", "item_id", "kind", "doc_id", "source_id"), "finding")
    known: dict[str, set[str]] = {}
    for s, i in zip(items.column("eval_set").to_pylist(), items.column("item_id").to_pylist(), strict=True):
        known.setdefault(s, set()).add(i)
    if unscreenable is None:
        has_fields = "screen_fields" in items.column_names
        unscreenable = build_index(items, config=config or ScreenConfig()).unscreenable if has_fields else []
    too_short: dict[str, int] = dict.fromkeys(known, 0)
    for u in unscreenable:
        if u.eval_set not in too_short:
            raise ValueError(f"contamination_report: unscreenable field of eval set {u.eval_set!r}, not in the items")
        too_short[u.eval_set] += 1
    leaked: dict[str, dict[str, set[str]]] = {s: {"any": set(), HOLDOUT: set(), TARGET: set()} for s in known}
    sources: dict[str, set[str]] = {s: set() for s in known}
    docs: dict[str, set[tuple[str, str]]] = {s: set() for s in known}
    stray: set[tuple[str, str]] = set()
    for f in findings.select(["eval_set", "item_id", "kind", "doc_id", "source_id"]).to_pylist():
        s, i = f["eval_set"], f["item_id"]
        if i not in known.get(s, ()):
            stray.add((s, i))
            continue
        leaked[s]["any"].add(i)
        if f["kind"] in (HOLDOUT, TARGET):
            leaked[s][f["kind"]].add(i)
        sources[s].add(f["source_id"])
        docs[s].add((f["source_id"], f["doc_id"]))
    if stray:
        raise ValueError(
            f"contamination_report: findings name {len(stray)} item(s) not in the items table, e.g. {sorted(stray)[:5]}"
        )
    rows = [
        {
            "eval_set": s,
            "items": len(known[s]),
            "items_leaked": len(leaked[s]["any"]),
            "holdout_leaked": len(leaked[s][HOLDOUT]),
            "target_leaked": len(leaked[s][TARGET]),
            "leaked_share": len(leaked[s]["any"]) / len(known[s]),
            "sources": sorted(sources[s]),
            "documents_hit": len(docs[s]),
            "fields_unscreenable": too_short[s],
        }
        for s in sorted(known)
    ]
    return pa.Table.from_pylist(rows, schema=REPORT_SCHEMA)


def item_leaks(findings: pa.Table) -> pa.Table:
    """One row per leaked item (sorted by set, item): what leaked, how, into how many documents and sources."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for f in findings.to_pylist():
        groups.setdefault((f["eval_set"], f["item_id"]), []).append(f)
    rows = []
    for (s, i), fs in sorted(groups.items()):
        example = max(fs, key=lambda f: (len(f["overlap_text"]), f["score"]))
        rows.append(
            {
                "eval_set": s,
                "item_id": i,
                "kinds": _sorted_strings(f["kind"] for f in fs),
                "fields": _sorted_strings(f["field"] for f in fs),
                "match_types": _sorted_strings(f["match_type"] for f in fs),
                "documents": len({(f["source_id"], f["doc_id"]) for f in fs}),
                "sources": _sorted_strings(f["source_id"] for f in fs),
                "example_doc_id": example["doc_id"],
                "example_overlap": example["overlap_text"],
            }
        )
    return pa.Table.from_pylist(rows, schema=ITEM_LEAK_SCHEMA)
