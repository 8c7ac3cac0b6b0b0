"""Locators made from URLs keep no presigned tokens or credentials; local paths are named as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixtrain.identity import relative_path


@pytest.mark.parametrize(
    ("path", "base", "expected"),
    [
        (
            "s3://bucket/proj/data/x.jsonl?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc123",
            "s3://bucket/proj",
            "data/x.jsonl",
        ),
        ("s3://bucket/x.jsonl?X-Amz-Signature=deadbeef", "/local/project", "s3://bucket/x.jsonl"),
        ("https://user:hunter2@host.example/p/x.parquet#frag", "/local", "https://host.example/p/x.parquet"),
        ("https://host.example/p/x.jsonl?sv=2022&sig=Zm9v%2B", "https://host.example/p?sv=1&sig=YmFy", "x.jsonl"),
        ("gs://tok@bucket/a/b.jsonl", "gs://bucket", "a/b.jsonl"),
        ("s3://bucket/proj/data/x.jsonl", "s3://bucket/proj", "data/x.jsonl"),  # unchanged without a query
        ("memory://root/a?b.txt", "memory://root", "a"),
    ],
)
def test_url_locators_drop_query_fragment_and_credentials(path: str, base: str, expected: str) -> None:
    assert relative_path(path, base) == expected


def test_local_paths_are_named_as_before(tmp_path: Path) -> None:
    # "?" and "#" are ordinary characters in a local file name, with or without file://.
    odd = tmp_path / "d" / "x?v=1#2.jsonl"
    assert relative_path(str(odd), str(tmp_path)) == "d/x?v=1#2.jsonl"
    assert relative_path(f"file://{odd}", f"file://{tmp_path}") == "d/x?v=1#2.jsonl"
    outside = str(tmp_path.parent / "user:pw@elsewhere.jsonl")
    assert relative_path(outside, str(tmp_path)) == outside


def test_parquet_row_suffix_is_added_after_the_name() -> None:
    # Readers append "#row=N" to what relative_path returns; that fragment is theirs and is kept.
    name = relative_path("s3://b/p/x.parquet?X-Amz-Signature=1", "s3://b/p")
    assert f"{name}#row=3" == "x.parquet#row=3"
