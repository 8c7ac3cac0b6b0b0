"""Detection and redaction of personal data in document text.

Hits are ``(type, start, end)`` character spans and nothing else: the decision log must be able to say
where personal data was without becoming a copy of it. Detectors favour precision on the kinds of text
a code/chat corpus holds: version strings, slices and timestamps look a lot like IPs and phone numbers.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

import phonenumbers

EMAIL = "EMAIL"
PHONE = "PHONE"
IP_ADDRESS = "IP_ADDRESS"
PII_TYPES = (EMAIL, PHONE, IP_ADDRESS)

DEFAULT_REGION = "US"

# When two detectors claim overlapping text, the longer hit wins; on equal length, this order decides.
_PRIORITY = {EMAIL: 0, IP_ADDRESS: 1, PHONE: 2}


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


def _resolve(hits: list[Hit]) -> list[Hit]:
    """Keep a non-overlapping subset: longest first, then detector priority, then leftmost."""
    chosen: list[Hit] = []
    for h in sorted(hits, key=lambda h: (-(h.end - h.start), _PRIORITY[h.type], h.start)):
        if all(h.end <= c.start or h.start >= c.end for c in chosen):
            chosen.append(h)
    return sorted(chosen, key=lambda h: h.start)


def find_pii(text: str, *, region: str = DEFAULT_REGION) -> list[Hit]:
    """All personal-data hits in ``text``, sorted by start, never overlapping."""
    if not text:
        return []
    hits = _emails(text) + _ipv4(text) + _ipv6(text) + _phones(text, region)
    return _resolve(hits)


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
