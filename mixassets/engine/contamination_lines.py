"""The code screen's line test (match type ``code_lines``): a rewritten copy found by its distinctive lines.

Why: the canonical n-gram tests (:mod:`~mixassets.engine.contamination_code`) survive a rename, comments and a
formatter, but not a copy with lines dropped here and there: every dropped line breaks each k-gram that spans it,
and with one line in seven gone a solution's 10-grams fall well under the fuzzy test's 0.8. Nor does any of them
read a docstring, which the canonical stream keeps as one ``S``: a rewritten prompt (its prose reworded, its
examples partly dropped, its solution too short to screen) shows them nothing. What such a copy keeps is most of
its *lines*, each unchanged once canonical. So this test compares physical lines:

* a line is its canonical tokens (names as ``ID`` unless a keyword or builtin, strings as ``S``, numbers *as
  written*, comments gone), and a string that spans lines is read line by line, as code, so a docstring's prose
  and doctest lines count (``>>> ID ( 30 )``, ``465``) and survive a rename of the words in them;
* only distinctive lines are evidence: at least ``code_lines_min_tokens`` tokens (a ``return ID`` or ``else :``
  is in any program), and in one item of the eval set alone (HumanEval's ``def ID(ID: List[int]) -> List[int]:``
  opens a dozen prompts: such a line says nothing about which item leaked, and planted copies of one item were
  attributed to others until these lines were left out);
* a document is flagged when one window of it (twice the field's lines, plus two) holds distinct lines of the
  field worth at least ``code_lines_threshold`` of its line tokens, with at least ``code_lines_min_lines`` lines
  and ``code_lines_min_weight`` tokens: one long line can be a common idiom, two rarely are. A line's tokens weigh
  its evidence because a long line of prose shape (``ID ID ID , ID ID and ID ID .``) is rare and a short one not.

Calibration (``benchmarks/lines_calibration.py``): half the items and half the labelled negatives, plus every
``.py`` file of CPython's standard library, choose; the other half is held out. The rule, the highest calibration
recall with no calibration false positive (ties to the strictest setting), picks 6 tokens, 0.4 and 12 tokens:
rewritten copies found by the screen 76/82 on the calibration half, 79/82 held out, no false positive on either
side. The margin is real but not wide: at a threshold of 0.3 and 12 tokens the stdlib and its chunks give 32 false
positives (pairs of long prose lines of the same shape), at 0.3 and 16 tokens one held-out.

Cost: the tokenizer notes where line breaks fall in its own pass (a break swallows the indent after it), so a
line's hash is a numpy reduction over the token hashes. Strings that span lines (a tenth of a code corpus's text)
are read again, but piece by piece through a memo of each whitespace-separated piece's token hashes: prose repeats
its words, so that is a dictionary look-up per word.
Windows are checked in Python only for the (document, field) pairs whose whole document holds enough of the field.
"""

from __future__ import annotations

import functools
import re
from itertools import chain
from typing import TYPE_CHECKING

import numpy as np

from mixassets.engine.contamination_code import (
    _CANON,
    _CODE_TOKEN,
    NEWLINE,
    NUMBER,
    DocTokens,
    _canonical_name,
    _classify,
)
from mixassets.engine.text_norm import TokenHasher

if TYPE_CHECKING:
    from mixassets.engine.contamination_index import FieldRef, GramIndex, ScreenConfig

NO_LINES: tuple[np.ndarray, list[int], int] = (np.empty(0, np.uint64), [], 0)  # a field's (hashes, tokens, lines)
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd: line hash = sum of token hashes times its powers (mod 2^64)
_MIX = np.uint64(0xBF58476D1CE4E5B9)


def _content(raw: str) -> str:
    """The text inside a string literal's quotes (prefix and quotes gone)."""
    start = next(k for k, c in enumerate(raw) if c in "'\"")
    quote = 3 if raw[start : start + 3] in ('"""', "'''") and len(raw) - start >= 6 else 1
    return raw[start + quote : len(raw) - quote]


class _PieceHashes(dict[str, tuple[int, ...]]):
    """Whitespace-free piece of a string's text -> the hashes of its tokens (numbers as written); bounded."""

    def __missing__(self, piece: str) -> tuple[int, ...]:
        if piece.isidentifier():  # most pieces are words: the one token the tokenizer would give, without it
            value: tuple[int, ...] = (_HASHES[_canonical_name(piece)],)
        else:
            value = tuple(
                _HASHES["#" + tok if canon is NUMBER else canon]
                for tok in _CODE_TOKEN.findall(piece)
                if (canon := _CANON.get(tok) or _classify(tok))
            )
        if len(self) < 1 << 20:
            self[piece] = value
        return value


_PIECES = _PieceHashes()
_HASHES = TokenHasher()  # the tokens' hashes are the same in every hasher (stable_hash64): one memo for the pieces
_BREAK = (_HASHES[NEWLINE],)
_PIECES[NEWLINE] = _BREAK  # the break between two lines of a string (see :func:`_content_hashes`)
_PIECE_OR_BREAK = re.compile(r"\n|\S+")  # \S is what ``str.split`` keeps: both use Python's own isspace


def _content_hashes(raw: str) -> np.ndarray:
    """The token hashes of a multi-line string's text, line by line (a break's hash between lines).

    Each whitespace-separated piece is tokenised on its own and memoised: a docstring is mostly prose, whose pieces
    (words) repeat, so this costs a dictionary look-up per word, all in C, where the tokenizer's own pass over the
    strings cost the line test a third of its time. It gives the tokenizer's tokens but where a token would span a
    space (a quoted phrase); both sides of the screen read strings this way, so an item and its copy still agree.
    """
    pieces = _PIECE_OR_BREAK.findall(_content(raw))  # ``line.split()`` of every line, a NEWLINE between lines
    pieces.append(NEWLINE)
    return np.fromiter(chain.from_iterable(map(_PIECES.__getitem__, pieces)), dtype=np.uint64)


