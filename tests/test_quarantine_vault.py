"""The quarantine vault end to end: secrets and personal data planted in records that fail reading and in a document
the gate holds appear in clear nowhere under the storage root but the vault (owner-only) and the ingested copy of
the source, nor in a review sheet or a provenance answer; every record is still accounted for exactly once.

One small project, gated once for the module (the sources and corpus groups only: ~1 minute of Dagster).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from mixassets.engine.redaction import PREVIEW_CHARS, preview_bytes, redact_view, value_tag
from mixassets.engine.vault import DIR_MODE, FILE_MODE, VAULT_PREFIX, seal_read_failures
from mixtrain.schema import READ_FAILURE_SCHEMA
from mixtrain.tables import open_table

SOURCE = "leaky"
EMAIL_1, EMAIL_2, EMAIL_3 = "jane.doe@example.com", "bob.smith@example.org", "carol.ops@example.net"
AKIA_1, AKIA_2 = "AKIAIOSFODNN7EXAMPLE", "AKIAJ4Q2ZL7RXM3B5K8P"
GHP_1 = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
GHP_2 = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
GHP_3 = "ghp_" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8"
PLANTED = (EMAIL_1, EMAIL_2, EMAIL_3, AKIA_1, AKIA_2, GHP_1, GHP_2, GHP_3)
CLEAN = "The harbour reopened on Monday after the storm damaged two of the old piers along the northern quay."
DEPTH = 3_000  # past what json.loads can nest


def _lines() -> list[bytes]:
    deep = '{"a": ' * DEPTH + json.dumps(f"key {AKIA_2}") + "}" * DEPTH
    return [
        json.dumps({"text": CLEAN}).encode(),
        # malformed JSON (no closing brace) holding an email, an AWS key id and a GitHub token
        f'{{"text": "contact {EMAIL_1} with key {AKIA_1} and token {GHP_1}"'.encode(),
        # not UTF-8 (latin-1 bytes) around a token
        f'{{"text": "caf\xe9 token {GHP_2} fin"}}'.encode("latin-1"),
        # the text field has the wrong type; the record still carries an address
        json.dumps({"text": 12345, "contact": EMAIL_2}).encode(),
        deep.encode(),
        # a readable document with a secret: the gate holds it (pii_policy quarantine)
        json.dumps(
            {"text": f"Deploy notes: use the token {GHP_3} and write to {EMAIL_3} when the job is done."}
        ).encode(),
    ]


def _write_project(root: Path) -> Path:
    (root / "sources").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "held.jsonl").write_text("")
    (root / "data" / f"{SOURCE}.jsonl").write_bytes(b"\n".join(_lines()) + b"\n")
    (root / "mixtrain.yaml").write_text(
        "name: vault-test\n"
        "eval_sets:\n"
        '  - {id: held, type: jsonl, path: data/held.jsonl, task: json_signature, version: "1"}\n'
        "mixture: {weights: {leaky: 1.0}, token_budget: 1000}\n"
        "release_gate: {eval_set: held}\n"
    )
    (root / "sources" / f"{SOURCE}.yaml").write_text(
        f"id: {SOURCE}\npath: data/{SOURCE}.jsonl\nformat: jsonl\nkind: text\ntext_field: text\nlicense: MIT\n"
        "domain: web\nlanguage: en\npii_policy: quarantine\n"
    )
    return root


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mixtrain.instance import activate, load_definitions, open_instance
    from mixtrain.runner import run_project

    root = _write_project(tmp_path_factory.mktemp("vault") / "project")
    project = activate(root)
    defs = load_definitions(project)
    graph = defs.resolve_asset_graph()
    report = run_project(
        project,
        defs,
        open_instance(project),
        select=lambda key: graph.get(key).group_name in {"sources", "corpus"},
        log=lambda s: None,
    )
    assert report.ok, report.failed_runs
    return root


def _storage(root: Path) -> Path:
    return root / "storage"


def _table(root: Path, *key: str) -> list[dict[str, Any]]:
    return open_table(_storage(root).joinpath(*key, SOURCE)).read().to_pylist()


def _clear_in(value: Any) -> set[str]:
    """The planted values found in a value of any shape a table cell can take."""
    if isinstance(value, str):
        return {p for p in PLANTED if p in value}
    if isinstance(value, bytes):
        return {p for p in PLANTED if p.encode() in value}
    if isinstance(value, dict):
        return set().union(*(_clear_in(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(_clear_in(v) for v in value)) if value else set()
    return set()


def _leaks(path: Path) -> set[str]:
    if path.suffix == ".parquet":
        return _clear_in(pq.read_table(path).to_pylist())
    return _clear_in(path.read_bytes())


def test_no_planted_value_in_clear_outside_the_vault_and_the_source_copy(gated: Path) -> None:
    storage = _storage(gated)
    allowed = {storage / VAULT_PREFIX, storage / "raw_documents"}
    scanned, leaks = 0, {}
    for folder, _, files in os.walk(storage):
        if any(Path(folder) == a or a in Path(folder).parents for a in allowed):
            continue
        for name in files:
            path = Path(folder) / name
            scanned += 1
            found = _leaks(path)
            if found:
                leaks[str(path.relative_to(storage))] = sorted(found)
    assert not leaks
    assert scanned >= 8  # the manifests and parts of raw_rejects, quarantine, decision_log, gated_documents, ...


def test_the_vault_holds_the_clear_records_owner_only(gated: Path) -> None:
    vault = _table(gated, VAULT_PREFIX, "raw_rejects")
    held = _clear_in(vault)
    assert {EMAIL_1, AKIA_1, GHP_1, GHP_2, EMAIL_2, AKIA_2} <= held
    raw_docs = _clear_in(_table(gated, "raw_documents"))
    assert {GHP_3, EMAIL_3} <= raw_docs  # the gate-held document's clear copy is the ingested source
    top = _storage(gated) / VAULT_PREFIX
    modes = {}
    for folder, _, files in os.walk(top):
        modes[folder] = stat.S_IMODE(os.stat(folder).st_mode)
        for f in files:
            modes[os.path.join(folder, f)] = stat.S_IMODE(os.stat(os.path.join(folder, f)).st_mode)
    assert len(modes) >= 5  # vault/, raw_rejects/, leaky/, a part, the manifest
    assert all(m == (DIR_MODE if os.path.isdir(p) else FILE_MODE) for p, m in modes.items()), modes


def test_rejects_describe_the_bytes_the_vault_keeps(gated: Path) -> None:
    rejects = {r["doc_id"]: r for r in _table(gated, "raw_rejects")}
    vault = {r["doc_id"]: r for r in _table(gated, VAULT_PREFIX, "raw_rejects")}
    assert rejects.keys() == vault.keys() and len(rejects) == 4
    for doc_id, row in rejects.items():
        clear = vault[doc_id]["raw"]
        assert (row["raw_bytes"], row["raw_sha256"]) == (len(clear), hashlib.sha256(clear).hexdigest())
        assert row["rule_id"].startswith("read.") and row["reason"]
    undecodable = next(r for r in rejects.values() if r["rule_id"] == "read.undecodable")
    assert value_tag("SECRET", GHP_2) in undecodable["text"]  # a reviewer still sees what kind of thing is there
    malformed = next(r for r in rejects.values() if r["text"] and value_tag("SECRET", AKIA_1) in r["text"])
    assert value_tag("EMAIL", EMAIL_1) in malformed["text"] and value_tag("SECRET", GHP_1) in malformed["text"]


def test_every_record_is_accounted_for_once(gated: Path) -> None:
    from mixassets.engine.readers import doc_id_for

    ids = {doc_id_for(SOURCE, f"data/{SOURCE}.jsonl:{n}") for n in range(1, len(_lines()) + 1)}
    accepted = [r["doc_id"] for r in _table(gated, "gated_documents")]
    held = _table(gated, "quarantine")
    held_ids = [r["doc_id"] for r in held]
    assert len(accepted) == 1 and len(held_ids) == 5
    assert sorted(accepted + held_ids) == sorted(ids)
    assert all(r["rule_id"] and r["reason"] for r in held)
    secret = next(r for r in held if value_tag("SECRET", GHP_3) in (r["text"] or ""))
    assert secret["rule_id"].startswith("pii.") and secret["disposition"] == "quarantined"


def test_review_sheet_shows_redacted_excerpts_only(gated: Path, tmp_path: Path) -> None:
    from mixassets.commands import cmd_review_sample

    out = tmp_path / "sheet.csv"
    args = argparse.Namespace(project=str(gated), source=SOURCE, n=50, seed=0, out=str(out))
    assert cmd_review_sample(args) == 0
    body = out.read_bytes()
    assert not _clear_in(body)
    assert value_tag("SECRET", GHP_3).encode() in body and value_tag("EMAIL", EMAIL_1).encode() in body
    assert body.count(b"\n") == 1 + 6  # header, every record of this small source


def test_provenance_of_an_unreadable_record_names_it_without_its_content(gated: Path) -> None:
    from mixtrain.provenance import render, trace

    rejects = _table(gated, "raw_rejects")
    doc_id = next(r["doc_id"] for r in rejects if r["text"] and value_tag("SECRET", AKIA_1) in r["text"])
    answer = trace(str(_storage(gated)), doc_id)
    assert answer["found"] and answer["unreadable"][0]["locator"] == f"data/{SOURCE}.jsonl:2"
    assert answer["quarantine"][0]["rule_id"] == "read.malformed_record"
    assert not _clear_in(render(answer)) and not _clear_in(json.dumps(answer, default=str))


# -- the pieces on their own ---------------------------------------------------------------------------------------
def test_seal_splits_clear_and_view_row_for_row() -> None:
    import pyarrow as pa

    bad = pa.Table.from_pylist(
        [
            {"doc_id": "d1", "source_id": "s", "locator": "f:1", "disposition": "quarantined",
             "rule_id": "read.malformed_record", "reason": f"f:1: field 'role' is {EMAIL_1!r}",
             "text": f"mail {EMAIL_1}", "raw": f"mail {EMAIL_1}".encode()},
            {"doc_id": "d2", "source_id": "s", "locator": "f:2", "disposition": "quarantined",
             "rule_id": "read.undecodable", "reason": "f:2: not valid UTF-8", "text": None, "raw": None},
        ],
        schema=READ_FAILURE_SCHEMA,
    )  # fmt: skip
    view, sealed = seal_read_failures(bad)
    assert not _clear_in(view.to_pylist()) and EMAIL_1 in sealed.column("text")[0].as_py()
    assert view.column("doc_id").equals(sealed.column("doc_id"))
    assert view.column("raw_bytes").to_pylist() == [len(f"mail {EMAIL_1}"), None]
    assert view.column("text").to_pylist()[1] is None and view.column("reason")[0].as_py().endswith(
        f"{value_tag('EMAIL', EMAIL_1)}'"
    )


def test_a_long_preview_is_cut_after_redaction() -> None:
    raw = b"x " * PREVIEW_CHARS + f"and {GHP_1} at the end \xff".encode("latin-1")
    shown = preview_bytes(raw)
    assert shown is not None and GHP_1[:12] not in shown and shown.endswith("more characters in the vault]")
    assert redact_view(f"a {AKIA_1} b") == f"a {value_tag('SECRET', AKIA_1)} b"
    assert value_tag("EMAIL", EMAIL_1) == f"[EMAIL:sha256:{hashlib.sha256(EMAIL_1.encode()).hexdigest()[:12]}]"
