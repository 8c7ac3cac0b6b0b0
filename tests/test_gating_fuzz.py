"""Hostile input through the reader and the gate: nothing crashes and every record is accounted for once.

A record is a non-blank line of a jsonl file, or a whole file for format text. Each must end accepted,
quarantined or rejected, and a held one must say why.
"""

from __future__ import annotations

import codecs
import json
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mixassets.engine.gating import gate
from mixassets.engine.readers import read_source
from mixassets.engine.vault import seal_read_failures
from mixtrain.config.data import SourceSpec

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
WORDS = st.sampled_from(["the", "river", "idiot", "ok", "lorem", "ipsum", "{", "#", "...", "mail", "a@b.io", "\x00"])


def _spec(fmt: str, kind: str = "text") -> SourceSpec:
    # A tiny max_chars so the huge-line cases also exercise the length rule, not only the reader. The encoding is
    # declared so that the reader does not guess UTF-16 from NULs in the junk: _records models byte-order marks,
    # not the guess (tests/test_readers_hostile.py covers that).
    gating = {"max_chars": 50_000, "boilerplate": {"min_docs": 2}}
    return SourceSpec.model_validate(
        {"id": "fz", "path": "x", "format": fmt, "kind": kind, "license": "MIT", "gating": gating, "encoding": "utf-8"}
    )


def _nested(depth: int) -> bytes:
    return b'{"text": ' + b"[" * depth + b"]" * depth + b"}"


def _json_line(value: object) -> bytes:
    return json.dumps(value).encode()


WRONG_TYPES: list[object] = [
    *({"text": v} for v in (5, None, ["a"], {"nested": "x"}, True)),
    *({"messages": v} for v in ("nope", [{"role": 1}], [], [{"role": "user"}], {"role": "user", "content": "x"})),
    *([1, 2], "just a string", 3.5, None, {}),
]
TEXTS = st.one_of(st.text(max_size=200), st.lists(WORDS, max_size=40).map(" ".join))
LINES = st.one_of(
    st.binary(max_size=200),
    TEXTS.map(lambda t: _json_line({"text": t})),
    TEXTS.map(
        lambda t: _json_line({"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": t}]})
    ),
    st.tuples(TEXTS, st.integers(0, 100)).map(lambda a: _json_line({"text": a[0]})[: a[1]]),  # truncated JSON
    st.integers(1, 300).map(_nested),
    st.sampled_from(WRONG_TYPES).map(_json_line),
    TEXTS.map(lambda t: b'{"text": "' + t.encode("latin-1", "replace") + b' caf\xe9"}'),  # latin-1 inside utf-8
    TEXTS.map(lambda t: _json_line({"text": t}).decode().encode("utf-16")),
    st.just(b'{"text": "lone \\ud800 surrogate here and more words"}'),
    st.just(b"\x00\x00\x00"),
    st.just(b"   \t  "),  # blank: not a record
)


_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]


def _records(data: bytes, rel: str) -> list[str]:
    """The non-blank lines, split on "\\n" in the encoding a byte-order mark at the start names (else UTF-8)."""
    codec, body = next(((c, data[len(m) :]) for m, c in _BOMS if data.startswith(m)), ("utf-8", data))
    lines = body.decode(codec, "replace").split("\n")  # a bad byte or code unit never swallows a newline
    return [f"{rel}:{i}" for i, line in enumerate(lines, start=1) if line.strip(" \t\n\r\x0b\x0c")]


def _run(spec: SourceSpec, files: dict[str, bytes]) -> tuple[list[str], pa.Table, pa.Table]:
    """Write ``files``, read and gate them; return (output locators, unread rows, gate quarantine rows)."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, data in files.items():
            p = Path(tmp) / name
            p.write_bytes(data)
            paths.append(str(p))
        docs, unread = read_source(spec, paths, base=tmp, capture_time=T0)
    res = gate(docs, spec)
    c = res.counts
    assert c["ingested"] == docs.num_rows == c["accepted"] + c["quarantined"] + c["rejected"]
    held = pa.concat_tables([seal_read_failures(unread)[0], res.quarantine])  # the reader's clear rows, sealed
    for row in held.to_pylist():
        assert row["disposition"] in ("quarantined", "rejected") and row["reason"].strip(), row
    locators = [*res.accepted.column("locator").to_pylist(), *held.column("locator").to_pylist()]
    return locators, unread, res.quarantine


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(lines=[b"\x1f\x8b", b"\x00"], kind="text", crlf=False)  # gzip's magic, no gzip
@given(lines=st.lists(LINES, max_size=25), kind=st.sampled_from(["text", "chat"]), crlf=st.booleans())
def test_jsonl_every_line_is_accounted_for_once(lines: list[bytes], kind: str, crlf: bool) -> None:
    data = (b"\r\n" if crlf else b"\n").join(lines)
    locators, _, _ = _run(_spec("jsonl", kind), {"a.jsonl": data})
    assert Counter(locators) == Counter(_records(data, "a.jsonl"))


@settings(max_examples=40, deadline=None)
@given(contents=st.lists(st.one_of(st.binary(max_size=300), TEXTS.map(str.encode)), min_size=1, max_size=6))
def test_text_files_are_one_record_each(contents: list[bytes]) -> None:
    files = {f"f{i}.txt": data for i, data in enumerate(contents)}
    locators, _, _ = _run(_spec("text"), files)
    assert sorted(locators) == sorted(files)


def test_huge_lines_nul_bytes_empty_files_and_mixed_encodings() -> None:
    huge = "word " * 420_000  # about 2 MB on one line
    lines = [
        _json_line({"text": huge}),
        _json_line({"text": "a sentence with a NUL \x00 byte inside it"}),
        "plain text café".encode("utf-16"),
        b'{"text": "caf\xe9 au lait with more words"}',
        _nested(200),
        b'{"text": "cut',
    ]
    data = b"\n".join(lines)
    locators, unread, quarantine = _run(_spec("jsonl"), {"a.jsonl": data, "empty.jsonl": b""})
    assert Counter(locators) == Counter(_records(data, "a.jsonl"))
    assert quarantine.column("rule_id").to_pylist()[:1] == ["quality.too_long"]
    assert unread.num_rows == 4  # utf-16, latin-1, nested list as text, truncated

    text_locators, _, _ = _run(_spec("text"), {"huge.txt": huge.encode(), "empty.txt": b"", "nul.txt": b"\x00" * 10})
    assert sorted(text_locators) == ["empty.txt", "huge.txt", "nul.txt"]


def test_very_deeply_nested_json_is_quarantined_not_a_crash() -> None:
    locators, unread, _ = _run(_spec("jsonl"), {"a.jsonl": _nested(100_000)})
    assert locators == ["a.jsonl:1"] and unread.num_rows == 1
