"""The code-aware contamination screen (method ``code<n>``): n-grams of canonical Python tokens.

Why a second token stream: the word n-grams of :mod:`mixassets.engine.contamination` include identifiers,
so a copy of a solution whose local and function names were all renamed shares almost none of them (a
13-gram of a typical solution holds five or more names). Here every name that is neither a keyword nor a
builtin becomes one placeholder, every string literal ``S`` and every number ``N``; keywords, builtins
(``len``, ``range``, ``sorted``) and operators stay. A consistent rename leaves this stream unchanged, and
so do re-indentation, comments and quote style.

Why long n-grams and a minimum length: the canonical stream of ordinary code is repetitive (``ID = ID .
ID ( ID , ID )``), so short canonical n-grams occur all over any code corpus. ``code_n`` (default 24) and
``code_min_tokens`` (default 40) were chosen on CPython's whole standard library, every ``.py`` file one
document, against HumanEval's fields: see :class:`~mixassets.engine.contamination_index.ScreenConfig`.

Why a fuzzy half (match type ``code_containment``): a 28-gram must survive intact, and a copy passed through
``ast.unparse`` or a formatter (parentheses added or dropped, ``return (a, b)``, trailing commas) or cut to the
solution's body keeps few of them. So each field is also indexed by its distinct 10-grams of a *layout-free*
stream (the canonical stream without parentheses and trailing commas), and a document is flagged when one
window of at most twice the field's length holds at least ``code_containment_threshold`` (0.8) of them,
counted like the word ``containment`` (one inverted-index lookup per document k-gram, ``np.unique`` per pair).
10-grams with a 0.8 share and at least 10 distinct k-grams per field were chosen on the same stdlib files and
renamed HumanEval copies (``benchmarks/code_contamination.py``): no stdlib file reaches 0.6, while a renamed
copy scores 1.0; 8-grams put a stdlib file at 0.7, and 12-grams with 20 per field screen 112 programs, not 144.

Tokenising: item fields go through Python's own :mod:`tokenize` (they are few and must be right); a field
that does not tokenize, or is not Python (``ast.parse`` fails on it, dedented), falls back to the regex
tokenizer, and is code-screened only when it parses. Documents are mostly prose with code inside, or code
that does not tokenize as a whole (an unclosed quote in the prose before it is enough), so documents always
go through the regex tokenizer :data:`_CODE_TOKEN`, which re-synchronises at every line and never raises.
It yields the same canonical tokens as :mod:`tokenize` on Python source (checked on the whole stdlib in the
tests). On documents it also matches each line break with the indent after it (:data:`_DOC_TOKEN`): the line test
needs the breaks. The regex is the definition; documents are read by its compiled port
(:mod:`~mixassets.engine.code_scan`, the same tokens and ids, checked against the regex in the tests), because the
regex plus a look-up per token was half of the whole screen's time.
"""

from __future__ import annotations

import ast
import builtins
import functools
import io
import keyword
import re
import textwrap
import threading
import tokenize
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mixassets.engine.code_scan import OPERATORS, UNRESOLVED, Scan, TokenTable, scan
from mixassets.engine.text_norm import TokenHasher, ngram_hashes, stable_hash64

if TYPE_CHECKING:  # the index class lives beside the item index, which imports this module
    from mixassets.engine.contamination_grams import GramIndex

PLACEHOLDER, STRING, NUMBER = "ID", "S", "N"
# Names a rename cannot touch: keywords (soft ones too, ``match``/``case``) and builtins. ``self`` and
# ``cls`` are conventions, not keywords, and stay placeholders (a renamer may rename them).
KEPT_NAMES = frozenset(keyword.kwlist + keyword.softkwlist + [n for n in dir(builtins) if not n.startswith("_")])

