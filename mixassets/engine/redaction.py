"""Personal data and secrets as every view of a held record shows them: a tagged hash in place of each value.

Why a hash rather than a bare ``<EMAIL>``: whoever reads the quarantine, the decision log or a review sheet must
be able to tell that two records hold the same address or the same leaked key, and to match a value they already
know (a key being rotated) against the records, without the value itself sitting in a file that is shared,
copied into spreadsheets and kept for good. The placeholder is ``[TYPE:sha256:<first 12 hex of sha256(value)>]``.
The hash is not keyed: a low-entropy value (a phone number, an SSN) can be found again by trying every candidate,
so the views are still for people with access to the project; the clear values live only in the vault
(:mod:`mixassets.engine.vault`) and in the ingested copy of the source.

The training corpus is not a view: it keeps the gate's own ``<TYPE>`` placeholders (a hash is noise to a model),
which :func:`corpus_redact` reproduces for a document a reviewer reinstates.

Every call to the detectors goes through :func:`_hits` and every replacement through :func:`_tagged`, so moving
to another detector set or to ``mixassets.engine.pii``'s own hashing redaction is a one-line change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pyarrow as pa

from mixassets.engine.pii import Hit, find_pii, possible_detectors, redact

HASH_HEX = 12  # hex digits of sha256 kept in a placeholder: enough to match, too few to be a value's stand-in
PREVIEW_CHARS = 2_000  # of an undecodable record's bytes decoded with replacement characters, after redaction


def value_tag(kind: str, value: str) -> str:
    """The placeholder of one detected value: its type and a short sha256 of it (UTF-8)."""
    return f"[{kind}:sha256:{hashlib.sha256(value.encode('utf-8')).hexdigest()[:HASH_HEX]}]"


def _hits(text: str, detectors: frozenset[str] | None = None) -> list[Hit]:
    return find_pii(text, detectors=detectors)


def _tagged(text: str, hits: Sequence[Hit]) -> str:
    parts: list[str] = []
    pos = 0
    for h in sorted(hits, key=lambda h: h.start):
        parts += [text[pos : h.start], value_tag(h.type, text[h.start : h.end])]
        pos = h.end
    parts.append(text[pos:])
    return "".join(parts)


def redact_view(text: str | None) -> str | None:
    """``text`` with every detected value replaced by its tagged hash (None and "" pass through)."""
    if not text:
        return text
    hits = _hits(text)
    return _tagged(text, hits) if hits else text


def redact_views(texts: Sequence[str | None]) -> list[str | None]:
    """:func:`redact_view` over many texts (a column of reasons or held texts); the texts no detector can match
    (most of them) are passed over by one vectorised pre-filter instead of being scanned one by one."""
    if not texts:
        return []
    possible = possible_detectors(pa.array(texts, type=pa.string()))
    out: list[str | None] = []
    for text, detectors in zip(texts, possible, strict=True):
        hits = _hits(text, detectors) if text and detectors else []
        out.append(_tagged(text, hits) if hits else text)  # type: ignore[arg-type]
    return out


def preview_bytes(raw: bytes | None) -> str | None:
    """What a reviewer may see of bytes that are not valid UTF-8: decoded with U+FFFD for each bad byte, redacted
    as a whole (so no value is cut in two before the detectors see it), then cut to ``PREVIEW_CHARS``."""
    if raw is None:
        return None
    shown = redact_view(raw.decode("utf-8", errors="replace")) or ""
    if len(shown) <= PREVIEW_CHARS:
        return shown
    return f"{shown[:PREVIEW_CHARS]} [... {len(shown) - PREVIEW_CHARS} more characters in the vault]"


def corpus_redact(text: str) -> str:
    """``text`` as the gate's PII rule (``pii_policy: redact``) lets it into the corpus: each value replaced by
    ``<TYPE>``. Used to rebuild a held document a reviewer accepts from its clear copy in raw_documents."""
    return redact(text, find_pii(text))
