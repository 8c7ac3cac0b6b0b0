"""Rights status of a document: verified, partial or unknown, and the coverage shares over a table."""

from __future__ import annotations

import pyarrow as pa
import pytest

from mixassets.engine.rights import coverage, rights_status
from mixtrain.schema import DOCUMENT_SCHEMA


@pytest.mark.parametrize(
    ("license_expr", "attribution", "status"),
    [
        ("MIT", "(c) Jane Doe", "verified"),
        ("CC0-1.0", None, "verified"),  # public domain owes no attribution
        ("MIT", None, "partial"),  # attribution required but missing
        ("CC-BY-4.0", "   ", "partial"),  # blank attribution is missing attribution
        ("MIT OR CC0-1.0", None, "verified"),  # CC0 can be chosen: nothing owed
        ("CC-BY-4.0 OR LicenseRef-research-only", None, "partial"),  # the usable choice owes attribution
        ("Apache-2.0 AND CC-BY-SA-4.0", "Foo contributors", "verified"),
        ("GPL-2.0-only WITH Classpath-exception-2.0", "FSF", "verified"),  # the exception is not a license id
        ("LicenseRef-partner-acme", None, "verified"),
        ("MIT OR Some-Unknown-1.0", "x", "partial"),  # one alternative unreadable
        ("(CC0-1.0 OR Bogus) AND MIT", "x", "partial"),
        ("MIT AND Some-Unknown-1.0", "x", "unknown"),  # no alternative is fully known
        ("Some-Unknown-1.0", "x", "unknown"),
        (None, "x", "unknown"),
        ("", None, "unknown"),
        ("MIT AND (", "x", "unknown"),  # unparsable
        ("MIT/Apache", "x", "unknown"),
    ],
)
def test_rights_status(license_expr, attribution, status):
    assert rights_status(license_expr, attribution) == status


def _docs(rows: list[tuple[str | None, str | None]]) -> pa.Table:
    n = len(rows)
    return pa.table(
        {
            "doc_id": [f"d{i}" for i in range(n)],
            "source_id": ["s"] * n,
            "locator": ["f"] * n,
            "kind": ["text"] * n,
            "text": ["t"] * n,
            "messages": [None] * n,
            "license": [r[0] for r in rows],
            "rights_tags": [[]] * n,
            "attribution": [r[1] for r in rows],
            "domain": [None] * n,
            "language": [None] * n,
            "capture_time": [None] * n,
            "row_id": [None] * n,
        },
        schema=DOCUMENT_SCHEMA,
    )


def test_coverage_shares():
    docs = _docs([("MIT", "a"), ("MIT", "a"), ("MIT", None), ("Nope", None), ("CC0-1.0", None), (None, None)])
    shares = coverage(docs)
    assert shares == {
        "rights_verified": 0.5,
        "rights_partial": pytest.approx(1 / 6),
        "rights_unknown": pytest.approx(1 / 3),
    }
    assert sum(shares.values()) == pytest.approx(1.0)


def test_coverage_of_empty_table_is_all_zero():
    assert coverage(DOCUMENT_SCHEMA.empty_table()) == {
        "rights_verified": 0.0,
        "rights_partial": 0.0,
        "rights_unknown": 0.0,
    }


def test_coverage_requires_the_columns():
    with pytest.raises(ValueError, match="attribution"):
        coverage(pa.table({"license": ["MIT"]}))