# One alternation, tried left to right at each position: a name not followed by a quote (possessive, so it
# cannot back off into a string prefix such as ``rb``), a string (triple-quoted ones may span lines; others
# must close on their line), a comment or line continuation (dropped), a number, an operator (longest first),
# and any other non-space character as itself. A quote that does not close is an operator, so prose with a
# stray apostrophe costs a token, never the rest of the document. A name glued to a string that is not one of
# its prefixes (``x'a'``, what a careless renamer makes of ``r'a'``) is a name, then the string (that
# alternative comes last: only such a name reaches it, so the common tokens do not pay for it). No capture
# groups: ``findall`` then builds one string per token, not a tuple (1.7x faster on the stdlib).
_PREFIX = r"(?:[rRbBuUfF]{1,2})?"
_SINGLE = r"'[^'\\\r\n]*+(?:\\[\s\S][^'\\\r\n]*+)*+'"
_DOUBLE = r'"[^"\\\r\n]*+(?:\\[\s\S][^"\\\r\n]*+)*+"'
_TRIPLE = r"'''[\s\S]*?'''|" + r'"""[\s\S]*?"""'
_CODE_TOKEN = re.compile(
    r"[^\W\d]\w*+(?!['\"])"
    rf"|{_PREFIX}(?:{_TRIPLE}|{_SINGLE}|{_DOUBLE})"
    r"|#[^\r\n]*|\\\r?\n"
    r"|0[xXoObB][\da-fA-F_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?[jJ]?"
    r"|\*\*=|//=|>>=|<<=|->|:=|==|!=|<=|>=|\*\*|//|<<|>>|\+=|-=|\*=|/=|%=|&=|\|=|\^=|@=|\.\.\.|[^\w\s]"
    r"|[^\W\d]\w*+"
)
# The documents' tokenizer: the same tokens, and each line break outside a token, which is dropped from the stream
# and noted as a position for the line test (:mod:`~mixassets.engine.contamination_lines`). The definition that
# :mod:`~mixassets.engine.code_scan` compiles (and the tests compare it with).
NEWLINE = "\n"
_DOC_TOKEN = re.compile(_CODE_TOKEN.pattern + r"|\n\s*")  # a break with the blank lines and indent after it
_SKIPPED_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
_SKIPPED_TOKENS |= {tokenize.ENCODING, tokenize.ENDMARKER}
# Raw token -> canonical token ("" = dropped) for names and operators, the tokens that repeat; bounded so
# that a corpus of ever-new identifiers cannot grow it without limit.
_CANON: dict[str, str] = {}
_CANON_LIMIT = 1 << 20


def _canonical_name(name: str) -> str:
    return name if name in KEPT_NAMES else PLACEHOLDER


def _canonical(tok: str) -> str:
    """The canonical form of one raw regex token ("" for a comment or a line continuation)."""
    first = tok[0]
    if first == "#" or (first == "\\" and len(tok) > 1):
        return ""
    if len(tok) > 1 and tok[-1] in "'\"" and (first in "'\"" or first in "rRbBuUfF"):
        return STRING
    if first.isdigit() or (first == "." and tok[1:2].isdigit()):
        return NUMBER
    return _canonical_name(tok) if first.isalpha() or first == "_" else tok


def _classify(tok: str) -> str:
    """:func:`_canonical`, memoised for names and operators (strings, numbers and comments rarely repeat)."""
    canon = _canonical(tok)
    if canon and canon is not STRING and canon is not NUMBER and len(_CANON) < _CANON_LIMIT:
        _CANON[tok] = canon
    return canon


def regex_code_tokens(text: str) -> list[str]:
    """Canonical code tokens of any text (prose, code, broken code), by the regex tokenizer; never raises."""
    get = _CANON.get
    out: list[str] = []
    append = out.append
    for tok in _CODE_TOKEN.findall(text):
        canon = get(tok)
        if canon is None:
            canon = _classify(tok)
        if canon:
            append(canon)
    return out


# What the batch pass needs to know of a document's raw token besides its canonical token: ids 0 to 4 are reserved
# (a dropped token, a line break, a number, a string spanning lines, any other string), the rest index :data:`_IDS`.
# A number and a string keep their canonical hash (``N``, ``S``) but are told apart, so that the line test finds
# them (it reads numbers as written and long strings line by line).
_DROPPED, _LINE_BREAK, _NUMBER, _LONG_STRING, _STRING = range(5)


