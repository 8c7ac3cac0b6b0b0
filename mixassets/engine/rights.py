"""How well each document's right to be used is documented: verified, partial or unknown.

``licenses.policy_allows`` answers "may we use it"; this answers "could we show why", which is what an
audit asks. A document is only *verified* when every way of complying with its license is one we
recognise and the attribution the license demands travels with it. A recognised license with a gap (no
attribution text, or an ``OR`` with a branch we cannot read) is *partial*: usable, but the paperwork is
incomplete. Anything we cannot read at all is *unknown*.
"""

from __future__ import annotations

import re

import pyarrow as pa

from mixassets.engine.licenses import (
    ATTRIBUTION_REQUIRED,
    LicenseError,
    leaf_tags,
    license_alternatives,
    parse_license,
)

VERIFIED = "verified"
PARTIAL = "partial"
UNKNOWN = "unknown"
RIGHTS_STATUSES = (VERIFIED, PARTIAL, UNKNOWN)

_WORD_RE = re.compile(r"[A-Za-z0-9.+:\-]+")
_OPERATORS = {"and", "or"}


def _license_ids(expr: str) -> list[str]:
    """The license ids of a syntactically valid expression, without operators and WITH exceptions."""
    ids: list[str] = []
    after_with = False
    for word in _WORD_RE.findall(expr):
        low = word.lower()
        if low == "with":
            after_with = True
        elif after_with:
            after_with = False  # an exception id only adds permissions; it is not a license to recognise
        elif low not in _OPERATORS:
            ids.append(word)
    return ids


def rights_status(license_expr: str | None, attribution: str | None) -> str:
    """``verified``, ``partial`` or ``unknown`` for one document.

    Attribution is required when the alternative we would comply with — the least restrictive one, as
    ``licenses.license_tags`` picks it — requires it: with ``MIT OR CC0-1.0`` that is CC0 and no
    attribution is owed, while ``CC-BY-4.0 OR LicenseRef-research-only`` is used under CC-BY for anything
    commercial, so it is owed. Every alternative being known is the same as
    every license id in the expression being known, since each id appears in some alternative and an
    alternative is unknown exactly when one of its ids is.
    """
    if license_expr is None or not license_expr.strip():
        return UNKNOWN
    try:
        parse_license(license_expr)
        alternatives = license_alternatives(license_expr)
    except LicenseError:
        return UNKNOWN
    if alternatives is None:
        return UNKNOWN
    if any(leaf_tags(license_id) is None for license_id in _license_ids(license_expr)):
        return PARTIAL
    needs_attribution = ATTRIBUTION_REQUIRED in alternatives[0]  # sorted least restrictive first
    if needs_attribution and not (attribution and attribution.strip()):
        return PARTIAL
    return VERIFIED


def coverage(docs: pa.Table) -> dict[str, float]:
    """Shares of documents per rights status (``rights_verified`` etc.); they sum to 1, or are all 0 if empty."""
    for name in ("license", "attribution"):
        if name not in docs.column_names:
            raise ValueError(f"rights coverage: documents table lacks column '{name}'; got {docs.column_names}")
    counts = dict.fromkeys(RIGHTS_STATUSES, 0)
    memo: dict[tuple[str | None, bool], str] = {}
    for lic, attr in zip(docs.column("license").to_pylist(), docs.column("attribution").to_pylist(), strict=True):
        key = (lic, bool(attr and attr.strip()))
        if key not in memo:
            memo[key] = rights_status(lic, attr)
        counts[memo[key]] += 1
    total = docs.num_rows
    return {f"rights_{s}": (counts[s] / total if total else 0.0) for s in RIGHTS_STATUSES}