def line_keys(docs: DocTokens) -> tuple[np.ndarray, ...]:
    """(line hash, canonical tokens, document, first token, last token) of every non-empty line of a batch.

    A multi-line string's token is replaced by its text's tokens, lines and all. A line's first and last tokens are
    positions in the batch's code stream, for its span; a line inside a string spans the string.
    """
    hashes = docs.hashes.copy()
    where, raws = docs.numbers
    if len(where):
        hashes[where] = docs.hasher.hashes(list(map("#".__add__, raws)))
    # A line starts at each document's first token and after each break.
    begins = np.zeros(len(hashes) + 1, dtype=bool)
    begins[docs.token_starts] = True
    begins[docs.breaks] = True
    begins = begins[: len(hashes)]
    pieces: list[np.ndarray] = []
    flags: list[np.ndarray] = []
    lengths: list[int] = []  # of the stream's segments: the tokens between strings, and each string's own
    flats: list[int] = []  # each string's own token
    at = 0
    for flat, raw in zip(docs.long_strings[0].tolist(), docs.long_strings[1], strict=True):
        sub = _content_hashes(raw)
        sub_begins = sub == _BREAK[0]  # a break token: the next line starts there (the break is dropped)
        sub_begins[0] |= begins[flat]
        pieces += [hashes[at:flat], sub]
        flags += [begins[at:flat], sub_begins]
        lengths += [flat - at, len(sub)]
        flats.append(flat)
        at = flat + 1
    if not pieces:
        stream, anchor, breaks = hashes, np.arange(len(hashes)), np.zeros(len(hashes), dtype=bool)
    else:
        pieces.append(hashes[at:])
        flags.append(begins[at:])
        lengths.append(len(hashes) - at)
        stream, begins = np.concatenate(pieces), np.concatenate(flags)
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
        breaks = stream == _BREAK[0]
    line = np.cumsum(begins) - 1
    keep = ~breaks
    stream, anchor, line = stream[keep], anchor[keep], line[keep]
    if not len(stream):
        empty = np.empty(0, np.int64)
        return np.empty(0, np.uint64), empty, empty, empty, empty
    starts_ = np.flatnonzero(np.concatenate(([True], line[1:] != line[:-1])))
    counts = np.diff(np.append(starts_, len(stream)))
    offset = np.arange(len(stream)) - np.repeat(starts_, counts)
    powers = np.cumprod(np.full(int(counts.max()), _MULT, dtype=np.uint64), dtype=np.uint64)
    with np.errstate(over="ignore"):
        mixed = np.add.reduceat(stream * powers[offset], starts_) * _MIX + counts.astype(np.uint64)
    first_token = anchor[starts_]
    return mixed ^ (mixed >> np.uint64(31)), counts, docs.owner[first_token], first_token, anchor[starts_ + counts - 1]


@functools.lru_cache(maxsize=4096)
def field_lines(text: str, min_tokens: int) -> tuple[np.ndarray, list[int], int]:
    """(distinct hashes of a field's lines of at least ``min_tokens`` tokens, their tokens, the field's line count).

    The field goes through the documents' tokenizer, not :mod:`tokenize`: its lines must hash as a copy's would.
    Cached, as the other code tests' field tokens are: the index is built anew for every screen call.
    """
    keys, counts, *_ = line_keys(DocTokens([text], _HASHES))
    long = counts >= min_tokens
    hashes, first = np.unique(keys[long], return_index=True)
    hashes.flags.writeable = False  # shared by every index built from the cache
    return hashes, counts[long][first].tolist(), len(keys)


def line_windows(
    keys: tuple[np.ndarray, ...],
    index: GramIndex,
    weights: np.ndarray,
    lines: np.ndarray,
    min_tokens: int,
    floor: float,
) -> list[tuple[int, int, float, int, int, int]]:
    """(document, field ref, weight, lines, first line, last line) of the best window of every (document, field)
    pair whose whole document holds distinctive lines of the field worth at least ``floor`` tokens.

    ``keys``: :func:`line_keys` of the batch; ``weights``: tokens of each index key; ``lines``: each field's line
    count (the window spans twice that, plus two); the best window is the one whose distinct lines weigh most.
    """
    if not len(index.keys):
        return []
    keys, counts, owner, *_ = keys
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
    docs: DocTokens,
    index: GramIndex,
    weights: np.ndarray,
    lines: np.ndarray,
    cfg: ScreenConfig,
) -> list[tuple[int, int, int, int, float]]:
    """(document, field ref, span start, span end, score) per (document, field) whose best window (see
    :func:`line_windows`) passes the ``code_lines_*`` settings of ``cfg``. The score is the window's share of the
    field's line tokens; the span runs from the window's first matched line to the end of its last."""
    if not len(index.keys):
        return []
    field_weight = _field_weights(index, weights)
    floor = cfg.code_lines_min_weight
    keys = line_keys(docs)
    found = line_windows(keys, index, weights, lines, cfg.code_lines_min_tokens, floor)
    if not found:
        return []
    *_, first_token, last_token = keys
    ident = np.arange(len(docs.hashes))
    out = []
    for doc, ref, weight, count, first, final in found:
        share = weight / field_weight[ref]
        if count >= cfg.code_lines_min_lines and weight >= floor and share >= cfg.code_lines_threshold:
            lo, hi = docs.span(ident, int(first_token[first]), int(last_token[final]))
            out.append((doc, ref, lo, hi, share))
    return out


def _field_weights(index: GramIndex, weights: np.ndarray) -> np.ndarray:
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
