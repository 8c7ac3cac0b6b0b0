"""The code screen's whole-block test (match type ``code_body``): a short answer found as one complete block.

Why: the canonical n-gram tests (:mod:`~mixassets.engine.contamination_code`) need a field of at least ~20
canonical tokens, and about one HumanEval solution in five is shorter (``for i in reversed(range(n)): if n % i
== 0: return i``). With its names renamed, such a solution shares no word n-gram with the item, and a canonical
10-gram of it is an idiom any code corpus holds. What a short solution still has is its *whole* shape: every
logical line, in order, with its nesting, and nothing else in the block. So a target Python field with at least
``code_body_min_tokens`` canonical tokens is matched whole, as a block that is complete in the document:

* each logical line (physical lines joined inside brackets and after a backslash) has the field's canonical
  tokens: names as ``ID`` unless a keyword or builtin, strings as ``S``, number literals *as written* (a rename
  keeps them), parentheses and trailing commas left out (what formatters add and drop), comments gone;
* the lines nest as the field's do (the ranks of their indentation widths agree, so tabs or two-space indents
  match);
* the block is anchored: before it there is no code line (the document starts there, possibly after prose
  and a fence) or a header ending in ``:`` that is indented less (``def f(x):``, ``Answer:``), docstrings between
  them skipped; after it the document ends or the next line is indented less than the block's first line.

Why these anchors: a block that starts after a header and ends at a dedent is a function body (or an
answer pasted alone), and the test then says "this whole body is the answer", not "this answer's lines occur
somewhere", which is what makes a short match evidence. Measured on every ``.py`` file of CPython's standard
library and a virtual environment's site-packages (``benchmarks/code_contamination.py --body``): see
:class:`~mixassets.engine.contamination_index.ScreenConfig` for the figures behind the minimum.

Cost: documents are not split into lines up front. The first :data:`PREFIX` layout-free canonical tokens of each
indexed field are one hash in a small index, looked up at every position of the documents' canonical stream
(which the other code tests have already built); the rest of the field's stream is compared only where that
prefix occurs, and lines and anchors are checked in Python only for the documents whose stream holds a whole
field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from mixassets.engine.contamination_code import _CODE_TOKEN, NUMBER, DocTokens, _classify, regex_code_tokens
from mixassets.engine.text_norm import TokenHasher, ngram_hashes

if TYPE_CHECKING:
    from mixassets.engine.contamination_grams import GramIndex

PREFIX = 8  # layout-free canonical tokens of a field looked up at every position of the documents
_OPENERS, _CLOSERS = frozenset("([{"), frozenset(")]}")
_LAYOUT = frozenset("()")
_FENCE = ("`", "`", "`")


class Line(NamedTuple):
    """One logical line of code: its indentation, its character span and its canonical tokens."""

    indent: int  # characters before its first token on its first physical line
    start: int
    end: int
    tokens: tuple[str, ...]


class BodyKey(NamedTuple):
    """A field as the block the test looks for."""

    lines: tuple[tuple[str, ...], ...]
    levels: tuple[int, ...]  # nesting of each line: the rank of its indentation among the block's
    stream: np.ndarray  # hashes of the layout-free canonical tokens (numbers as ``N``), all lines joined


def _literal(tok: str, canon: str) -> str:
    """The token the lines compare: a number as written (case and ``_`` folded), anything else canonical."""
    return tok.lower().replace("_", "") if canon == NUMBER else canon


def code_lines(text: str) -> list[Line]:
    """The logical lines of any text (prose lines come out as lines of ``ID`` tokens); never raises.

    A new logical line starts at a token with a line break before it, unless a bracket is open (a
    continuation token ``\\`` + newline spans its break, so the line goes on). A closing bracket without an
    opener (prose's "1)") is ignored rather than letting the depth go negative. Lines left empty once the
    parentheses are gone (a lone ``)``) are dropped.
    """
    lines: list[Line] = []
    depth = prev_end = indent = start = end = 0
    raw: list[str] = []
    canon: list[str] = []
    for m in _CODE_TOKEN.finditer(text):
        tok = m.group()
        broke = "\n" in text[prev_end : m.start()]
        prev_end = m.end()
        kind = _classify(tok)
        if not kind:  # a comment or a line continuation
            continue
        if raw and broke and depth == 0:
            lines += _line(indent, start, end, raw, canon)
            raw, canon = [], []
        if not raw:
            indent, start = m.start() - (text.rfind("\n", 0, m.start()) + 1), m.start()
        if tok in _OPENERS:
            depth += 1
        elif tok in _CLOSERS:
            depth = max(depth - 1, 0)
        raw.append(tok)
        canon.append(_literal(tok, kind))
        end = m.end()
    return lines + _line(indent, start, end, raw, canon)


def _line(indent: int, start: int, end: int, raw: list[str], canon: list[str]) -> list[Line]:
    tokens = tuple(c for c, keep in zip(canon, layout_kept(raw), strict=True) if keep)
    return [Line(indent, start, end, tokens)] if tokens else []


def layout_kept(tokens: list[str]) -> list[bool]:
    """Per raw token, whether the layout-free stream keeps it: not a parenthesis, not a comma right before a
    closing bracket (``contamination_code._layout_free`` on token strings, so both streams agree)."""
    return [
        t not in _LAYOUT and not (t == "," and k + 1 < len(tokens) and tokens[k + 1] in _CLOSERS)
        for k, t in enumerate(tokens)
    ]


def _levels(widths: list[int]) -> tuple[int, ...]:
    rank = {w: k for k, w in enumerate(sorted(set(widths)))}
    return tuple(rank[w] for w in widths)


def field_body(text: str, min_tokens: int, hasher: TokenHasher) -> BodyKey | None:
    """The block a Python field is looked for as, or None when it has fewer than ``min_tokens`` layout-free
    canonical tokens (or fewer than :data:`PREFIX`), or its first line is not its outermost."""
    lines = code_lines(text)
    if not lines or min(line.indent for line in lines) < lines[0].indent:
        return None
    tokens = regex_code_tokens(text)
    stream = [t for t, keep in zip(tokens, layout_kept(tokens), strict=True) if keep]
    if len(stream) < max(min_tokens, PREFIX) or len(stream) != sum(len(line.tokens) for line in lines):
        return None  # short, or the two tokenisations disagree (they cannot on text that parses)
    levels = _levels([line.indent for line in lines])
    return BodyKey(tuple(line.tokens for line in lines), levels, hasher.hashes(stream))


def body_prefix(key: BodyKey) -> np.ndarray:
    """The hash the field is indexed under: its first :data:`PREFIX` stream tokens as one n-gram."""
    return ngram_hashes(key.stream[:PREFIX], PREFIX)


def block_matches(lines: list[Line], key: BodyKey, anchored: bool = True) -> list[tuple[int, int]]:
    """(first, last) line indices of every anchored, complete block of ``lines`` that is ``key`` (``anchored``
    False: every run of lines that is, complete or not; what the calibration counts as near misses)."""
    k = len(key.lines)
    out = []
    for i in range(len(lines) - k + 1):
        block = lines[i : i + k]
        if any(line.tokens != want for line, want in zip(block, key.lines, strict=True)):
            continue
        base = block[0].indent
        if _levels([line.indent for line in block]) != key.levels or min(line.indent for line in block) < base:
            continue
        if not anchored:
            out.append((i, i + k - 1))
            continue
        after = lines[i + k] if i + k < len(lines) else None
        if after is not None and after.indent >= base and after.tokens[:3] != _FENCE:
            continue
        j = i - 1
        while j >= 0 and lines[j].tokens == ("S",) and lines[j].indent == base:  # a docstring under the header
            j -= 1
        before = lines[j] if j >= 0 else None
        if before is None or before.tokens[:3] == _FENCE or (before.tokens[-1] == ":" and before.indent < base):
            out.append((i, i + k - 1))
    return out


def body_findings(
    docs: DocTokens, index: GramIndex, keys: list[BodyKey | None], anchored: bool = True
) -> list[tuple[int, int, int, int, float]]:
    """(document, field ref, span start, span end, 1.0) per document holding an indexed field as a whole block
    (``index``: :func:`body_prefix` of each field, ``keys``: each field's :class:`BodyKey` or None;
    ``anchored``: see :func:`block_matches`)."""
    if not len(index.keys):
        return []
    kept = np.flatnonzero(docs.layout_free)
    stream, owner = docs.hashes[kept], docs.owner[kept]
    grams = ngram_hashes(stream, PREFIX)
    if not len(grams):
        return []
    ends = np.cumsum(np.bincount(owner, minlength=len(docs.texts)))
    pos, found = index.lookup(grams)
    inside = pos + PREFIX <= ends[owner[pos]]
    which, refs = index.expand(found[inside])
    candidates: dict[int, set[int]] = {}
    for p, ref in zip(pos[inside][which].tolist(), refs.tolist(), strict=True):
        want, doc = keys[ref].stream, int(owner[p])
        if p + len(want) <= ends[doc] and np.array_equal(stream[p : p + len(want)], want):
            candidates.setdefault(doc, set()).add(ref)
    out = []
    for doc, matched in sorted(candidates.items()):
        lines = code_lines(docs.texts[doc])
        for ref in sorted(matched):
            blocks = block_matches(lines, keys[ref], anchored)
            if blocks:
                first, last = blocks[0]
                out.append((doc, ref, lines[first].start, lines[last].end, 1.0))
    return out
