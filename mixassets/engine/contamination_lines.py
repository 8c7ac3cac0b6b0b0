"""The code screen's line test (match type ``code_lines``): a rewritten copy found by its distinctive lines.

Why: the canonical n-gram tests (:mod:`~mixassets.engine.contamination_code`) survive a rename, comments and a
formatter, but not a copy with lines dropped here and there: every dropped line breaks each k-gram that spans it,
and with one line in seven gone a solution's 10-grams fall well under the fuzzy test's 0.8. Nor does any of them
read a docstring, which the canonical stream keeps as one ``S``: a rewritten prompt (its prose reworded, its
examples partly dropped) shows none of them anything. What such a copy keeps is most of its *lines*, each
unchanged once canonical. So this test compares physical lines:

* a line is its canonical tokens (names as ``ID`` unless a keyword or builtin, strings as ``S``, numbers *as
  written*, comments gone), and a string that spans lines is read line by line, as code, so a docstring's prose
  and doctest lines count (``>>> ID ( 30 )``, ``465``) and survive a rename of the words in them;
* only distinctive lines are evidence: at least ``code_lines_min_tokens`` tokens (a ``return ID`` or ``else :``
  is in any program), and in one item of the eval set alone (HumanEval's ``def ID(ID: List[int]) -> List[int]:``
  is in a dozen: such a line says nothing about which item leaked, and planted copies of one item were otherwise
  attributed to others);
* a document is flagged when one window of it (twice the field's lines, plus two) holds distinct lines of the
  field worth at least ``code_lines_threshold`` of its line tokens, with at least ``code_lines_min_lines`` lines
  and ``code_lines_min_weight`` tokens: one long line can be a common idiom, two rarely are.

The constants were chosen on half of ``benchmarks/labelled_contamination.py`` (``--lines-calibration``; see
:class:`~mixassets.engine.contamination_index.ScreenConfig`). A line's tokens weigh its evidence because a long
line of prose shape (``ID ID ID , ID ID and ID ID .``) is rare and a short one is not.

Cost: the documents' line breaks come from the code tokenizer's own pass (:data:`~mixassets.engine.
contamination_code.NEWLINE` tokens), so a line's hash is a numpy reduction over token hashes; only the strings
that span lines are tokenised again (about a tenth of the text of a code corpus), and windows are checked in
Python only for the (document, field) pairs whose whole document holds enough of the field.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from mixassets.engine.contamination_code import _CODE_TOKEN, NEWLINE, NUMBER, DocTokens, _classify
from mixassets.engine.text_norm import TokenHasher

if TYPE_CHECKING:
    from mixassets.engine.contamination_index import FieldRef, ScreenConfig, _GramIndex

NO_LINES: tuple[np.ndarray, list[int], int] = (np.empty(0, np.uint64), [], 0)  # a field's (hashes, tokens, lines)
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd: line hash = sum of token hashes times its powers (mod 2^64)
_MIX = np.uint64(0xBF58476D1CE4E5B9)


def _content(raw: str) -> str:
    """The text inside a string literal's quotes (prefix and quotes gone)."""
    start = next(k for k, c in enumerate(raw) if c in "'\"")
    quote = 3 if raw[start : start + 3] in ('"""', "'''") and len(raw) - start >= 6 else 1
    return raw[start + quote : len(raw) - quote]


def _literal(raw: str) -> str:
    """A number as written, as a token no other token can be."""
    return "#" + raw


# Whitespace-free piece of a string's text -> its tokens; bounded, as the tokenizer's own memo is.
_PIECES: dict[str, tuple[str, ...]] = {}
_PIECES_LIMIT = 1 << 20


def _piece_tokens(piece: str) -> tuple[str, ...]:
    out = []
    for tok in _CODE_TOKEN.findall(piece):
        canon = _classify(tok)
        if canon:
            out.append(_literal(tok) if canon is NUMBER else canon)
    return tuple(out)


def _content_tokens(raw: str) -> list[str]:
    """The tokens of a multi-line string's text, line by line (:data:`NEWLINE` between lines), numbers as written.

    Each whitespace-separated piece is tokenised on its own and memoised: a docstring is mostly prose, whose
    pieces (words) repeat, so this costs a dictionary look-up per word where the tokenizer's pass cost a third of
    all the line test's time. It gives the tokenizer's tokens but where a token would span a space (a quoted
    phrase): both sides of the screen read strings this way, so an item's docstring and its copy still agree.
    """
    get = _PIECES.get
    out: list[str] = []
    for line in _content(raw).split(NEWLINE):
        for piece in line.split():
            tokens = get(piece)
            if tokens is None:
                tokens = _piece_tokens(piece)
                if len(_PIECES) < _PIECES_LIMIT:
                    _PIECES[piece] = tokens
            out += tokens
        out.append(NEWLINE)
    return out


