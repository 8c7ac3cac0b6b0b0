"""Detection and redaction of personal data in document text.

Hits are ``(type, start, end)`` character spans and nothing else: the decision log must be able to say
where personal data was without becoming a copy of it. Detectors favour precision on the kinds of text
a code/chat corpus holds: version strings, slices and timestamps look a lot like IPs and phone numbers.

Numbers with a checksum (card numbers: Luhn; IBANs: ISO 7064 mod 97) are only reported when the checksum holds,
which is what separates a card number from an order id. Credentials (``SECRET``) are found by the fixed prefixes
their issuers put on them, so that a leaked key is caught without flagging every long random-looking string.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection
from typing import NamedTuple

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers.phonenumberutil import _VALID_PUNCTUATION as _PHONE_PUNCTUATION
from stdnum import iban as stdnum_iban
from stdnum import luhn

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
    return [Hit(EMAIL, m.start(), m.end()) for m in _EMAIL_RE.finditer(text)]


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
    return [Hit(PHONE, m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, region)]


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
    )
)


def _secrets(text: str) -> list[Hit]:
    hits = []
    for rx in _SECRET_RES:
        for m in rx.finditer(text):
            group = "v" if "v" in rx.groupindex else 0
            hits.append(Hit(SECRET, m.start(group), m.end(group)))
    return hits


def _resolve(hits: list[Hit]) -> list[Hit]:
    """Keep a non-overlapping subset: longest first, then detector priority, then leftmost."""
    chosen: list[Hit] = []
    for h in sorted(hits, key=lambda h: (-(h.end - h.start), _PRIORITY[h.type], h.start)):
        if all(h.end <= c.start or h.start >= c.end for c in chosen):
            chosen.append(h)
    return sorted(chosen, key=lambda h: h.start)


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
    "secret": r"AKIA|ASIA|(?i:secret)|gh[pousr]_|github_pat_|xox[abprs]-|AIza|_live_|-----BEGIN ",
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
    in it, so ``find_pii(text, region=region, detectors=...)`` with these gives what ``find_pii`` gives."""

    def matches(pattern: str) -> np.ndarray:
        return np.asarray(pc.fill_null(pc.match_substring_regex(texts, pattern), False).to_numpy(zero_copy_only=False))

    if not len(texts):
        return []
    masks = [matches(PREFILTERS[name]) for name in DETECTORS if name != "phone"]
    phone = matches(_PHONE_ANY)
    if region == "US":
        phone &= matches(_PHONE_US_NO_PLUS) | matches("[+\uff0b]")
    masks.append(phone)
    names = [name for name in DETECTORS if name != "phone"] + ["phone"]
    codes = np.zeros(len(texts), dtype=np.int64)
    for bit, mask in enumerate(masks):
        codes |= mask.astype(np.int64) << bit
    sets = {c: frozenset(n for b, n in enumerate(names) if c >> b & 1) for c in np.unique(codes).tolist()}
    return [sets[c] for c in codes.tolist()]


def redact(text: str, hits: list[Hit]) -> str:
    """``text`` with each hit replaced by ``<TYPE>``; hits must not overlap (as ``find_pii`` returns them)."""
    parts: list[str] = []
    pos = 0
    for h in sorted(hits, key=lambda h: h.start):
        if h.start < pos:
            raise ValueError(f"overlapping PII hits at {h.start}: resolve them first")
        parts.append(text[pos : h.start])
        parts.append(f"<{h.type}>")
        pos = h.end
    parts.append(text[pos:])
    return "".join(parts)
