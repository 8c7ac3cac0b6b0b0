from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixassets.engine.readers import (
    RULE_MALFORMED,
    RULE_UNDECODABLE,
    SourceReadError,
    doc_id_for,
    read_source,
    relative_path,
)
from mixtrain.config.data import SourceSpec
from mixtrain.schema import DOCUMENT_SCHEMA, READ_FAILURE_SCHEMA

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _spec(**kw: object) -> SourceSpec:
    base = {"id": "src", "path": "data/*", "format": "jsonl", "license": "MIT", "rights_tags": ["web"]}
    return SourceSpec.model_validate({**base, **kw})


def _write_jsonl(path: Path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_jsonl_good_lines_read_and_bad_lines_quarantined(tmp_path: Path) -> None:
    f = tmp_path / "data" / "a.jsonl"
    _write_jsonl(
        f,
        [
            json.dumps({"text": "first good line", "other": 1}).encode(),  # 1
            b"{not json",  # 2
            b"",  # 3: blank, skipped
            b'{"text": "caf\xe9 latin-1"}',  # 4: invalid UTF-8
            json.dumps({"body": "no text field"}).encode(),  # 5
            json.dumps({"text": 42}).encode(),  # 6
            json.dumps(["a", "list"]).encode(),  # 7
            b'{"text": "lone \\ud800 surrogate"}',  # 8
            b"   ",  # 9: whitespace only, skipped
            json.dumps({"text": "second good line \u00e9"}, ensure_ascii=False).encode(),  # 10
        ],
    )
    docs, bad = read_source(_spec(), [str(f)], base=str(tmp_path), capture_time=T0)
    assert docs.schema.equals(DOCUMENT_SCHEMA) and bad.schema.equals(READ_FAILURE_SCHEMA)

    assert docs.column("text").to_pylist() == ["first good line", "second good line \u00e9"]
    assert docs.column("locator").to_pylist() == ["data/a.jsonl:1", "data/a.jsonl:10"]

    rows = {r["locator"]: r for r in bad.to_pylist()}
    assert sorted(rows) == [f"data/a.jsonl:{n}" for n in (2, 4, 5, 6, 7, 8)]
    assert all(r["disposition"] == "quarantined" for r in rows.values())
    for loc, r in rows.items():
        assert r["reason"].startswith(loc + ":"), r["reason"]  # file and line named
        assert r["doc_id"] == doc_id_for("src", loc)
    assert rows["data/a.jsonl:2"]["rule_id"] == RULE_MALFORMED and "not valid JSON" in rows["data/a.jsonl:2"]["reason"]
    undecodable = rows["data/a.jsonl:4"]
    assert undecodable["rule_id"] == RULE_UNDECODABLE and "UTF-8" in undecodable["reason"]
    assert undecodable["raw"] == b'{"text": "caf\xe9 latin-1"}' and undecodable["text"] is None
    assert "field 'text'" in rows["data/a.jsonl:5"]["reason"]
    assert "field 'text'" in rows["data/a.jsonl:6"]["reason"] and "int" in rows["data/a.jsonl:6"]["reason"]
    assert "JSON object" in rows["data/a.jsonl:7"]["reason"]
    assert rows["data/a.jsonl:8"]["rule_id"] == RULE_UNDECODABLE


def test_metadata_comes_from_the_spec_and_capture_time(tmp_path: Path) -> None:
    f = tmp_path / "data" / "a.jsonl"
    _write_jsonl(f, [json.dumps({"content": "hello there"}).encode()])
    spec = _spec(text_field="content", license="CC-BY-4.0", rights_tags=["a", "b"], domain="code", language="fr")
    docs, _ = read_source(spec, [str(f)], base=str(tmp_path), capture_time=T0)
    row = docs.to_pylist()[0]
    assert row["text"] == "hello there" and row["kind"] == "text" and row["messages"] is None
    assert (row["license"], row["rights_tags"], row["domain"], row["language"]) == (
        "CC-BY-4.0",
        ["a", "b"],
        "code",
        "fr",
    )
    assert row["capture_time"] == T0 and row["source_id"] == "src"


def test_naive_capture_time_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        read_source(_spec(), [], base=str(tmp_path), capture_time=datetime(2026, 1, 1))


def test_chat_jsonl_messages_and_malformed_messages(tmp_path: Path) -> None:
    good = {"messages": [{"role": "user", "content": "hi", "name": "x"}, {"role": "assistant", "content": "hello"}]}
    f = tmp_path / "data" / "chat.jsonl"
    _write_jsonl(
        f,
        [
            json.dumps(good).encode(),
            json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}).encode(),
            json.dumps({"messages": "not a list"}).encode(),
            json.dumps({"messages": []}).encode(),
            json.dumps({"text": "no messages"}).encode(),
            json.dumps({"messages": [{"role": "user", "content": ["x"]}]}).encode(),
        ],
    )
    docs, bad = read_source(_spec(kind="chat"), [str(f)], base=str(tmp_path), capture_time=T0)
    row = docs.to_pylist()[0]
    assert docs.num_rows == 1 and row["kind"] == "chat"
    assert row["text"] == "hi\n\nhello"
    assert json.loads(row["messages"]) == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    reasons = dict(zip(bad.column("locator").to_pylist(), bad.column("reason").to_pylist(), strict=True))
    assert "field 'messages[1].content'" in reasons["data/chat.jsonl:2"]
    assert "field 'messages'" in reasons["data/chat.jsonl:3"]
    assert "field 'messages'" in reasons["data/chat.jsonl:4"]
    assert "field 'messages' is missing" in reasons["data/chat.jsonl:5"]
    assert "field 'messages[0].content'" in reasons["data/chat.jsonl:6"]
    assert set(bad.column("rule_id").to_pylist()) == {RULE_MALFORMED}