@functools.lru_cache(maxsize=1)  # the batch being screened: its windows and its findings' spans both read them
def line_keys(docs: DocTokens) -> tuple[np.ndarray, ...]:
    """(line hash, canonical tokens, document, first token, last token) of every non-empty line of a batch.

    A multi-line string's tokens are replaced by its content's (tokenised as code, line breaks included). A line's
    first and last tokens are indices into ``docs.flat``, for its span; a line inside a string spans the string.
    """
    hasher = docs.hasher
    hashes = docs.hashes.copy()
    starts = docs.token_starts.tolist()
    numbers = [(starts[doc] + pos, raw) for doc, found in enumerate(docs.numbers) for pos, raw in found]
    if numbers:
        where, raws = zip(*numbers, strict=True)
        hashes[list(where)] = hasher.hashes(["#" + raw for raw in raws])
    pieces: list[np.ndarray] = []
    lengths: list[int] = []  # of the stream's segments: the tokens between strings, and each string's own
    flats: list[int] = []  # each string's own token
    at = 0
    for doc, found in enumerate(docs.strings):
        for pos, raw in found:
            flat = starts[doc] + pos
            sub = hasher.hashes(_content_tokens(raw))
            pieces += [hashes[at:flat], sub]
            lengths += [flat - at, len(sub)]
            flats.append(flat)
            at = flat + 1
    if not pieces:
        stream, anchor = hashes, np.arange(len(hashes))
    else:
        pieces.append(hashes[at:])
        lengths.append(len(hashes) - at)
        stream = np.concatenate(pieces)
        size = np.array(lengths, dtype=np.int64)
        # A token between strings anchors to itself, a string's to the string: each segment's first anchor, then
        # steps of one (between strings) or none (inside one).
        first = np.zeros(len(size), dtype=np.int64)
        first[1::2] = flats
        first[2::2] = np.array(flats) + 1
        step = np.ones(len(size), dtype=np.int64)
        step[1::2] = 0
        within = np.arange(len(stream)) - np.repeat(np.cumsum(size) - size, size)
        anchor = np.repeat(first, size) + within * np.repeat(step, size)
    owner = docs.owner[anchor]
    # A line ends at a break, and at the end of each document.
    brk = stream == hasher["\n"]
    new_doc = np.ones(len(stream), dtype=bool)
    new_doc[1:] = owner[1:] != owner[:-1]
    line = np.cumsum(brk | new_doc) - 1  # breaks start the next line; they are dropped below
    keep = ~brk
    stream, anchor, owner, line = stream[keep], anchor[keep], owner[keep], line[keep]
    if not len(stream):
        empty = np.empty(0, np.int64)
        return np.empty(0, np.uint64), empty, empty, empty, empty
    starts = np.flatnonzero(np.concatenate(([True], line[1:] != line[:-1])))
    counts = np.diff(np.append(starts, len(stream)))
    offset = np.arange(len(stream)) - np.repeat(starts, counts)
    powers = np.cumprod(np.full(int(counts.max()), _MULT, dtype=np.uint64), dtype=np.uint64)
    with np.errstate(over="ignore"):
        mixed = np.add.reduceat(stream * powers[offset], starts) * _MIX + counts.astype(np.uint64)
    return mixed ^ (mixed >> np.uint64(31)), counts, owner[starts], anchor[starts], anchor[starts + counts - 1]


def field_lines(text: str, min_tokens: int, hasher: TokenHasher) -> tuple[np.ndarray, list[int], int]:
    """(distinct hashes of a field's lines of at least ``min_tokens`` tokens, their tokens, the field's line count).

    The field goes through the documents' tokenizer, not :mod:`tokenize`: its lines must hash as a copy's would.
    """
    keys, counts, *_ = line_keys(DocTokens([text], hasher))
    long = counts >= min_tokens
    hashes, first = np.unique(keys[long], return_index=True)
    return hashes, counts[long][first].tolist(), len(keys)


