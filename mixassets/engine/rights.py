"""How well each document's right to be used is documented: verified, partial or unknown.

``licenses.policy_allows`` answers "may we use it"; this answers "could we show why", which is what an
audit asks. A document is only *verified* when every way of complying with its license is one we
recognise and the attribution the license demands travels with it. A recognised license with a gap (no
attribution text, or an ``OR`` with a branch we cannot read) is *partial*: usable, but the paperwork is
incomplete. Anything we cannot read at all is *unknown*.
"""

from __future__ import annotations

import pyarrow as pa

from mixassets.engine.licenses import ATTRIBUTION_REQUIRED, LicenseError, every_license_known, license_alternatives

VERIFIED = "verified"
PARTIAL = "partial"
UNKNOWN = "unknown"
RIGHTS_STATUSES = (VERIFIED, PARTIAL, UNKNOWN)


def rights_status(license_expr: str | None, attribution: str | None) -> str:
    """``verified``, ``partial`` or ``unknown`` for one document.

    Attribution is required when the alternative we would comply with — the least restrictive one, as
    ``licenses.license_tags`` picks it — requires it: with ``MIT OR CC0-1.0`` that is CC0 and no
    attribution is owed, while ``CC-BY-4.0 OR LicenseRef-research-only`` is used under CC-BY for anything
    commercial, so it is owed. An exception id after ``WITH`` only adds permissions, so it is not a
    license that must be recognised.
    """
    if license_expr is None or not license_expr.strip():
        return UNKNOWN
    try:
        alternatives = license_alternatives(license_expr)
    except LicenseError:
        return UNKNOWN
    if alternatives is None:
        return UNKNOWN
    if not every_license_known(license_expr):
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