def test_parquet_rows_and_bad_rows(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    p = tmp_path / "data" / "t.parquet"
    pq.write_table(pa.table({"text": ["row zero text", None, "row two text"]}), p)
    docs, bad = read_source(_spec(format="parquet"), [str(p)], base=str(tmp_path), capture_time=T0)
    assert docs.column("locator").to_pylist() == ["data/t.parquet#row=0", "data/t.parquet#row=2"]
    assert bad.column("locator").to_pylist() == ["data/t.parquet#row=1"]
    assert "field 'text'" in bad.column("reason")[0].as_py()


def test_parquet_chat_and_missing_column(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    p = tmp_path / "data" / "c.parquet"
    msgs = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]]
    pq.write_table(pa.table({"messages": msgs}), p)
    docs, bad = read_source(_spec(format="parquet", kind="chat"), [str(p)], base=str(tmp_path), capture_time=T0)
    assert docs.column("text").to_pylist() == ["q\n\na"] and bad.num_rows == 0

    docs, bad = read_source(_spec(format="parquet"), [str(p)], base=str(tmp_path), capture_time=T0)
    assert docs.num_rows == 0 and bad.num_rows == 1
    assert "field 'text' is not a column" in bad.column("reason")[0].as_py()


def test_corrupt_parquet_is_quarantined_whole(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    p = tmp_path / "data" / "broken.parquet"
    p.write_bytes(b"PAR1 this is not parquet")
    docs, bad = read_source(_spec(format="parquet"), [str(p)], base=str(tmp_path), capture_time=T0)
    assert docs.num_rows == 0
    assert bad.column("locator").to_pylist() == ["data/broken.parquet"]
    assert bad.column("rule_id").to_pylist() == [RULE_MALFORMED]


def test_text_files_one_document_each_and_invalid_utf8_file(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    (d / "good.txt").write_text("a whole file\nof text\n", encoding="utf-8")
    (d / "bad.txt").write_bytes(b"line one\nline \xff two\n")
    paths = [str(d / "bad.txt"), str(d / "good.txt")]
    docs, bad = read_source(_spec(format="text"), paths, base=str(tmp_path), capture_time=T0)
    assert docs.column("locator").to_pylist() == ["data/good.txt"]
    assert docs.column("text").to_pylist() == ["a whole file\nof text\n"]
    row = bad.to_pylist()[0]
    assert row["locator"] == "data/bad.txt" and row["rule_id"] == RULE_UNDECODABLE
    assert row["reason"].startswith("data/bad.txt:2:") and row["raw"] == b"line one\nline \xff two\n"


def test_text_format_cannot_hold_chat(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot hold chat"):
        read_source(_spec(format="text", kind="chat"), [], base=str(tmp_path), capture_time=T0)


def test_missing_file_raises_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "data" / "nope.jsonl"
    with pytest.raises(SourceReadError, match=r"nope\.jsonl"):
        read_source(_spec(), [str(missing)], base=str(tmp_path), capture_time=T0)
    with pytest.raises(SourceReadError, match=r"nope\.txt"):
        read_source(_spec(format="text"), [str(tmp_path / "nope.txt")], base=str(tmp_path), capture_time=T0)


def test_doc_ids_do_not_depend_on_where_the_project_lives(tmp_path: Path) -> None:
    one = tmp_path / "checkout-one" / "proj"
    _write_jsonl(one / "data" / "a.jsonl", [b'{"text": "alpha doc"}', b"broken", b'{"text": "beta doc"}'])
    two = tmp_path / "elsewhere" / "deeper" / "proj"
    shutil.copytree(one, two)

    def ids(root: Path) -> tuple[list[str], list[str], list[str]]:
        docs, bad = read_source(_spec(), [str(root / "data" / "a.jsonl")], base=str(root), capture_time=T0)
        return docs.column("doc_id").to_pylist(), docs.column("locator").to_pylist(), bad.column("doc_id").to_pylist()

    first, second = ids(one), ids(two)
    assert first == second
    assert len(set(first[0] + first[2])) == 3  # distinct records, distinct ids
    assert doc_id_for("src", "data/a.jsonl:1") != doc_id_for("other", "data/a.jsonl:1")


def test_relative_path_rules(tmp_path: Path) -> None:
    assert relative_path(str(tmp_path / "d" / "x.jsonl"), str(tmp_path)) == "d/x.jsonl"
    outside = str(tmp_path.parent / "elsewhere.jsonl")
    assert relative_path(outside, str(tmp_path)) == outside
    assert relative_path("s3://bucket/proj/data/x.jsonl", "s3://bucket/proj") == "data/x.jsonl"


def test_fsspec_urls_are_read() -> None:
    fs = fsspec.filesystem("memory")
    with fs.open("/mixtrain-test/proj/data/m.jsonl", "wb") as f:
        f.write(b'{"text": "from memory"}\n{"oops"\n')
    docs, bad = read_source(
        _spec(), ["memory://mixtrain-test/proj/data/m.jsonl"], base="memory://mixtrain-test/proj", capture_time=T0
    )
    assert docs.column("locator").to_pylist() == ["data/m.jsonl:1"]
    assert bad.column("locator").to_pylist() == ["data/m.jsonl:2"]
    fs.rm("/mixtrain-test", recursive=True)


def test_iter_source_reads_in_bounded_batches_and_loses_nothing(tmp_path: Path) -> None:
    from mixassets.engine.readers import iter_source

    d = tmp_path / "data"
    lines = [json.dumps({"text": f"record {i}"}).encode() for i in range(7)]
    lines[3] = b'{"text": "trunc'
    lines[5] = b'{"text": "bad \xff byte"}'
    _write_jsonl(d / "a.jsonl", lines)
    _write_jsonl(d / "b.jsonl", [json.dumps({"text": "b zero"}).encode(), b"", json.dumps({"text": "b two"}).encode()])
    paths = [str(d / "a.jsonl"), str(d / "b.jsonl")]
    batches = list(iter_source(_spec(), paths, base=str(tmp_path), capture_time=T0, batch_rows=3))
    assert [docs.num_rows + bad.num_rows for docs, bad in batches] == [3, 3, 3]
    docs = pa.concat_tables([b[0] for b in batches])
    bad = pa.concat_tables([b[1] for b in batches])
    assert docs.column("locator").to_pylist() == [
        *(f"data/a.jsonl:{i}" for i in (1, 2, 3, 5, 7)),
        "data/b.jsonl:1",
        "data/b.jsonl:3",
    ]
    assert bad.column("locator").to_pylist() == ["data/a.jsonl:4", "data/a.jsonl:6"]
    assert bad.column("reason")[0].as_py().startswith("data/a.jsonl:4: not valid JSON")
    whole_docs, whole_bad = read_source(_spec(), paths, base=str(tmp_path), capture_time=T0)
    assert whole_docs.equals(docs.combine_chunks()) and whole_bad.equals(bad.combine_chunks())


def test_parquet_is_read_row_group_by_row_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mixassets.engine import readers

    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 2)
    (tmp_path / "data").mkdir()
    p = tmp_path / "data" / "t.parquet"
    values = [f"row {i}" if i % 4 else None for i in range(10)]
    pq.write_table(pa.table({"text": values, "other": list(range(10))}), p, row_group_size=3)
    batches = list(
        readers.iter_source(_spec(format="parquet"), [str(p)], base=str(tmp_path), capture_time=T0, batch_rows=4)
    )
    assert [d.num_rows + b.num_rows for d, b in batches] == [4, 4, 2]
    docs = pa.concat_tables([d for d, _ in batches])
    bad = pa.concat_tables([b for _, b in batches])
    assert docs.column("text").to_pylist() == [v for v in values if v is not None]
    assert bad.column("locator").to_pylist() == [f"data/t.parquet#row={i}" for i in (0, 4, 8)]


def test_parquet_failing_part_way_keeps_what_was_read_and_quarantines_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mixassets.engine import readers

    (tmp_path / "data").mkdir()
    p = tmp_path / "data" / "t.parquet"
    values = [f"row {i}" for i in range(6)]
    pq.write_table(pa.table({"text": values}), p, row_group_size=3)
    real = pq.ParquetFile.iter_batches

    def failing(self: pq.ParquetFile, *args: object, **kwargs: object):  # a corrupt second row group
        batches = real(self, *args, **kwargs)
        yield next(batches)
        raise OSError("Corrupt snappy compressed data.")

    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 3)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", failing)
    docs, bad = read_source(_spec(format="parquet"), [str(p)], base=str(tmp_path), capture_time=T0)
    assert docs.column("text").to_pylist() == values[:3]
    assert bad.column("locator").to_pylist() == [f"data/t.parquet#row={i}" for i in range(3, 6)]
    assert "Parquet read failed from row 3 on: Corrupt snappy" in bad.column("reason")[0].as_py()