def line_windows(
    docs: DocTokens, index: _GramIndex, weights: np.ndarray, lines: np.ndarray, min_tokens: int, floor: float
) -> list[tuple[int, int, float, int, int, int]]:
    """(document, field ref, weight, lines, first line, last line) of the best window of every (document, field)
    pair whose whole document holds distinctive lines of the field worth at least ``floor`` tokens.

    ``weights``: tokens of each index key; ``lines``: each field's line count (the window spans twice that, plus
    two); the best window is the one whose distinct lines weigh most. Lines are numbered as in :func:`line_keys`.
    """
    if not len(index.keys):
        return []
    keys, counts, owner, *_ = line_keys(docs)
    sel = np.flatnonzero(counts >= min_tokens)
    pos, found = index.lookup(keys[sel])
    if not len(pos):
        return []
    which, refs = index.expand(found)
    at, found = sel[pos][which], found[which]  # line number (in the batch), key
    nfields, nkeys = len(index.field_counts), len(index.keys)
    pair = owner[at] * nfields + refs
    distinct = np.unique(pair * nkeys + found)  # a line repeated in a document counts once
    pairs, inverse = np.unique(distinct // nkeys, return_inverse=True)
    total = np.bincount(inverse, weights=weights[distinct % nkeys])
    out = []
    for pr in pairs[total >= floor].tolist():
        doc, ref = divmod(pr, nfields)
        mine = np.flatnonzero(pair == pr)
        order = np.argsort(at[mine], kind="stable")
        p, k = at[mine][order], found[mine][order]
        last = np.searchsorted(p, p + 2 * int(lines[ref]) + 2, side="right")
        best = (0.0, 0, 0, 0)
        for i, j in zip(range(len(p)), last.tolist(), strict=True):
            window = np.unique(k[i:j])
            best = max(best, (float(weights[window].sum()), len(window), i, j - 1))
        out.append((doc, ref, best[0], best[1], int(p[best[2]]), int(p[best[3]])))
    return out


def line_findings(
    docs: DocTokens, index: _GramIndex, weights: np.ndarray, lines: np.ndarray, cfg: ScreenConfig
) -> list[tuple[int, int, int, int, float]]:
    """(document, field ref, span start, span end, score) per (document, field) whose best window (see
    :func:`line_windows`) passes the ``code_lines_*`` settings of ``cfg``. The score is the window's share of the
    field's line tokens; the span runs from the window's first matched line to the end of its last."""
    field_weight = _field_weights(index, weights)
    floor = cfg.code_lines_min_weight
    found = line_windows(docs, index, weights, lines, cfg.code_lines_min_tokens, floor)
    if not found:
        return []
    *_, first_token, last_token = line_keys(docs)
    ident = np.arange(len(docs.flat))
    out = []
    for doc, ref, weight, count, first, final in found:
        share = weight / field_weight[ref]
        if count >= cfg.code_lines_min_lines and weight >= floor and share >= cfg.code_lines_threshold:
            lo, hi = docs.span(ident, doc, int(first_token[first]), int(last_token[final]))
            out.append((doc, ref, lo, hi, share))
    return out


def _field_weights(index: _GramIndex, weights: np.ndarray) -> np.ndarray:
    """Line tokens of each field's distinctive lines (the denominator of the share)."""
    out = np.zeros(len(index.field_counts), dtype=np.float64)
    np.add.at(out, index.refs, weights[np.repeat(np.arange(len(index.keys)), np.diff(index.ptr))])
    return out


def shared_lines(fields_: list[tuple[FieldRef, tuple]]) -> set[tuple[str, int]]:
    """(eval set, line hash) of the lines in two or more items of a set: templates, not evidence for one item."""
    owners: dict[tuple[str, int], set[str]] = {}
    for ref, (hashes, _, _) in fields_:
        for h in hashes.tolist():
            owners.setdefault((ref.eval_set, h), set()).add(ref.item_id)
    return {key for key, items in owners.items() if len(items) > 1}


def line_evidence(lines: tuple, shared: set[tuple[str, int]], cfg: ScreenConfig, eval_set: str) -> tuple:
    """A field's lines without the set's shared ones, or none when what is left could never fire the test."""
    hashes, weights, count = lines
    own = [k for k, h in enumerate(hashes.tolist()) if (eval_set, h) not in shared]
    kept_weights = [weights[k] for k in own]
    if len(own) < cfg.code_lines_min_lines or sum(kept_weights) < cfg.code_lines_min_weight:
        return NO_LINES
    return hashes[own], kept_weights, count
