"""Text normalisation, tokenisation and stable hashing shared by dedupe and the contamination screen.

Both stages compare documents from different sources, so what counts as "the same text" must not
depend on case, Unicode compatibility forms or whitespace layout. Every hash here is derived from
BLAKE2b rather than Python's ``hash()``, which is salted per process: an n-gram index or a dedupe
key built in one worker must mean the same thing in every other worker and in the next run.

Shingles/n-grams are hashed to 64-bit integers with numpy instead of joining token strings, because
joining and hashing ~350 strings per 2 KB document is the dominant cost of a naive implementation.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

_PUNCT = re.compile(r"[^\w\s]+")

# Odd 64-bit multipliers (from the golden ratio and splitmix64); one per position in an n-gram, so that
# the same tokens in a different order hash differently.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def normalize(text: str) -> str:
    """Canonical text for exact-duplicate keys: NFKC, lowercase, punctuation removed, whitespace collapsed.

    Punctuation is deleted rather than turned into a space so that "e-mail" and "email", or
    re-punctuated copies of a page, fall together.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_PUNCT.sub("", text).split())


def dedupe_words(text: str) -> list[str]:
    """The words dedupe shingles: the tokens of :func:`normalize`."""
    return normalize(text).split()


def stable_hash64(value: str | bytes) -> int:
    """A process-independent 64-bit hash (BLAKE2b, 8-byte digest)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def text_key(normalized: str) -> bytes:
    """A 128-bit key of normalised text; wide enough that a collision between two documents is not a concern."""
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).digest()


class TokenHasher(dict[str, int]):
    """Memoised token -> 64-bit hash; a corpus repeats a small vocabulary, so most look-ups are cache hits."""

    def __missing__(self, token: str) -> int:
        h = stable_hash64(token)
        self[token] = h
        return h

    def hashes(self, tokens: Sequence[str]) -> np.ndarray:
        return np.fromiter(map(self.__getitem__, tokens), dtype=np.uint64, count=len(tokens))


def _finalize(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads every input bit over the low 32 bits that MinHash keeps."""
    h = h ^ (h >> np.uint64(30))
    h = h * _MIX1
    h = h ^ (h >> np.uint64(27))
    h = h * _MIX2
    return h ^ (h >> np.uint64(31))


def _position_multipliers(n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.uint64)
    acc = np.uint64(1)
    with np.errstate(over="ignore"):
        for i in range(n):
            out[i] = acc
            acc = acc * _GOLDEN
    return out | np.uint64(1)


def ngram_hashes(token_hashes: np.ndarray, n: int, *, short_as_one: bool = False) -> np.ndarray:
    """64-bit hashes of every contiguous n-gram, in document order (position i = tokens i..i+n-1).

    With ``short_as_one`` a sequence shorter than ``n`` yields one hash of all its tokens (dedupe needs a
    shingle for every non-empty document); otherwise it yields none (the contamination screen cannot
    claim an n-gram overlap on a shorter text).
    """
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    length = len(token_hashes)
    if length == 0:
        return np.empty(0, dtype=np.uint64)
    if length < n:
        if not short_as_one:
            return np.empty(0, dtype=np.uint64)
        n = length
    mult = _position_multipliers(n)
    count = length - n + 1
    acc = token_hashes[:count] * mult[0]
    for k in range(1, n):
        acc = acc + token_hashes[k : k + count] * mult[k]
    return _finalize(acc)


_DIGITS = re.compile(r"\d+")
# Code tokens: identifiers, numbers (with a fractional part) and operators. Common two-character operators
# are one token so that "a == b" and "a = b" shingle differently; any other punctuation is one token per
# character, so that "))" and ")" are not interchangeable.
_CODE_TOKEN = re.compile(
    r"[^\W\d]\w*|\d\w*(?:\.\d+)?|==|!=|<=|>=|->|=>|::|\*\*|//|&&|\|\||<<|>>|\+=|-=|\*=|/=|%=|[^\w\s]"
)


def normalize_key(
    text: str,
    *,
    lowercase: bool = True,
    collapse_whitespace: bool = True,
    strip_punctuation: bool = True,
    strip_digits: bool = False,
) -> str:
    """Canonical text for an exact-duplicate key, with each step switchable (NFKC is always applied).

    With the defaults this is :func:`normalize`, so keys stay comparable with earlier runs. Returns ""
    when nothing but whitespace is left, so callers can tell "no content" from content.
    """
    text = unicodedata.normalize("NFKC", text)
    if lowercase:
        text = text.lower()
    if strip_punctuation:
        text = _PUNCT.sub("", text)
    if strip_digits:
        text = _DIGITS.sub("", text)
    if collapse_whitespace:
        return " ".join(text.split())
    return text if text.strip() else ""


def code_tokens(text: str) -> list[str]:
    """Identifier, number and operator tokens of source code (NFKC, case kept).

    Code differs from prose in what is noise: renaming a variable or reflowing a line matters less than an
    operator, so code is shingled on these tokens rather than on the punctuation-free words of prose.
    """
    return _CODE_TOKEN.findall(unicodedata.normalize("NFKC", text))


def combine_hashes(values: np.ndarray) -> np.ndarray:
    """An order-sensitive 64-bit hash of each row (last axis) of an unsigned integer array.

    Used for LSH band keys: every position gets its own odd multiplier, and the splitmix64 finaliser
    spreads the sum, so two bands collide only when their values agree (or by a 64-bit accident).
    """
    v = np.asarray(values).astype(np.uint64, copy=False)
    mult = _position_multipliers(v.shape[-1])
    acc = (v * mult).sum(axis=-1, dtype=np.uint64)  # array arithmetic wraps modulo 2**64, as wanted
    return _finalize(np.asarray(acc, dtype=np.uint64))