class _CanonicalIds(dict[str, int]):
    """Canonical token -> small id, and the 64-bit hash of every id as one array.

    It grows with the canonical tokens that keep their text: keywords, builtins, ``ID``, operators and single
    characters (a bounded set), and the rare name whose first character is numeric but not a digit (``½x``), which
    the canonical stream keeps as written, as the item hasher's memo does too.
    """

    def __init__(self) -> None:
        super().__init__()
        reserved = [0, 0, stable_hash64(NUMBER), stable_hash64(STRING), stable_hash64(STRING)]
        self._hashes: list[int] = reserved
        self._array = np.array(reserved, dtype=np.uint64)
        self._lock = threading.Lock()

    def __missing__(self, canon: str) -> int:
        with self._lock:  # an id and its hash are added together, even when two threads screen at once
            if canon not in self:
                self._hashes.append(stable_hash64(canon))
                self[canon] = len(self._hashes) - 1
        return self[canon]

    @property
    def hashes(self) -> np.ndarray:
        if len(self._array) != len(self._hashes):
            self._array = np.array(self._hashes, dtype=np.uint64)
        return self._array


class _RawIds(dict[str, int]):
    """A document's raw regex token -> its id: what the compiled scan (:mod:`~mixassets.engine.code_scan`) is held
    to in the tests, and its fallback for the rare token its table cannot resolve (a non-ASCII operator).

    Strings and comments are not kept (they rarely repeat), nor anything once the memo holds ``_CANON_LIMIT``
    tokens, so that a corpus of ever-new identifiers cannot grow it without limit.
    """

    def __missing__(self, tok: str) -> int:
        if tok[0] == NEWLINE:
            code = _LINE_BREAK
        else:
            canon = _canonical(tok)
            if not canon:
                return _DROPPED
            if canon is STRING:
                return _LONG_STRING if NEWLINE in tok else _STRING
            code = _NUMBER if canon is NUMBER else _IDS[canon]
        if len(self) < _CANON_LIMIT:
            self[tok] = code
        return code


_IDS = _CanonicalIds()
_RAW_IDS = _RawIds()


@functools.lru_cache(maxsize=1)
def _scan_table() -> TokenTable:
    """The ids the compiled scan gives by itself: names kept as written, operators and ASCII punctuation."""
    punctuation = [chr(c) for c in range(128) if re.fullmatch(r"[^\w\s]", chr(c))]
    entries = [(token, _IDS[token]) for token in sorted(KEPT_NAMES) + list(OPERATORS) + punctuation]
    return TokenTable.of(entries, _IDS[PLACEHOLDER])


