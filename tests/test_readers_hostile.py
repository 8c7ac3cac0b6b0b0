"""Source files as they arrive in the wild: UTF-16, latin-1, compressed, misnamed, cut off, one enormous line.

Each test writes real files and checks that every record that can be recovered is a document, and that every
one that cannot is a quarantine row whose reason says where it is and what the bytes look like.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import json
import tracemalloc
import zlib
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mixassets.engine import source_streams
from mixassets.engine.readers import (
    RULE_OVERSIZED,
    RULE_TRUNCATED,
    RULE_UNDECODABLE,
    SourceReadError,
    read_source,
)
from mixtrain.config.data import SourceSpec

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
N_RECORDS = 60
# U+0A0A then U+0100 (and the reverse) put the bytes of a UTF-16 newline across two code units, in either byte
# order: a reader that did not split on code-unit boundaries would cut these records in two.
TRICKY = "caf\u00e9 \u4e2d\u6587 \u0a0a\u0100\u0a0a \U0001f600"


def _spec(**kw: object) -> SourceSpec:
    base = {"id": "src", "path": "data/*", "format": "jsonl", "license": "MIT"}
    return SourceSpec.model_validate({**base, **kw})


def _texts(n: int = N_RECORDS) -> list[str]:
    return [f"record {i}: {TRICKY}" for i in range(n)]


def _jsonl(texts: list[str], newline: str = "\n") -> str:
    return "".join(json.dumps({"text": t}, ensure_ascii=False) + newline for t in texts)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _read(tmp_path: Path, path: Path, **kw: object) -> tuple[pa.Table, pa.Table]:
    return read_source(_spec(**kw), [str(path)], base=str(tmp_path), capture_time=T0)


def _assert_all_recovered(docs: pa.Table, bad: pa.Table, texts: list[str], name: str) -> None:
    assert bad.num_rows == 0, bad.column("reason").to_pylist()
    assert docs.column("text").to_pylist() == texts
    assert docs.column("locator").to_pylist() == [f"data/{name}:{i}" for i in range(1, len(texts) + 1)]


@pytest.mark.parametrize(
    ("encoded", "kw"),
    [
        pytest.param(lambda s: s.encode("utf-16"), {}, id="utf16-le-bom"),
        pytest.param(lambda s: b"\xfe\xff" + s.encode("utf-16-be"), {}, id="utf16-be-bom"),
        pytest.param(lambda s: s.encode("utf-16-le"), {}, id="utf16-le-no-bom-detected"),
        pytest.param(lambda s: s.encode("utf-16-be"), {}, id="utf16-be-no-bom-detected"),
        pytest.param(lambda s: s.encode("utf-16-be"), {"encoding": "utf-16"}, id="utf16-be-no-bom-declared"),
        pytest.param(lambda s: s.encode("utf-16-le"), {"encoding": "UTF-16LE"}, id="utf16le-declared"),
        pytest.param(lambda s: s.encode("utf-16"), {"encoding": "utf-8"}, id="utf16-bom-beats-declared-utf8"),
        pytest.param(lambda s: s.encode("utf-32"), {}, id="utf32-bom"),
        pytest.param(lambda s: codecs.BOM_UTF8 + s.encode(), {}, id="utf8-bom"),
    ],
)
def test_unicode_encodings_are_recovered_record_for_record(
    tmp_path: Path, encoded: Callable[[str], bytes], kw: dict[str, object]
) -> None:
    texts = _texts()
    path = _write(tmp_path, "u.jsonl", encoded(_jsonl(texts, newline="\r\n")))
    docs, bad = _read(tmp_path, path, **kw)
    _assert_all_recovered(docs, bad, texts, "u.jsonl")


def test_utf16_ids_and_line_numbers_match_the_utf8_file(tmp_path: Path) -> None:
    lines = [json.dumps({"text": "first"}), "", "{broken", json.dumps({"text": TRICKY}, ensure_ascii=False)]
    body = "\n".join(lines) + "\n"
    utf8 = _read(tmp_path, _write(tmp_path, "same.jsonl", body.encode()))
    utf16 = _read(tmp_path, _write(tmp_path, "same.jsonl", body.encode("utf-16")))
    for table in (0, 1):
        for column in ("doc_id", "locator"):
            assert utf16[table].column(column).to_pylist() == utf8[table].column(column).to_pylist()
    assert utf16[0].column("locator").to_pylist() == ["data/same.jsonl:1", "data/same.jsonl:4"]
    assert utf16[1].column("reason")[0].as_py().startswith("data/same.jsonl:3: not valid JSON")


def test_bom_less_utf16_under_an_explicit_utf8_is_quarantined_saying_what_it_looks_like(tmp_path: Path) -> None:
    texts = _texts()
    path = _write(tmp_path, "w.jsonl", _jsonl(texts).encode("utf-16-le"))
    docs, bad = _read(tmp_path, path, encoding="utf-8", compression="none")
    assert docs.num_rows == 0
    assert bad.num_rows >= N_RECORDS  # no record is silently lost: each line is a row
    for row in bad.to_pylist():
        assert row["rule_id"] == RULE_UNDECODABLE
        assert row["reason"].startswith(row["locator"] + ":")
        assert "looks like UTF-16" in row["reason"] and "declare encoding: utf-16" in row["reason"]


def test_latin1_is_read_when_declared_and_quarantined_as_not_utf8_when_not(tmp_path: Path) -> None:
    texts = [f"caf\u00e9 na\u00efve \u00bd {i}" for i in range(N_RECORDS)]
    path = _write(tmp_path, "l.jsonl", _jsonl(texts).encode("latin-1"))
    docs, bad = _read(tmp_path, path, encoding="latin-1")
    _assert_all_recovered(docs, bad, texts, "l.jsonl")

    docs, bad = _read(tmp_path, path)
    assert docs.num_rows == 0 and bad.num_rows == N_RECORDS
    assert set(bad.column("rule_id").to_pylist()) == {RULE_UNDECODABLE}
    assert bad.column("reason")[0].as_py().startswith("data/l.jsonl:1: not valid UTF-8")


def test_invalid_utf8_line_is_one_row_and_its_neighbours_are_read(tmp_path: Path) -> None:
    texts = _texts(5)
    body = _jsonl(texts[:2]).encode() + b'{"text": "bad \xff\xfe byte"}\n' + _jsonl(texts[2:]).encode()
    docs, bad = _read(tmp_path, _write(tmp_path, "i.jsonl", body))
    assert docs.column("text").to_pylist() == texts
    assert bad.column("locator").to_pylist() == ["data/i.jsonl:3"]
    row = bad.to_pylist()[0]
    assert row["rule_id"] == RULE_UNDECODABLE and row["reason"].startswith("data/i.jsonl:3: not valid UTF-8")
    assert row["raw"] == b'{"text": "bad \xff\xfe byte"}' and "looks like" not in row["reason"]


def _zstd_frames(data: bytes) -> bytes:
    half = len(data) // 2
    cut = data.index(b"\n", half) + 1
    compressor = zstandard.ZstdCompressor()
    return compressor.compress(data[:cut]) + compressor.compress(data[cut:])  # as pzstd or `cat a.zst b.zst` make


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gz": gzip.compress,
    "zst": zstandard.ZstdCompressor().compress,
    "bz2": bz2.compress,
}


@pytest.mark.parametrize(
    ("name", "compress", "kw"),
    [
        pytest.param("c.jsonl.gz", gzip.compress, {}, id="gz"),
        pytest.param("c.jsonl.gzip", gzip.compress, {}, id="gzip-suffix"),
        pytest.param("c.jsonl.zst", COMPRESSORS["zst"], {}, id="zst"),
        pytest.param("c.jsonl.bz2", bz2.compress, {}, id="bz2"),
        pytest.param("c.jsonl", gzip.compress, {}, id="gzip-named-jsonl"),
        pytest.param("c.jsonl", COMPRESSORS["zst"], {}, id="zstd-named-jsonl"),
        pytest.param("c.data", bz2.compress, {"compression": "bz2"}, id="bz2-declared"),
        pytest.param("c.jsonl.gz", lambda b: gzip.compress(b[:100]) + gzip.compress(b[100:]), {}, id="gz-members"),
        pytest.param("c.jsonl.zst", _zstd_frames, {}, id="zst-frames"),
        pytest.param("c.jsonl.gz", lambda b: b, {}, id="plain-named-gz"),
        pytest.param("c.jsonl.gz", lambda b: gzip.compress(b.decode().encode("utf-16")), {}, id="gz-of-utf16"),
    ],
)
def test_compressed_sources_are_read_whole(
    tmp_path: Path, name: str, compress: Callable[[bytes], bytes], kw: dict[str, object]
) -> None:
    texts = _texts()
    path = _write(tmp_path, name, compress(_jsonl(texts).encode()))
    docs, bad = _read(tmp_path, path, **kw)
    _assert_all_recovered(docs, bad, texts, name)


def test_gzip_read_as_declared_uncompressed_says_it_looks_like_gzip(tmp_path: Path) -> None:
    path = _write(tmp_path, "g.jsonl", gzip.compress(_jsonl(_texts()).encode()))
    docs, bad = _read(tmp_path, path, compression="none")
    assert docs.num_rows == 0 and bad.num_rows >= 1
    assert all(
        "looks like gzip-compressed data; declare compression: gzip" in r for r in bad.column("reason").to_pylist()
    )


def test_a_plain_file_declared_gzip_is_one_row_naming_the_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.jsonl", _jsonl(_texts()).encode())
    docs, bad = _read(tmp_path, path, compression="gzip")
    assert docs.num_rows == 0 and bad.column("locator").to_pylist() == ["data/p.jsonl:1"]
    reason = bad.column("reason")[0].as_py()
    assert bad.column("rule_id")[0].as_py() == RULE_TRUNCATED
    assert "zlib.error" in reason and "does not start with a gzip header" in reason


@pytest.mark.parametrize("suffix", ["gz", "zst", "bz2"])
def test_cut_off_stream_keeps_every_line_before_the_cut_and_adds_one_row(tmp_path: Path, suffix: str) -> None:
    # enough varied text for several compressed blocks, so that the first half holds whole lines
    texts = [f"record {i} {zlib.crc32(str(i).encode()):08x} {TRICKY}" for i in range(60_000)]
    whole = COMPRESSORS[suffix](_jsonl(texts).encode())
    path = _write(tmp_path, f"t.jsonl.{suffix}", whole[: len(whole) // 2])

    decoder: dict[str, Callable[[], object]] = {
        "gz": lambda: zlib.decompressobj(wbits=31),
        "zst": lambda: zstandard.ZstdDecompressor().decompressobj(),
        "bz2": bz2.BZ2Decompressor,
    }
    recoverable = decoder[suffix]().decompress(whole[: len(whole) // 2]).count(b"\n")  # type: ignore[attr-defined]

    docs, bad = _read(tmp_path, path)
    assert docs.num_rows == recoverable  # not one recoverable record lost
    assert docs.column("text").to_pylist() == texts[:recoverable]
    assert bad.num_rows == 1
    row = bad.to_pylist()[0]
    assert row["rule_id"] == RULE_TRUNCATED and row["locator"] == f"data/t.jsonl.{suffix}:{recoverable + 1}"
    assert row["reason"].startswith(f"data/t.jsonl.{suffix}:{recoverable + 1}: decompression stopped")
    assert "EOFError" in row["reason"] and f"line {recoverable + 1}" in row["reason"]
    if suffix != "bz2":  # bz2 gives nothing out of a block it cannot finish, so recovery needs whole blocks
        assert recoverable > 0


def test_an_io_error_under_the_decompressor_fails_the_run_rather_than_quarantining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, "io.jsonl.gz", gzip.compress(_jsonl(_texts(5_000)).encode()))

    class Flaky:
        def __init__(self, f: object) -> None:
            self._f, self._reads = f, 0

        def read(self, size: int = -1) -> bytes:
            self._reads += 1
            if self._reads > 2:
                raise ConnectionResetError("connection reset by peer")
            return self._f.read(size)  # type: ignore[attr-defined]

        def __enter__(self) -> Flaky:
            return self

        def __exit__(self, *exc: object) -> None:
            self._f.close()  # type: ignore[attr-defined]

    real_open = fsspec.open

    class Opener:
        def __init__(self, p: str, mode: str) -> None:
            self._p, self._mode = p, mode

        def open(self) -> Flaky:
            return Flaky(real_open(self._p, self._mode).open())

    monkeypatch.setattr(source_streams.fsspec, "open", Opener)
    with pytest.raises(SourceReadError, match=r"io\.jsonl\.gz.*connection reset"):
        _read(tmp_path, path)


def test_a_line_over_the_cap_is_quarantined_without_being_held(tmp_path: Path) -> None:
    cap = 64 * 1024
    huge = json.dumps({"text": "x" * (40 * 1024 * 1024)}).encode()
    texts = _texts(4)
    body = _jsonl(texts[:2]).encode() + huge + b"\n" + _jsonl(texts[2:]).encode()
    path = _write(tmp_path, "h.jsonl", body)
    del body

    tracemalloc.start()
    try:
        docs, bad = _read(tmp_path, path, max_record_bytes=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * cap + 4 * 1024 * 1024, peak  # nowhere near the 40 MiB line

    assert docs.column("text").to_pylist() == texts
    assert docs.column("locator").to_pylist() == [f"data/h.jsonl:{i}" for i in (1, 2, 4, 5)]
    row = bad.to_pylist()[0]
    assert bad.num_rows == 1 and row["rule_id"] == RULE_OVERSIZED and row["locator"] == "data/h.jsonl:3"
    assert row["reason"].startswith(f"data/h.jsonl:3: record is {len(huge):,} bytes")
    assert f"({cap:,})" in row["reason"] and "first" in row["reason"]
    assert row["raw"] == huge[: len(row["raw"])] and 0 < len(row["raw"]) <= cap and row["text"] is None


def test_cap_counts_utf16_lines_in_their_own_bytes(tmp_path: Path) -> None:
    texts = ["short", "y" * 500, "also short"]
    path = _write(tmp_path, "c16.jsonl", _jsonl(texts).encode("utf-16"))
    docs, bad = _read(tmp_path, path, max_record_bytes=600)  # the long line is ~1 KB in UTF-16
    assert docs.column("text").to_pylist() == ["short", "also short"]
    assert bad.column("locator").to_pylist() == ["data/c16.jsonl:2"]
    assert bad.column("rule_id").to_pylist() == [RULE_OVERSIZED]
    assert len(bad.column("raw")[0].as_py()) <= 600


def test_last_line_without_newline_over_the_cap(tmp_path: Path) -> None:
    path = _write(tmp_path, "e.jsonl", _jsonl(["ok"]).encode() + b'{"text": "' + b"z" * 5000 + b'"}')
    docs, bad = _read(tmp_path, path, max_record_bytes=1000)
    assert docs.column("text").to_pylist() == ["ok"]
    assert bad.column("locator").to_pylist() == ["data/e.jsonl:2"]
    assert bad.column("rule_id").to_pylist() == [RULE_OVERSIZED] and "5,012 bytes" in bad.column("reason")[0].as_py()


def test_text_files_decode_decompress_and_stop_at_the_cap(tmp_path: Path) -> None:
    body = f"a text file\n{TRICKY}\n"
    paths = [
        _write(tmp_path, "a.txt", body.encode("utf-16")),
        _write(tmp_path, "b.txt.gz", gzip.compress(body.encode())),
        _write(tmp_path, "c.txt", body.encode("utf-16-le")),
        _write(tmp_path, "d.txt", ("z" * 10_000).encode()),
    ]
    docs, bad = read_source(
        _spec(format="text", max_record_bytes=5_000), [str(p) for p in paths], base=str(tmp_path), capture_time=T0
    )
    assert docs.column("text").to_pylist() == [body, body, body]
    assert docs.column("locator").to_pylist() == ["data/a.txt", "data/b.txt.gz", "data/c.txt"]
    row = bad.to_pylist()[0]
    assert row["locator"] == "data/d.txt" and row["rule_id"] == RULE_OVERSIZED
    assert row["reason"].startswith("data/d.txt: over the source's max_record_bytes (5,000)")
    assert len(row["raw"]) <= 5_000


def test_text_file_declared_latin1_and_a_cut_off_gzip_text(tmp_path: Path) -> None:
    latin = _write(tmp_path, "l.txt", "d\u00e9j\u00e0 vu\n".encode("latin-1"))
    whole = gzip.compress(b"some words " * 20_000)
    cut = _write(tmp_path, "cut.txt.gz", whole[: len(whole) // 2])
    docs, bad = read_source(
        _spec(format="text", encoding="latin-1"), [str(latin), str(cut)], base=str(tmp_path), capture_time=T0
    )
    assert docs.column("text").to_pylist() == ["d\u00e9j\u00e0 vu\n"]
    assert bad.column("locator").to_pylist() == ["data/cut.txt.gz"]
    assert bad.column("rule_id").to_pylist() == [RULE_TRUNCATED]
    assert "data/cut.txt.gz: decompression stopped" in bad.column("reason")[0].as_py()


def test_text_file_undecodable_in_utf16_names_the_line(tmp_path: Path) -> None:
    data = "line one\nline two\n".encode("utf-16") + b"\x00\xd8"  # a lone high surrogate on line 3
    docs, bad = read_source(
        _spec(format="text"), [str(_write(tmp_path, "s.txt", data))], base=str(tmp_path), capture_time=T0
    )
    assert docs.num_rows == 0
    assert bad.column("reason")[0].as_py().startswith("data/s.txt:3: not valid utf-16-le")


def test_parquet_value_over_the_cap_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "data" / "p.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"text": ["small", "w" * 2_000, "small again"]}), path)
    docs, bad = read_source(
        _spec(format="parquet", max_record_bytes=1_000), [str(path)], base=str(tmp_path), capture_time=T0
    )
    assert docs.column("locator").to_pylist() == ["data/p.parquet#row=0", "data/p.parquet#row=2"]
    row = bad.to_pylist()[0]
    assert row["locator"] == "data/p.parquet#row=1" and row["rule_id"] == RULE_OVERSIZED
    assert "2,000 bytes" in row["reason"] and len(row["raw"]) <= 1_000


def test_spec_fields_are_validated_naming_the_field() -> None:
    spec = _spec()
    assert (spec.compression, spec.encoding, spec.max_record_bytes) == ("infer", "utf-8", 16 * 1024 * 1024)
    assert not spec.encoding_declared and _spec(encoding="utf-8").encoding_declared
    cases = [
        ({"encoding": "no-such-codec"}, "encoding"),
        ({"encoding": "base64"}, "encoding"),  # a codec, but bytes to bytes
        ({"compression": "lz4"}, "compression"),
        ({"format": "parquet", "compression": "gzip"}, "compression"),
        ({"format": "parquet", "encoding": "latin-1"}, "encoding"),
        ({"max_record_bytes": 0}, "max_record_bytes"),
    ]
    for kw, field_name in cases:
        with pytest.raises(ValidationError) as err:
            _spec(**kw)
        assert err.value.errors()[0]["loc"] == (field_name,), (kw, err.value.errors())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.text(max_size=300), min_size=1, max_size=300),
    suffix=st.sampled_from(sorted(COMPRESSORS)),
    cut=st.floats(0, 1),
)
def test_any_cut_of_a_compressed_file_keeps_a_prefix_and_accounts_for_the_rest(
    tmp_path: Path, texts: list[str], suffix: str, cut: float
) -> None:
    whole = COMPRESSORS[suffix](_jsonl(texts).encode())
    size = int(len(whole) * cut)
    path = _write(tmp_path, f"p.jsonl.{suffix}", whole[:size])
    docs, bad = _read(tmp_path, path)
    n = docs.num_rows
    assert docs.column("text").to_pylist() == texts[:n]  # what was read is exactly the first records
    if size == len(whole):
        assert n == len(texts) and bad.num_rows == 0
    elif size == 0:  # an empty file holds no records
        assert n == 0 and bad.num_rows == 0
    else:  # everything after the last record read is one row: nothing silently lost, nothing counted twice
        assert bad.column("locator").to_pylist() == [f"data/p.jsonl.{suffix}:{n + 1}"]
        assert bad.column("rule_id").to_pylist() == [RULE_TRUNCATED]
