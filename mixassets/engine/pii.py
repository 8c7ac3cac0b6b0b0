"""Detection and redaction of personal data in document text.

Hits are ``(type, start, end)`` character spans and nothing else: the decision log must be able to say
where personal data was without becoming a copy of it. Detectors favour precision on the kinds of text
a code/chat corpus holds: version strings, slices and timestamps look a lot like IPs and phone numbers.

Numbers with a checksum (card numbers: Luhn; IBANs: ISO 7064 mod 97) are only reported when the checksum holds,
which is what separates a card number from an order id. Credentials (``SECRET``) are found by the fixed prefixes
their issuers put on them, so that a leaked key is caught without flagging every long random-looking string.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Collection
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers.phonenumberutil import _VALID_PUNCTUATION as _PHONE_PUNCTUATION
from stdnum import iban as stdnum_iban
from stdnum import luhn

from mixassets.engine.phone_matcher import MATCHER as _MATCHER
from mixassets.engine.secret_formats import LIBRARY_TOKEN, LIBRARY_TOKEN_MIN, library_secret_spans

EMAIL = "EMAIL"
PHONE = "PHONE"
IP_ADDRESS = "IP_ADDRESS"
CREDIT_CARD = "CREDIT_CARD"
IBAN = "IBAN"
US_SSN = "US_SSN"
SECRET = "SECRET"
PII_TYPES = (EMAIL, PHONE, IP_ADDRESS, CREDIT_CARD, IBAN, US_SSN, SECRET)

DEFAULT_REGION = "US"

# When two detectors claim overlapping text, the longer hit wins; on equal length, this order decides. Validated
# and prefixed types come first: a secret or a Luhn-valid card number is a surer reading than a phone number.
_PRIORITY = {SECRET: 0, CREDIT_CARD: 1, IBAN: 2, US_SSN: 3, EMAIL: 4, IP_ADDRESS: 5, PHONE: 6}


class Hit(NamedTuple):
    type: str
    start: int  # character offsets into the str that was scanned, end exclusive
    end: int


_EMAIL_RE = re.compile(
    r"(?<![\w.%+\-])[A-Za-z0-9](?:[A-Za-z0-9._%+\-]{0,62}[A-Za-z0-9_%+\-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w\-])"
)
# Four dotted numbers, not part of a longer dotted run (1.2.3.4.5 is an OID or a version, not an IP);
# a sentence-ending period after the address is fine.
_IPV4_RE = re.compile(r"(?<![\w.])(?<!\d\.)(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)(?![\w])")
_IPV6_RE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?(?![\w:]|\.\d)"
)


def _emails(text: str) -> list[Hit]:
    hits = [Hit(EMAIL, m.start(), m.end()) for m in _EMAIL_RE.finditer(text)]
    if hits and "://" in text:
        # In "scheme://user:pass@host" the "pass@host" reads as an address, and being longer than the
        # credentials it would win their overlap: it is the password, which the secret detector reports.
        inside = [m.span("v") for m in _URL_CREDENTIALS_RE.finditer(text) if _has_scheme(text, m.start())]
        hits = [h for h in hits if not any(a < h.start < b for a, b in inside)]
    return hits


def _ipv4(text: str) -> list[Hit]:
    hits = []
    for m in _IPV4_RE.finditer(text):
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        hits.append(Hit(IP_ADDRESS, m.start(), m.end()))
    return hits


def _ipv6(text: str) -> list[Hit]:
    hits = []
    for m in _IPV6_RE.finditer(text):
        candidate = m.group()
        # "a[1::2]" and "std::x" are code, not addresses: demand at least three groups with digits in them.
        if sum(1 for g in re.split(r"[:.]", candidate) if g) < 3:
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        hits.append(Hit(IP_ADDRESS, m.start(), m.end()))
    return hits


def _phones(text: str, region: str) -> list[Hit]:
    # With a "+" prefix the number carries its own country, so one matcher covers local and international.
    return [Hit(PHONE, m.start, m.end) for m in _MATCHER(text, region)]


# 13-19 digits, optionally grouped by single spaces or dashes, not glued to a longer number or a decimal.
_CARD_RE = re.compile(r"(?<![\w.\-+])[2-6]\d(?:[ \-]?\d){11,17}(?!\w|[.\-]\d)")


def _credit_cards(text: str) -> list[Hit]:
    hits = []
    for m in _CARD_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        separators = set(re.findall(r"[ \-]", m.group()))
        # One separator style per number ("4111 1111-1111" is two things), and 16 zeros is Luhn-valid but no card.
        if len(separators) > 1 or len(set(digits)) == 1 or not luhn.is_valid(digits):
            continue
        hits.append(Hit(CREDIT_CARD, m.start(), m.end()))
    return hits


# Country code, check digits, then the BBAN either compact or in the printed groups of four.
_IBAN_RE = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)(?![A-Za-z0-9])"
)


def _ibans(text: str) -> list[Hit]:
    hits = []
    for m in _IBAN_RE.finditer(text):
        candidate = m.group()
        # A grouped IBAN may have swallowed a following upper-case word ("... 0130 00 EUR"): shed trailing groups.
        while candidate and not stdnum_iban.is_valid(candidate):
            head, sep, _ = candidate.rpartition(" ")
            candidate = head if sep and len(head.replace(" ", "")) >= 15 else ""
        if candidate:
            hits.append(Hit(IBAN, m.start(), m.start() + len(candidate)))
    return hits


# Area 000, 666 and 900-999, group 00 and serial 0000 are never issued, so they are not SSNs.
_SSN_RE = re.compile(r"(?<![\w\-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w\-])")


def _ssns(text: str) -> list[Hit]:
    return [Hit(US_SSN, m.start(), m.end()) for m in _SSN_RE.finditer(text)]


# Each pattern's span is group "v" when it has one (the secret value after "key = "), else the whole match.
_SECRET_RES = tuple(
    re.compile(p)
    for p in (
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])",  # AWS access key id
        r"(?i:aws[_\-]?secret[_\-]?(?:access[_\-]?)?key|secret[_\-]?access[_\-]?key)[\"']?\s*[:=]\s*[\"']?"
        r"(?P<v>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",  # AWS secret access key, only next to its name
        r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,255}(?![A-Za-z0-9_])",  # GitHub tokens
        r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{22,255}(?![A-Za-z0-9_])",  # GitHub fine-grained tokens
        r"(?<![A-Za-z0-9])xox[abprs]-[A-Za-z0-9][A-Za-z0-9\-]{8,}[A-Za-z0-9]",  # Slack tokens
        r"(?<![A-Za-z0-9_\-])AIza[0-9A-Za-z_\-]{35}(?![A-Za-z0-9_\-])",  # Google API keys
        r"(?<![A-Za-z0-9_])(?:sk|rk)_live_[0-9A-Za-z]{16,255}(?![A-Za-z0-9_])",  # Stripe secret/restricted live keys
        # PEM private keys, whole block; a block cut off before its END line is still a leak, so take its body.
        r"-----BEGIN (?P<kind>[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?)-----"
        r"(?:[\s\S]{0,100000}?-----END (?P=kind)-----|(?:\r?\n[A-Za-z0-9+/=:,\- ]+)+)",
        # JSON Web Tokens: a base64url JSON header and payload (both begin '{"', which encodes to "eyJ") and a
        # signature, empty for alg "none".
        r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*(?![A-Za-z0-9_\-])",
        r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{30,40}(?![A-Za-z0-9_])",  # Hugging Face access tokens
        # OpenAI keys: project/service/admin keys, legacy keys (48 characters, often with the "T3BlbkFJ" marker).
        r"(?<![A-Za-z0-9_\-])sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,}|[A-Za-z0-9_\-]{0,80}T3BlbkFJ"
        r"[A-Za-z0-9_\-]{20,}|[A-Za-z0-9]{48})(?![A-Za-z0-9_\-])",
        # GitLab personal, deploy, feed, OAuth, runner, CI, mail, trigger and agent tokens.
        r"(?<![A-Za-z0-9_\-])gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas)-[A-Za-z0-9_\-]{20,}(?![A-Za-z0-9_\-])",
        # Azure storage account and Service Bus keys in connection strings, and SAS signatures in URLs.
        r"(?i:AccountKey|SharedAccessKey)\s*=\s*(?P<v>[A-Za-z0-9+/]{40,}={0,2})(?![A-Za-z0-9+/=])",
        r"[?&]sig=(?P<v>[A-Za-z0-9%+/=]{30,})(?![A-Za-z0-9%+/=])",
    )
)
# Credentials in a URL's authority: the "user:password" between "scheme://" and "@host". The scheme is checked
# by :func:`_has_scheme`, so that the pattern starts with a literal the regex engine can skip to.
_URL_CREDENTIALS_RE = re.compile(r"://(?P<v>[^\s:/?#@\[\]\"'<>{}]+:[^\s/?#@\"'<>{}]+)@(?=[A-Za-z0-9\[])")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_SCHEME_MAX = 21

# What each pattern cannot match without: scanning a text for a pattern costs far more than looking for a
# literal, and most texts hold none of these. The second field says the literals are to be looked for in the
# case-folded text (the pattern ignores case, and case folding maps the long s, U+017F, to "s" as the pattern does).
_SECRET_NEEDLES: tuple[tuple[tuple[str, ...], bool], ...] = (
    (("AKIA", "ASIA"), False),
    (("secret",), True),
    (("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), False),
    (("github_pat_",), False),
    (("xox",), False),
    (("AIza",), False),
    (("_live_",), False),
    (("-----BEGIN ",), False),
    (("eyJ",), False),
    (("hf_",), False),
    (("sk-",), False),
    (tuple(f"gl{p}-" for p in ("pat", "dt", "ft", "soat", "rt", "cbt", "imt", "ptt", "agent", "oas")), False),
    (("accountkey", "sharedaccesskey"), True),
    (("sig=",), False),
)


def _has_scheme(text: str, end: int) -> bool:
    """Whether the run of URL-scheme characters ending at ``end`` is a scheme: 2 to 21 long, from a letter."""
    start = end
    while start > 0 and end - start <= _SCHEME_MAX and text[start - 1] in _SCHEME_CHARS:
        start -= 1
    return 2 <= end - start <= _SCHEME_MAX and text[start].isascii() and text[start].isalpha()


def _secrets(text: str) -> list[Hit]:
    hits = []
    folded: str | None = None
    for rx, (needles, fold) in zip(_SECRET_RES, _SECRET_NEEDLES, strict=True):
        if fold and folded is None:
            folded = text.casefold()
        haystack = folded if fold else text
        if not any(n in haystack for n in needles):
            continue
        for m in rx.finditer(text):
            group = "v" if "v" in rx.groupindex else 0
            hits.append(Hit(SECRET, m.start(group), m.end(group)))
    if "://" in text:
        hits.extend(
            Hit(SECRET, *m.span("v")) for m in _URL_CREDENTIALS_RE.finditer(text) if _has_scheme(text, m.start())
        )
    # Where a pattern above and detect-secrets find the same secret, the pattern's span (the value alone, not
    # the "AccountKey=" before it) stands.
    found = (Hit(SECRET, a, b) for a, b in library_secret_spans(text))
    hits.extend(h for h in found if not _overlaps_any(h, hits))
    return hits


def _overlaps_any(h: Hit, others: list[Hit]) -> bool:
    return any(h.start < o.end and o.start < h.end for o in others)


def _rank(h: Hit) -> tuple[int, int, int]:
    """The order in which overlapping hits claim text: longest first, then detector priority, then leftmost."""
    return (-(h.end - h.start), _PRIORITY[h.type], h.start)


def _resolve(hits: list[Hit]) -> list[Hit]:
    """Keep a non-overlapping subset: each hit, in :func:`_rank` order, is kept unless it overlaps one kept before.

    A document can hold tens of thousands of hits (an access log is mostly IP addresses), so comparing each hit
    with every kept one is too slow. Hits that share no text with any other decide nothing against each other:
    a sweep by start splits them into clusters of transitively overlapping hits, almost all of them single hits,
    and only the clusters with several hits are ranked (:func:`_resolve_cluster`). O(n log n) in all.
    """
    by_start = sorted(hits, key=lambda h: (h.start, h.end))
    chosen: list[tuple[int, tuple[int, int, int], Hit]] = []  # sorted by (start, rank): the greedy order per offset
    cluster: list[Hit] = []
    reach = -1  # the furthest end in the current cluster
    for h in by_start:
        # Overlap needs h.start < end of an earlier hit (which starts no later); an empty hit at a cluster's
        # edge joins it harmlessly, since a cluster may hold hits that do not overlap.
        if cluster and h.start >= reach:
            chosen.extend(_resolve_cluster(cluster))
            cluster = []
        cluster.append(h)
        reach = max(reach, h.end) if len(cluster) > 1 else h.end
    if cluster:
        chosen.extend(_resolve_cluster(cluster))
    chosen.sort()
    return [h for _, _, h in chosen]


def _resolve_cluster(cluster: list[Hit]) -> list[tuple[int, tuple[int, int, int], Hit]]:
    """The greedy choice within one cluster, as ``(start, rank, hit)``.

    Kept hits never overlap each other, so a non-empty hit ``[s, e)`` overlaps one of them exactly when the kept
    hits that start before ``e`` outnumber those that end at or before ``s`` (each of the latter also starts
    before ``e``). Two Fenwick trees over the cluster's distinct offsets count both in O(log n). An empty hit at
    ``p`` overlaps a kept hit only when that hit strictly contains ``p``: the same count with ``s = e = p``; it
    blocks nothing itself, so it is never entered in the trees.
    """
    if len(cluster) == 1:
        h = cluster[0]
        return [(h.start, _rank(h), h)]
    offsets = sorted({x for h in cluster for x in (h.start, h.end)})
    index = {x: i + 1 for i, x in enumerate(offsets)}  # 1-based Fenwick positions
    size = len(offsets)
    starts = [0] * (size + 1)
    ends = [0] * (size + 1)

    def add(tree: list[int], i: int) -> None:
        while i <= size:
            tree[i] += 1
            i += i & -i

    def count(tree: list[int], i: int) -> int:  # entries at positions 1..i
        total = 0
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    kept = []
    for rank, h in sorted((_rank(h), h) for h in cluster):
        s, e = index[h.start], index[h.end]
        if count(starts, e - 1) - count(ends, s) > 0:
            continue
        kept.append((h.start, rank, h))
        if e > s:
            add(starts, s)
            add(ends, e)
    return kept


_DETECTORS: tuple[tuple[str, Callable[[str, str], list[Hit]]], ...] = (
    ("secret", lambda text, region: _secrets(text)),
    ("card", lambda text, region: _credit_cards(text)),
    ("iban", lambda text, region: _ibans(text)),
    ("ssn", lambda text, region: _ssns(text)),
    ("email", lambda text, region: _emails(text)),
    ("ipv4", lambda text, region: _ipv4(text)),
    ("ipv6", lambda text, region: _ipv6(text)),
    ("phone", _phones),
)
DETECTORS = tuple(name for name, _ in _DETECTORS)


def find_pii(text: str, *, region: str = DEFAULT_REGION, detectors: Collection[str] | None = None) -> list[Hit]:
    """All personal-data hits in ``text``, sorted by start, never overlapping. ``detectors`` (default: all)
    names the detectors to run; leaving out one that :func:`possible_detectors` ruled out changes nothing."""
    if not text:
        return []
    hits = [h for name, detect in _DETECTORS if detectors is None or name in detectors for h in detect(text, region)]
    return _resolve(hits)


# For each detector, a pattern (RE2, for pyarrow over a whole column) that every text holding one of its hits
# matches: the literal prefixes of the credentials, the digits a card, an SSN or an address cannot lack. Each
# leaves out the look-arounds and validations of the detector, so it matches more texts than the detector
# finds hits in, never fewer. ``\p{Nd}`` is Python's ``\d`` (any Unicode decimal digit).
PREFILTERS = {
    "secret": r"AKIA|ASIA|(?i:secret)|gh[pousr]_|github_pat_|xox[abprs]-|AIza|_live_|-----BEGIN "
    r"|eyJ|hf_|sk-|gl[a-z]{2,5}-|(?i:accountkey|sharedaccesskey)|sig=|://[^/\s]*:[^/\s]*@"
    rf"|{LIBRARY_TOKEN}{{{LIBRARY_TOKEN_MIN}}}",
    "card": r"[2-6]\p{Nd}(?:[ \-]?\p{Nd}){11}",
    "iban": r"[A-Z]{2}\p{Nd}{2}(?:[A-Z0-9]{11}| [A-Z0-9]{4} [A-Z0-9]{4})",
    "ssn": r"\p{Nd}{3}-\p{Nd}{2}-\p{Nd}{4}",
    "email": r"[A-Za-z0-9_%+\-]@[A-Za-z0-9]",
    "ipv4": r"\p{Nd}\.\p{Nd}+\.\p{Nd}+\.\p{Nd}",
    "ipv6": r":[0-9A-Fa-f]{0,4}:",
}


def _phone_run(digits: int) -> str:
    """``digits`` digits, each after at most four characters of the punctuation the phone matcher allows inside a
    number; an "x" (an extension mark, 9 on a keypad) counts as a digit so that no letter conversion can make a
    number this misses."""
    punct = f"[{_PHONE_PUNCTUATION}]"  # phonenumbers' own class (ranges and escapes), which RE2 reads alike
    return rf"[\p{{Nd}}xX](?:{punct}{{0,4}}[\p{{Nd}}xX]){{{digits - 1}}}"


# A valid number has at least the 4 digits of the shortest national number in phonenumbers' metadata. Read
# with the default region US, a number without a plus sign has country code 1, whose regions' shortest national
# number has 7 digits (Canada's 310 numbers), or comes after the international prefix 011 with a country code
# and a national number (at least 6 digits: 9 in all); so it needs 7, and the filter asks for 6, a margin of one.
# ``tests/test_pii_more.py`` checks these minimums against the metadata.
_PHONE_ANY = _phone_run(4)
_PHONE_US_NO_PLUS = _phone_run(6)


def possible_detectors(texts: pa.Array | pa.ChunkedArray, region: str = DEFAULT_REGION) -> list[frozenset[str]]:
    """Per text, the detectors that may find something in it (see ``PREFILTERS``); the others would find nothing
    in it, so ``find_pii(text, region=region, detectors=...)`` with these gives what ``find_pii`` gives.

    Most texts hold nothing any prefilter matches, so one pass over them all (``_ANY``) picks the texts worth the
    single passes. A pass costs RE2 about the same per byte whatever the pattern, unless the pattern starts with
    one literal byte, which it finds by a byte search some twenty times faster; so wherever a prefilter cannot
    match without such a literal (``_NEEDS``, the plus sign of a phone number), that search first picks the
    texts the prefilter itself is run on."""
    if not len(texts):
        return []
    codes = np.zeros(len(texts), dtype=np.int64)
    if region == "US":
        # A phone number of four digits with a plus sign before or after it: the digits' run holds no plus sign
        # (no phone punctuation is one), so a text holds such a pair exactly when it holds both somewhere.
        plus_phone = _matches_where(texts, _PHONE_ANY, _matches(texts, r"\+") | _matches(texts, "\uff0b"))
        maybe = _matches(texts, _ANY_US) | plus_phone
    else:
        maybe = _matches(texts, _ANY)
    rows = np.flatnonzero(maybe)
    if len(rows):
        subset = texts if len(rows) == len(texts) else texts.take(pa.array(rows, type=pa.int64()))
        masks = [
            _matches_where(subset, PREFILTERS[name], _matches(subset, _NEEDS[name]))
            if name in _NEEDS
            else _matches(subset, PREFILTERS[name])
            for name in DETECTORS
            if name != "phone"
        ]
        # In region US a phone number needs six digits or a plus sign as well as four digits; six digits hold four.
        masks.append(
            _matches(subset, _PHONE_US_NO_PLUS) | plus_phone[rows] if region == "US" else _matches(subset, _PHONE_ANY)
        )
        for bit, mask in enumerate(masks):
            codes[rows] |= mask.astype(np.int64) << bit
    names = [name for name in DETECTORS if name != "phone"] + ["phone"]
    sets = {c: frozenset(n for b, n in enumerate(names) if c >> b & 1) for c in np.unique(codes).tolist()}
    return [sets[c] for c in codes.tolist()]


def _matches(texts: pa.Array | pa.ChunkedArray, pattern: str) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.match_substring_regex(texts, pattern), False).to_numpy(zero_copy_only=False))


def _matches_where(texts: pa.Array | pa.ChunkedArray, pattern: str, where: np.ndarray) -> np.ndarray:
    """``_matches(texts, pattern) & where``, with ``pattern`` run only on the texts ``where`` picks."""
    out = np.zeros(len(texts), dtype=bool)
    if where.any():
        out[where] = _matches(texts.filter(pa.array(where)), pattern)
    return out


# What a prefilter cannot match without, as a pattern that starts with one literal byte: an e-mail address's "@",
# an SSN's "-12-", an IPv4 address's last three dotted numbers.
_NEEDS = {"email": "@", "ssn": r"-\p{Nd}{2}-", "ipv4": r"\.\p{Nd}+\.\p{Nd}+\.\p{Nd}"}
# Patterns every text with a prefilter match matches (or, in region US, holds a plus sign and four digits): the
# prefilters as one alternation with the phone's, which for region US is six digits.
_ANY = "|".join(f"(?:{p})" for p in [*PREFILTERS.values(), _PHONE_ANY])
_ANY_US = "|".join(f"(?:{p})" for p in [*PREFILTERS.values(), _PHONE_US_NO_PLUS])


def redact(text: str, hits: list[Hit]) -> str:
    """``text`` with each hit replaced by ``<TYPE>``; hits must not overlap (as ``find_pii`` returns them)."""
    return _replace(text, hits, lambda h, value: f"<{h.type}>")


HASH_HEX = 12  # 48 bits: no collision among the values of any one corpus in practice, too short to search


def hashed_placeholder(pii_type: str, value: str) -> str:
    """``[TYPE:sha256:<first 12 hex>]`` of ``value``: two redacted copies of the same leaked value still match
    each other (a dedupe or a vault lookup can join on it), while the value itself is not in the text. Unkeyed,
    so a guessable value (a short password, a phone number) can be confirmed by hashing guesses: use it where
    that is acceptable, i.e. for long random secrets."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_HEX]
    return f"[{pii_type}:sha256:{digest}]"


def redact_with_hashes(text: str, hits: list[Hit]) -> str:
    """``text`` with each hit replaced by its :func:`hashed_placeholder`; hits must not overlap."""
    return _replace(text, hits, lambda h, value: hashed_placeholder(h.type, value))


def _replace(text: str, hits: list[Hit], placeholder: Callable[[Hit, str], str]) -> str:
    parts: list[str] = []
    pos = 0
    for h in sorted(hits, key=lambda h: h.start):
        if h.start < pos:
            raise ValueError(f"overlapping PII hits at {h.start}: resolve them first")
        parts.append(text[pos : h.start])
        parts.append(placeholder(h, text[h.start : h.end]))
        pos = h.end
    parts.append(text[pos:])
    return "".join(parts)