def tokenize_code_tokens(text: str) -> list[str] | None:
    """Canonical tokens by Python's :mod:`tokenize`, or None when the text does not tokenize as Python."""
    out: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(textwrap.dedent(text)).readline):
            if tok.type in _SKIPPED_TOKENS:
                continue
            if tok.type == tokenize.NAME:
                out.append(_canonical_name(tok.string))
            elif tok.type == tokenize.STRING:
                out.append(STRING)
            elif tok.type == tokenize.NUMBER:
                out.append(NUMBER)
            elif tok.type == tokenize.OP:
                out.append(tok.string)
            else:  # ERRORTOKEN (a stray "$" or "?") and anything newer: kept as its text, as the regex does
                out.append(tok.string.strip() or tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return out


def is_python(text: str) -> bool:
    """Whether a field is Python source (a body such as HumanEval's indented solution counts, once dedented).

    Only such fields are code-screened: the canonical stream of prose is a run of placeholders, which would
    match any prose of the same length.
    """
    try:
        ast.parse(textwrap.dedent(text))
    except (SyntaxError, ValueError):  # ValueError: null bytes
        return False
    return True


def _periodic_repeats(hashes: np.ndarray, period: int, doc_of: np.ndarray | None) -> np.ndarray:
    """Mask of the tokens that repeat the ``period`` tokens before them, in runs of at least one full period.

    ``N , N , N , N`` (period 2) keeps its first ``N ,``: the rest only says "more of the same".
    """
    if len(hashes) <= period:
        return np.zeros(len(hashes), dtype=bool)
    repeats = hashes[period:] == hashes[:-period]
    if doc_of is not None:  # a run never continues into the next document
        repeats &= doc_of[period:] == doc_of[:-period]
    same = np.concatenate(([False], repeats, [False]))
    edges = np.flatnonzero(np.diff(same.astype(np.int8)))
    starts, ends = edges[::2], edges[1::2]  # runs of repeats, as [start, end) in the shifted array
    long = ends - starts >= period
    # The runs are disjoint and apart, so their dropped stretches are too: one +1 / -1 pair each, then a cumsum.
    change = np.zeros(len(hashes) + 1, dtype=np.int8)
    change[starts[long] + period] = 1
    change[ends[long] + period] = -1
    return np.cumsum(change[:-1], dtype=np.int8).astype(bool)


def compressed(hashes: np.ndarray, doc_of: np.ndarray | None = None) -> np.ndarray:
    """Indices of the canonical tokens kept once periodic repeats (periods 1 to 4) are collapsed.

    Why: data tables (``[1, 4, 5, 9, 10, ...]``, ``{"a": 1, "b": 2, ...}``) canonicalise to long runs of
    ``N ,`` or ``S : N ,`` that every table in a code corpus shares; collapsed, such a run is one period
    long and cannot fill an n-gram on its own. Applied to items and documents alike, so a copy still matches.
    ``doc_of`` (the document of each token) keeps runs inside one document of a concatenated batch.
    """
    keep = np.arange(len(hashes))
    for period in range(1, 5):
        keep = keep[~_periodic_repeats(hashes[keep], period, None if doc_of is None else doc_of[keep])]
    return keep


_WORD_TOKENS = frozenset(KEPT_NAMES | {PLACEHOLDER})
_WORD_HASHES = np.sort(TokenHasher().hashes(sorted(_WORD_TOKENS)))  # every hasher gives the same (stable) hashes


def _docstrings(hashes: np.ndarray, hasher: TokenHasher) -> np.ndarray:
    """Mask of the string literals that open a block (``:`` then ``S`` then a statement's first name): docstrings.

    Dropped on both sides, so that a copy with its docstring removed or rewritten still matches the item's
    program; a dict or lambda value that happens to fit the pattern is dropped consistently and costs nothing.
    """
    if len(hashes) < 3:
        return np.zeros(len(hashes), dtype=bool)
    is_string = hashes == hasher[STRING]
    after_colon = np.concatenate(([False], hashes[:-1] == hasher[":"]))
    at = np.minimum(np.searchsorted(_WORD_HASHES, hashes), len(_WORD_HASHES) - 1)
    word = _WORD_HASHES[at] == hashes  # a name, by its hash: no pass over the token strings
    before_word = np.concatenate((word[1:], [False]))
    return is_string & after_colon & before_word


def _layout_free(hashes: np.ndarray, hasher: TokenHasher) -> np.ndarray:
    """Mask of the tokens the fuzzy stream keeps: not a parenthesis, not a comma just before a closing bracket.

    Why: ``ast.unparse`` and formatters add and remove both freely (``return (a, b)`` / ``return a, b``,
    ``(x +\\n y)`` / ``x + y``, ``[1, 2,]``), and every such edit breaks each long n-gram that spans it. Brackets
    that carry meaning (``[``, ``{``) stay, and so does every name, keyword and operator.
    """
    parens = np.isin(hashes, np.array([hasher["("], hasher[")"]], dtype=hashes.dtype))
    closers = np.array([hasher[")"], hasher["]"], hasher["}"]], dtype=hashes.dtype)
    trailing = np.zeros(len(hashes), dtype=bool)
    if len(hashes) > 1:
        trailing[:-1] = (hashes[:-1] == hasher[","]) & np.isin(hashes[1:], closers)
    return ~(parens | trailing)


def field_code_grams(text: str, n: int, min_tokens: int, hasher: TokenHasher) -> tuple[np.ndarray, int]:
    """(distinct canonical ``n``-gram hashes, canonical token count) of one item field.

    Empty unless the field is Python with at least ``max(n, min_tokens)`` canonical tokens. Tokens come from
    :mod:`tokenize`, or the regex tokenizer when it fails (both give the same stream on valid Python).
    """
    tokens = _field_tokens(text)
    if tokens is None or len(tokens) < max(n, min_tokens):
        return np.empty(0, np.uint64), 0 if tokens is None else len(tokens)
    hashes = hasher.hashes(tokens)
    hashes = hashes[~_docstrings(hashes, hasher)]
    hashes = hashes[compressed(hashes)]
    if len(hashes) < max(n, min_tokens):
        return np.empty(0, np.uint64), len(hashes)
    return np.unique(ngram_hashes(hashes, n)), len(hashes)


def field_fuzzy_grams(text: str, k: int, min_grams: int, hasher: TokenHasher) -> np.ndarray:
    """Distinct ``k``-gram hashes of a field's layout-free canonical stream (method ``code_containment``).

    Empty unless the field is Python with at least ``min_grams`` distinct ``k``-grams: a share of a handful
    of short canonical n-grams is met by chance in any code corpus.
    """
    tokens = _field_tokens(text)
    if tokens is None:
        return np.empty(0, np.uint64)
    hashes = hasher.hashes(tokens)
    hashes = hashes[~_docstrings(hashes, hasher) & _layout_free(hashes, hasher)]
    hashes = hashes[compressed(hashes)]
    grams = np.unique(ngram_hashes(hashes, k)) if len(hashes) >= k else np.empty(0, np.uint64)
    return grams if len(grams) >= min_grams else np.empty(0, np.uint64)


@functools.lru_cache(maxsize=4096)
def _field_tokens(text: str) -> tuple[str, ...] | None:
    """A field's canonical tokens, or None when it is not Python.

    Cached: both code tests index every field, and ``ast.parse`` plus the pure-Python :mod:`tokenize` cost as much
    per field as screening a few hundred KB of documents; the build of the index is part of every screen call.
    """
    if not text.strip() or not is_python(text):
        return None
    tokens = tokenize_code_tokens(text)
    return tuple(regex_code_tokens(text) if tokens is None else tokens)


class DocTokens:
    """The canonical tokens of one batch of documents, hashed once for every code method, and their lines."""

    def __init__(self, texts: Sequence[str], hasher: TokenHasher) -> None:
        self.texts = texts
        self.hasher = hasher
        found = scan(texts, _scan_table())
        ids = found.ids
        for k in np.flatnonzero(ids == UNRESOLVED).tolist():  # rare non-ASCII operators and names: as the regex
            ids[k] = _RAW_IDS[found.text[found.starts[k] : found.stops[k]]]
        streamed = ids >= _NUMBER
        at = np.cumsum(streamed) - streamed  # each token's position in the stream (a break's: of the next one)
        self.hashes = _IDS.hashes[ids[streamed]]
        doc_starts = found.ends - np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        self.owner = np.searchsorted(found.ends, found.starts[streamed], side="right")
        lengths = np.bincount(self.owner, minlength=len(texts))
        self.token_starts = np.cumsum(lengths) - lengths  # first original token of each document
        # Each token's span in its own document's text, for the evidence of a finding.
        self.char_starts = found.starts[streamed] - doc_starts[self.owner]
        self.char_stops = found.stops[streamed] - doc_starts[self.owner]
        self.breaks = at[ids == _LINE_BREAK]  # a line break before this stream position (its length at the end)
        self.numbers = self._raw(found, at, ids == _NUMBER)  # positions, tokens as written
        self.long_strings = self._raw(found, at, ids == _LONG_STRING)  # strings that span lines
        self.docstrings = _docstrings(self.hashes, hasher)

    @staticmethod
    def _raw(found: Scan, at: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """(stream positions, raw text) of the tokens ``which`` selects."""
        spans = zip(found.starts[which].tolist(), found.stops[which].tolist(), strict=True)
        return at[which], [found.text[lo:hi] for lo, hi in spans]

    @functools.cached_property
    def layout_free(self) -> np.ndarray:
        """Which tokens the layout-free stream keeps (:func:`_layout_free`), for the fuzzy and whole-block tests."""
        return _layout_free(self.hashes, self.hasher)

    def hits(self, index: GramIndex, layout_free: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(kept token indices, stream position, key index, field ref) of every posting hit inside one document.

        The stream is the documents' canonical tokens without docstrings (and, ``layout_free``, without
        parentheses and trailing commas), periodic repeats collapsed; ``kept`` maps it back to original tokens.
        """
        mask = ~self.docstrings
        if layout_free:
            mask &= self.layout_free
        kept = np.flatnonzero(mask)
        kept = kept[compressed(self.hashes[kept], self.owner[kept])]
        doc_of = self.owner[kept]
        ends = np.cumsum(np.bincount(doc_of, minlength=len(self.texts)))
        grams = ngram_hashes(self.hashes[kept], index.g)
        empty = np.empty(0, np.int64)
        if not len(grams) or not len(index.keys):
            return kept, empty, empty, empty
        inside = np.arange(len(grams)) + index.g <= ends[doc_of[: len(grams)]]
        pos, keys = index.lookup(grams)
        keep = inside[pos]
        pos, keys = pos[keep], keys[keep]
        which, refs = index.expand(keys)
        return kept, pos[which], keys[which], refs

    def span(self, kept: np.ndarray, first: int, last: int) -> tuple[int, int]:
        """Character offsets, in their document's text, of stream positions ``first`` to ``last`` (inclusive)."""
        return int(self.char_starts[kept[first]]), int(self.char_stops[kept[last]])


def _grouped(pair: np.ndarray, pos: np.ndarray, keys: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    order = np.lexsort((pos, pair))
    pair, pos, keys = pair[order], pos[order], keys[order]
    bounds = np.flatnonzero(np.diff(pair)) + 1
    heads = np.concatenate(([0], bounds)).astype(np.int64)
    return list(zip(pair[heads].tolist(), np.split(pos, bounds), np.split(keys, bounds), strict=True))


def code_findings(docs: DocTokens, index: GramIndex) -> list[tuple[int, int, int, int, float]]:
    """(document, field ref, span start, span end, score) per (document, code field) sharing a canonical n-gram.

    Linear in the documents: their canonical tokens are hashed once, every n-gram is looked up in the
    item index (bit table, then binary search), and hits are grouped per (document, field) with numpy.
    The span is the longest run of consecutive shared n-grams, in character offsets of the original text;
    the score is the share of the field's distinct canonical n-grams found.
    """
    kept, pos, keys, refs = docs.hits(index, layout_free=False)
    if not len(pos):
        return []
    nfields = len(index.field_counts)
    doc_of = docs.owner[kept]
    out = []
    for pr, p, k in _grouped(doc_of[pos] * nfields + refs, pos, keys):
        doc, ref = divmod(pr, nfields)
        run = np.unique(p)
        breaks = np.flatnonzero(np.diff(run) != 1)
        run_starts = np.concatenate(([0], breaks + 1))
        run_ends = np.concatenate((breaks, [len(run) - 1]))
        best = int(np.argmax(run_ends - run_starts))
        lo, hi = docs.span(kept, int(run[run_starts[best]]), int(run[run_ends[best]]) + index.g - 1)
        out.append((doc, ref, lo, hi, float(len(np.unique(k)) / index.field_counts[ref])))
    return out


def fuzzy_code_findings(docs: DocTokens, index: GramIndex, threshold: float) -> list[tuple[int, int, int, int, float]]:
    """(document, field ref, span start, span end, score) per (document, code field) whose window holds at least
    ``threshold`` of the field's distinct layout-free canonical ``k``-grams (method ``code_containment``).

    Counted like the word ``containment``: distinct (pair, k-gram) hits with ``np.unique``, then only the pairs
    over the threshold in the whole document are checked in a window of at most twice the field's length (a
    long file holds many common k-grams far apart; a copy holds them together). The score is the window's share.
    """
    kept, pos, keys, refs = docs.hits(index, layout_free=True)
    if not len(pos):
        return []
    nfields, nkeys = len(index.field_counts), len(index.keys)
    pair = docs.owner[kept][pos] * nfields + refs
    distinct = np.unique(pair * nkeys + keys)  # a k-gram repeated in a document counts once
    pairs, shared = np.unique(distinct // nkeys, return_counts=True)
    candidates = pairs[shared >= threshold * index.field_counts[pairs % nfields]]
    if not len(candidates):
        return []
    sel = np.isin(pair, candidates)
    out = []
    for pr, p, k in _grouped(pair[sel], pos[sel], keys[sel]):
        doc, ref = divmod(pr, nfields)
        count = int(index.field_counts[ref])
        last = np.searchsorted(p, p + 2 * count + index.g, side="right")
        shares = [len(np.unique(k[i:j])) for i, j in zip(range(len(p)), last.tolist(), strict=True)]
        best = int(np.argmax(shares))
        if shares[best] >= threshold * count:
            lo, hi = docs.span(kept, int(p[best]), int(p[last[best] - 1]) + index.g - 1)
            out.append((doc, ref, lo, hi, shares[best] / count))
    return out
