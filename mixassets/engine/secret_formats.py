"""Secrets in the formats detect-secrets knows, as character spans, for :mod:`mixassets.engine.pii`.

A well-kept library holds the formats of many more issuers than a hand-kept list; this module picks the plugins
that suit a training corpus and keeps their cost below the rest of the PII scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.ip_public import IPPublicDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector

# detect-secrets (Yelp) keeps the formats of many more issuers than pii.py's own patterns. Its prefixed,
# format-checked plugins are used; the keyword and entropy plugins are not, since code is full of
# ``password = "..."`` examples and hashes, and neither are those the own patterns cover with exact spans
# (PEM blocks, URL credentials) or that are not secrets here (public IPs). Running every plugin over every line
# would cost more than the rest of the scan: a secret those plugins find is a run of at least 20 token
# characters with a digit and a letter in it (random text of that length lacks a digit only rarely, and the
# own patterns catch the common prefixed kinds regardless), so only lines holding such a run are scanned.
LIBRARY_TOKEN = r"[A-Za-z0-9_\-+/=]"  # RE2 and Python alike; the same set as _TOKEN_BYTES
LIBRARY_TOKEN_MIN = 20
# The search for such runs works on the UTF-8 bytes, every token byte mapped to "a" and every other byte to a
# space: then a run is a plain substring search, which is an order of magnitude faster than a regex over str.
_TOKEN_BYTES = bytes(
    ord("a") if chr(i).isascii() and (chr(i).isalnum() or chr(i) in "_-+/=") else ord(" ") for i in range(256)
)
_TOKEN_RUN = b"a" * LIBRARY_TOKEN_MIN
_DIGIT_RE = re.compile(rb"[0-9]")
_LETTER_RE = re.compile(rb"[A-Za-z]")


def _library_lines(text: str) -> Iterator[tuple[int, str]]:
    """``(offset, line)`` for each line of ``text`` holding a run of at least 20 token characters with a digit and
    a letter, in order."""
    raw = text.encode("utf-8", "surrogatepass")
    runs = raw.translate(_TOKEN_BYTES)
    done = 0  # bytes before this are decided (the end of the last line handed out)
    char_pos = byte_pos = 0  # a byte offset and the char offset it stands for, to convert offsets in one pass
    i = runs.find(_TOKEN_RUN)
    while i >= 0:
        j = runs.find(b" ", i)
        j = len(runs) if j < 0 else j
        if i >= done and _DIGIT_RE.search(raw, i, j) and _LETTER_RE.search(raw, i, j):
            start = raw.rfind(b"\n", 0, i) + 1
            end = raw.find(b"\n", j)
            end = len(raw) if end < 0 else end
            char_pos += len(raw[byte_pos:start].decode("utf-8", "surrogatepass"))
            byte_pos = start
            yield char_pos, raw[start:end].decode("utf-8", "surrogatepass")
            done = end
        i = runs.find(_TOKEN_RUN, j)


_LIBRARY_SKIPPED = (BasicAuthDetector, IPPublicDetector, PrivateKeyDetector)
_LIBRARY_PLUGINS: tuple[RegexBasedDetector, ...] = tuple(
    cls()
    for _, cls in sorted(get_mapping_from_secret_type_to_class().items())
    if issubclass(cls, RegexBasedDetector) and not issubclass(cls, _LIBRARY_SKIPPED)
)
_LIBRARY_PATTERNS = tuple((plugin, rx) for plugin in _LIBRARY_PLUGINS for rx in plugin.denylist)
# A capture group shorter than this is a label the pattern names (GitLab's "glpat"), not the secret value.
_LIBRARY_VALUE_MIN = 16
_LIBRARY_EDGE = " \t\"'=:"  # the delimiters some plugins match around a value


def library_secret_spans(text: str) -> list[tuple[int, int]]:
    """Secrets detect-secrets' plugins find on the lines :func:`_library_lines` selects. Each plugin match is
    confirmed by the plugin's own ``analyze_string`` (which checks e.g. that a JWT's parts decode), and its span
    is the widest capture group when that holds a value, else the whole match without its delimiters."""
    hits: list[tuple[int, int]] = []
    for start, line in _library_lines(text):
        for plugin, rx in _LIBRARY_PATTERNS:
            for m in rx.finditer(line):
                if next(iter(plugin.analyze_string(m.group())), None) is None:
                    continue
                groups = [i for i in range(1, (rx.groups or 0) + 1) if m.group(i)]
                widest = max(groups, key=lambda i: len(m.group(i)), default=0)
                if widest and len(m.group(widest)) >= _LIBRARY_VALUE_MIN:
                    a, b = m.span(widest)
                else:
                    a, b = m.span()
                    while a < b and line[a] in _LIBRARY_EDGE:
                        a += 1
                    while b > a and line[b - 1] in _LIBRARY_EDGE:
                        b -= 1
                if a < b:
                    hits.append((start + a, start + b))
    return hits
