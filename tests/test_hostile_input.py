"""Hostile input through the real pipeline (``mixtrain run`` of the sources and corpus groups): UTF-16 with and
without a byte-order mark, gzip, zstd, bz2, gzip under a plain name, a truncated gzip, a huge line, invalid UTF-8
and malformed JSON, with one credential of every kind planted in readable and unreadable records.

Afterwards no record that could be recovered is lost (each readable line is a document, each other line a
quarantine row with a rule and a reason), and no planted secret is in clear anywhere under the storage root or
in DAGSTER_HOME (event log, run metadata) except the quarantine vault and the ingested copy of the source.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from mixassets.engine.vault import VAULT_PREFIX
from mixtrain.tables import open_table
from tests.planted_secrets import PLANTED

SECRETS = {name: secret for name, _, secret in PLANTED}
LINES = {name: line for name, line, _ in PLANTED}
PROSE = [
    "The harbour reopened on Monday after the storm damaged two of the old piers along the northern quay.",
    "Volunteers rebuilt the library's reading room in a single summer, using timber salvaged from the mill.",
    "A small orchestra rehearsed in the school hall every Thursday evening until the roof was finally repaired.",
    "The ferry timetable changed twice that winter, and the islanders learned to read the tide tables again.",
    "Her notebook listed every bird she had seen on the estuary walk, with the date and the weather beside it.",
]
CAP = 4_096


def _record(text: str) -> bytes:
    return json.dumps({"text": text}).encode()


def _doc(i: int, secret: str | None = None) -> str:
    body = PROSE[i % len(PROSE)]
    return f"{body} Config used by the team: {LINES[secret]}" if secret else body


def _jsonl(texts: list[str]) -> bytes:
    return b"\n".join(_record(t) for t in texts) + b"\n"


def _files() -> dict[str, tuple[bytes, int, str]]:
    """name -> (file bytes, recoverable records, source options)."""
    out: dict[str, tuple[bytes, int, str]] = {}
    texts = [_doc(0), _doc(1, "jwt"), _doc(2), _doc(3, "hf")]
    out["utf16_bom.jsonl"] = ("\n".join(json.dumps({"text": t}) for t in texts).encode("utf-16"), 4, "")
    texts = [_doc(4), _doc(0, "openai-legacy"), _doc(1)]
    out["utf16_nobom.jsonl"] = ("\n".join(json.dumps({"text": t}) for t in texts).encode("utf-16-le"), 3, "")
    out["gzipped.jsonl.gz"] = (gzip.compress(_jsonl([_doc(2), _doc(3, "openai-project"), _doc(4)])), 3, "")
    out["zstd.jsonl.zst"] = (zstandard.compress(_jsonl([_doc(0, "gitlab"), _doc(1, "azure")])), 2, "")
    out["bzipped.jsonl.bz2"] = (bz2.compress(_jsonl([_doc(2, "url-credentials"), _doc(3)])), 2, "")
    out["misnamed.jsonl"] = (gzip.compress(_jsonl([_doc(4, "aws-key-id"), _doc(0)])), 2, "")
    whole = gzip.compress(_jsonl([_doc(i) for i in range(40)] + [_doc(1, "aws-secret")] * 5))
    # Cut well inside the stream: the lines decompressed before the cut are recoverable, the rest are not.
    cut = whole[: len(whole) * 2 // 3]
    recovered = sum(1 for _ in _readable_prefix(cut))
    out["truncated.jsonl.gz"] = (cut, recovered, "")
    huge = _record(f"{LINES['github']} " + "x" * (CAP * 4))
    bad_utf8 = f'{{"text": "caf\xe9 {LINES["pem"]!r}"}}'.encode("latin-1", "replace")
    broken_json = f'{{"text": "{LINES["jwt"]}'.encode()
    out["messy.jsonl"] = (b"\n".join([_record(_doc(1)), huge, bad_utf8, broken_json, _record(_doc(2))]) + b"\n", 2, "")
    return out


def _readable_prefix(data: bytes) -> list[bytes]:
    """Complete lines a streaming decompressor yields before a cut gzip stream ends."""
    import zlib

    d = zlib.decompressobj(wbits=31)
    text = d.decompress(data)
    return [line for line in text.split(b"\n")[:-1] if line.strip()]


def _write_project(root: Path) -> dict[str, int]:
    (root / "sources").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "held.jsonl").write_text("")
    expected: dict[str, int] = {}
    for name, (data, recoverable, _) in _files().items():
        (root / "data" / name).write_bytes(data)
        sid = name.split(".")[0]
        assert sid not in expected, f"two files would share the source id {sid}"
        expected[sid] = recoverable
        policy = "quarantine" if len(sid) % 2 else "redact"  # both ways a held or kept secret can go
        (root / "sources" / f"{sid}.yaml").write_text(
            f"id: {sid}\npath: data/{name}\nformat: jsonl\nkind: text\ntext_field: text\nlicense: MIT\n"
            f"domain: web\nlanguage: en\npii_policy: {policy}\nmax_record_bytes: {CAP}\n"
        )
    weights = ", ".join(f"{sid}: 1.0" for sid in expected)
    (root / "mixtrain.yaml").write_text(
        "name: hostile\n"
        "eval_sets:\n"
        '  - {id: held, type: jsonl, path: data/held.jsonl, task: json_signature, version: "1"}\n'
        f"mixture: {{weights: {{{weights}}}, token_budget: 1000}}\n"
        "release_gate: {eval_set: held}\n"
    )
    return expected


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    from mixtrain.instance import activate, load_definitions, open_instance
    from mixtrain.runner import run_project

    root = tmp_path_factory.mktemp("hostile") / "project"
    expected = _write_project(root)
    project = activate(root)
    defs = load_definitions(project)
    graph = defs.resolve_asset_graph()
    with open_instance(project) as instance:
        report = run_project(
            project,
            defs,
            instance,
            select=lambda key: graph.get(key).group_name in {"sources", "corpus"},
            log=lambda s: None,
        )
    assert report.ok, report.failed_runs
    return root, expected


def _rows(root: Path, key: str, sid: str) -> list[dict]:
    return open_table(root / "storage" / key / sid).read().to_pylist()


def test_no_recoverable_record_is_lost(hostile: tuple[Path, dict[str, int]]) -> None:
    root, expected = hostile
    for sid, recoverable in expected.items():
        docs = _rows(root, "raw_documents", sid)
        rejects = _rows(root, "raw_rejects", sid)
        assert len(docs) == recoverable, (sid, [r["reason"] for r in rejects])
        assert all(r["rule_id"] and r["reason"] for r in rejects)
        gated = _rows(root, "gated_documents", sid)
        held = _rows(root, "quarantine", sid)
        assert sorted(r["doc_id"] for r in gated + held) == sorted(r["doc_id"] for r in docs + rejects)
    reasons = " ".join(r["reason"] for r in _rows(root, "raw_rejects", "messy"))
    assert "read.oversized" in {r["rule_id"] for r in _rows(root, "raw_rejects", "messy")}
    assert "not valid UTF-8" in reasons and "not valid JSON" in reasons
    truncated = _rows(root, "raw_rejects", "truncated")
    assert [r["rule_id"] for r in truncated] == ["read.truncated"] and "truncated.jsonl.gz" in truncated[0]["reason"]


def _clear(data: bytes) -> set[str]:
    found = set()
    for name, secret in SECRETS.items():
        forms = {secret.encode(), secret.encode("utf-16-le"), json.dumps(secret)[1:-1].encode()}
        if any(form in data for form in forms):
            found.add(name)
    return found


def _cells(path: Path) -> bytes:
    """A parquet file's values as bytes (its pages may be compressed, so the file's bytes alone prove nothing)."""
    table = pq.read_table(path)
    return json.dumps(
        table.to_pylist(), default=lambda v: v.decode("latin-1") if isinstance(v, bytes) else str(v), ensure_ascii=False
    ).encode()


def test_no_planted_secret_in_clear_outside_the_vault_and_the_source_copy(hostile: tuple[Path, dict[str, int]]) -> None:
    root, _ = hostile
    storage = root / "storage"
    allowed = (storage / VAULT_PREFIX, storage / "raw_documents")
    leaks: dict[str, set[str]] = {}
    for base in (storage, root / ".dagster"):
        for folder, _, names in os.walk(base):
            if any(Path(folder) == a or a in Path(folder).parents for a in allowed):
                continue
            for name in names:
                path = Path(folder) / name
                data = _cells(path) if path.suffix == ".parquet" else path.read_bytes()
                found = _clear(data)
                if found:
                    leaks[str(path.relative_to(root))] = found
    assert not leaks
    # The scan sees what it looks for: the ingested copy holds the secrets of readable records in clear.
    copies = b"".join(_cells(p) for p in (storage / "raw_documents").rglob("*.parquet"))
    assert _clear(copies) >= {"jwt", "hf", "openai-legacy", "openai-project", "gitlab", "azure", "url-credentials"}
    vault = open_table(storage / VAULT_PREFIX / "raw_rejects" / "messy").read().to_pylist()
    assert _clear(json.dumps(vault, default=str).encode())  # the clear bytes are kept, in the vault
