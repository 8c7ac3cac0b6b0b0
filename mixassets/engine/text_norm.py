"""Text normalisation, tokenisation and stable hashing shared by dedupe and the contamination screen.

Both stages compare documents from different sources, so what counts as "the same text" must not
depend on case, Unicode compatibility forms or whitespace layout. Every hash here is derived from
BLAKE2b rather than Python's ``hash()``, which is salted per process: an n-gram index or a dedupe
key built in one worker must mean the same thing in every other worker and in the next run.

Shingles/n-grams are hashed to 64-bit integers with numpy instead of joining token strings, because
joining and hashing ~350 strings per 2 KB document is the dominant cost of a naive implementation.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Iterator, Sequence

import numpy as np

_PUNCT = re.compile(r"[^\w\s]+")
# The ASCII characters ``_PUNCT`` deletes, taken from the pattern itself so that the byte path below cannot drift
# from it (control characters other than whitespace are among them).
_ASCII_PUNCT = bytes(c for c in range(128) if _PUNCT.fullmatch(chr(c)))

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
    return " ".join(dedupe_words(text))


def dedupe_words(text: str) -> list[str]:
    """The words dedupe shingles: the tokens of :func:`normalize` (split once, not joined and split again).

    A pure-ASCII text (``str.isascii`` reads no character) is already NFKC and lower-cases byte by byte, so its
    punctuation is deleted by ``bytes.translate``, a C loop over a 256-entry table: half the time of the regex
    substitution and Unicode passes, which were a quarter of sketching a document. Same words either way.
    """
    if text.isascii():
        return text.encode("ascii").translate(None, _ASCII_PUNCT).lower().decode("ascii").split()
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text).lower()).split()


def stable_hash64(value: str | bytes) -> int:
    """A process-independent 64-bit hash (BLAKE2b, 8-byte digest); a lone surrogate (which no Arrow string holds,
    but a Python string may) is hashed as its code point rather than refused."""
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
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


@functools.lru_cache(maxsize=64)
def _position_multipliers(n: int) -> np.ndarray:
    """One multiplier per n-gram position; cached (read-only) because every document asks for the same few n."""
    out = np.empty(n, dtype=np.uint64)
    acc = np.uint64(1)
    with np.errstate(over="ignore"):
        for i in range(n):
            out[i] = acc
            acc = acc * _GOLDEN
    out |= np.uint64(1)
    out.flags.writeable = False
    return out


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


# --- Screen folding: what an eval item and a training document are compared on -----------------------------------
#
# Leaked copies of eval items are disguised, on purpose or by the tools that carried them, in ways a reader never
# sees: invisible format characters inside words, letter-like symbols, look-alike letters of another script. The
# screen folds them all away before it tokenises, on both sides, so that each disguise is cheaper to undo than to
# apply. Dedupe keeps :func:`normalize` as it is: its keys are stored, and changing them would re-key every corpus.

# Look-alikes of Latin letters in Cyrillic, Greek and a few IPA/Armenian letters, folded *before* casefolding because
# case tells Greek Nu (N) from nu (v) apart. Kept to letters that are near pixel-identical to a Latin letter in common
# fonts (Unicode's confusables.txt lists thousands, most of them only loosely alike); a character outside the map is
# compared as itself, so a missing entry costs recall on that disguise but never a false match. Genuine Cyrillic or
# Greek text is folded the same way on both sides, so it still matches itself.
_CONFUSABLES: dict[str, str] = {
    # Cyrillic capitals: ABESIJKMHOPCTXYQW
    **dict(
        zip(
            "\u0410\u0412\u0415\u0405\u0406\u0408\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0423\u051a\u051c",
            "ABESIJKMHOPCTXYQW",
            strict=True,
        )
    ),
    # Cyrillic small letters: aesijopcyxdqwhyl (the last is palochka, which stands in for l)
    **dict(
        zip(
            "\u0430\u0435\u0455\u0456\u0458\u043e\u0440\u0441\u0443\u0445\u0501\u051b\u051d\u04bb\u04af\u04cf",
            "aesijopcyxdqwhyl",
            strict=True,
        )
    ),
    # Greek capitals: ABEZHIKMNOPTYX
    **dict(
        zip(
            "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7",
            "ABEZHIKMNOPTYX",
            strict=True,
        )
    ),
    # Greek small letters: aiokvpux
    **dict(zip("\u03b1\u03b9\u03bf\u03ba\u03bd\u03c1\u03c5\u03c7", "aiokvpux", strict=True)),
    # dotless i, Latin alpha and script g, Armenian o/h/n/u: iagohnu
    **dict(zip("\u0131\u0251\u0261\u0585\u0570\u057c\u057d", "iagohnu", strict=True)),
}
_CONFUSABLE_TABLE = str.maketrans(_CONFUSABLES)


_CONFUSABLE_RUNS = re.compile("[" + "".join(map(re.escape, _CONFUSABLES)) + "]+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@functools.cache
def _screen_tables() -> tuple[re.Pattern[str], str]:
    """(pattern of every format character, regex class of the non-word characters a screen token may hold).

    Built once per process by scanning the code points (~0.5 s), because Python's ``re`` has no Unicode category
    classes. A token may hold, besides ``\\w``: format characters (category Cf: zero-width space/joiner, soft
    hyphen, BOM, bidi marks), which are deleted so that ``re\\u00adturn`` is ``return``; combining marks, which
    NFKC composes with the letter before them; and symbols whose NFKC form has letters or digits (circled,
    parenthesised, ``™``, ``℃``), which a tokeniser of raw text would drop instead of folding.
    """
    word = re.compile(r"\w")
    deleted: list[int] = []
    extra: list[int] = []
    for cp in range(0x110000):
        c = chr(cp)
        if word.match(c):
            continue
        cat = unicodedata.category(c)
        if cat == "Cf":
            deleted.append(cp)
            extra.append(cp)
        elif cat in ("Mn", "Mc", "Me") or (cat[0] in "SPN" and word.search(unicodedata.normalize("NFKC", c))):
            extra.append(cp)
    return re.compile(f"[{_char_class(deleted)}]+"), _char_class(extra)


def _char_class(code_points: list[int]) -> str:
    """A regex character class body of ``code_points`` (sorted), with runs written as ranges."""
    parts: list[str] = []
    start = prev = code_points[0]
    for cp in [*code_points[1:], -1]:
        if cp == prev + 1:
            prev = cp
            continue
        parts.append(re.escape(chr(start)) if start == prev else f"{re.escape(chr(start))}-{re.escape(chr(prev))}")
        start = prev = cp
    return "".join(parts)


@functools.cache
def _screen_run() -> re.Pattern[str]:
    return re.compile(rf"[\w{_screen_tables()[1]}]+")


def screen_fold(text: str) -> str:
    """``text`` as the screen compares it: format characters deleted, NFKC, look-alike letters folded, casefolded.

    The order matters: format characters go first so that NFKC composes across them; NFKC folds fullwidth,
    circled and mathematical letters into plain ones before the look-alike map sees them; the map runs before
    ``casefold`` because only case tells some look-alikes apart. ASCII text is only lowercased (the other steps
    are the identity on it), which keeps the common case as fast as it was.
    """
    if text.isascii():
        return text.lower()
    # Only the stretch from the character before the first non-ASCII one to the last non-ASCII one needs the
    # Unicode steps: the ASCII on either side is only lowercased, and NFKC may cut a text before any ASCII character
    # (ASCII never composes with what precedes it; a combining mark is not ASCII, so the letter it may compose with
    # is the character before the stretch, inside it). Text disguised in a few places costs what those places cost.
    first, last = _NON_ASCII.search(text), _NON_ASCII.search(text[::-1])
    assert first is not None and last is not None  # the text is not ASCII
    lo, hi = max(first.start() - 1, 0), len(text) - last.start()
    middle = unicodedata.normalize("NFKC", _screen_tables()[0].sub("", text[lo:hi]))
    # Translating only the runs of look-alikes: str.translate looks every character of a text up in a dict,
    # four times slower than finding the few runs that need it.
    middle = _CONFUSABLE_RUNS.sub(lambda m: m.group().translate(_CONFUSABLE_TABLE), middle)
    return text[:lo].lower() + middle.casefold() + text[hi:].lower()


def screen_runs(text: str) -> Iterator[re.Match[str]]:
    """The runs of ``text`` that hold its screen tokens: word characters plus what :func:`screen_fold` turns
    into them or deletes from inside them. Folding each run on its own gives the tokens of folding the whole
    text, and the run's offsets are where its tokens came from in the original text."""
    return _screen_run().finditer(text)


def screen_run_texts(text: str) -> list[str]:
    """The texts of :func:`screen_runs` (one C-level ``findall``)."""
    return _screen_run().findall(text)
