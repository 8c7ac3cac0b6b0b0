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

The detectors and the placeholder are :mod:`mixassets.engine.pii`'s (``find_pii``, ``redact_with_hashes``); this
module decides where views are redacted and how undecodable bytes are previewed.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from mixassets.engine.pii import find_pii, possible_detectors, redact, redact_with_hashes
from mixassets.engine.pii import hashed_placeholder as value_tag

__all__ = ["PREVIEW_CHARS", "corpus_redact", "preview_bytes", "redact_view", "redact_views", "value_tag"]

PREVIEW_CHARS = 2_000  # of an undecodable record's bytes decoded with replacement characters, after redaction


def redact_view(text: str | None) -> str | None:
    """``text`` with every detected value replaced by its tagged hash (None and "" pass through)."""
    if not text:
        return text
    hits = find_pii(text)
    return redact_with_hashes(text, hits) if hits else text


def redact_views(texts: Sequence[str | None]) -> list[str | None]:
    """:func:`redact_view` over many texts (a column of reasons or held texts); the texts no detector can match
    (most of them) are passed over by one vectorised pre-filter instead of being scanned one by one."""
    if not texts:
        return []
    # Each distinct text once: a column of reasons repeats the same few strings ("12 words < min_words 50").
    distinct = list(dict.fromkeys(texts))
    possible = possible_detectors(pa.array(distinct, type=pa.string()))
    shown: dict[str | None, str | None] = {}
    for text, detectors in zip(distinct, possible, strict=True):
        hits = find_pii(text, detectors=detectors) if text and detectors else []
        shown[text] = redact_with_hashes(text, hits) if hits else text  # type: ignore[arg-type]
    return [shown[t] for t in texts]


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
