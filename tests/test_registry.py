from __future__ import annotations

import json

import pyarrow as pa
import pytest

from eval_assets.engine import registry
from eval_assets.tasks import json_signature as js
from mixtrain.schema import EVAL_ITEM_SCHEMA


@pytest.fixture(scope="module")
def humaneval() -> pa.Table:
    return registry.load_humaneval()


def test_humaneval_loads_164_items_in_the_registry_schema(humaneval):
    assert humaneval.schema.equals(EVAL_ITEM_SCHEMA)
    assert humaneval.num_rows == 164
    ids = humaneval.column("item_id").to_pylist()
    assert ids[0] == "HumanEval/0" and len(set(ids)) == 164
    first = humaneval.slice(0, 1).to_pylist()[0]
    assert first["eval_set"] == "humaneval" and first["version"] == "1"
    assert "def has_close_elements" in first["prompt"]
    screen = json.loads(first["screen_fields"])
    assert screen == {"prompt": first["prompt"], "solution": first["reference"]}
    assert json.loads(first["metadata"])["entry_point"] == "has_close_elements"


def test_humaneval_checksums_are_stable_and_content_sensitive(humaneval):
    again = registry.load_humaneval()
    assert again.column("checksum").to_pylist() == humaneval.column("checksum").to_pylist()
    assert registry.registry_checksum(again) == registry.registry_checksum(humaneval)
    assert len(set(humaneval.column("checksum").to_pylist())) == 164
    # The version is part of an item: bumping it changes every checksum and the registry checksum.
    bumped = registry.load_humaneval(limit=3, version="2")
    assert not set(bumped.column("checksum").to_pylist()) & set(humaneval.column("checksum").to_pylist())
    limited = registry.load_humaneval(limit=3)
    assert limited.column("checksum").to_pylist() == humaneval.column("checksum").to_pylist()[:3]


def test_registry_checksum_ignores_row_order(humaneval):
    part = humaneval.slice(0, 10)
    reversed_part = part.take(list(range(9, -1, -1)))
    assert registry.registry_checksum(part) == registry.registry_checksum(reversed_part)
    assert registry.registry_checksum(part) != registry.registry_checksum(humaneval.slice(0, 9))


def _item(i: int) -> dict:
    src = f"def f{i}(a, b={i}):\n    return a\n"
    return {
        "id": f"mod.f{i}",
        "messages": js.prompt_messages(src),
        "reference": js.reference(src),
        "screen": {"code": src},
        "metadata": {"module": "mod"},
    }


def test_jsonl_eval_set_round_trips_messages_and_reference(tmp_path):
    path = tmp_path / "holdout.jsonl"
    path.write_text("".join(json.dumps(_item(i)) + "\n" for i in range(4)) + "\n")
    table = registry.load_jsonl_eval_set("signature_holdout", str(path), "1")
    assert table.schema.equals(EVAL_ITEM_SCHEMA)
    assert table.num_rows == 4
    row = table.slice(1, 1).to_pylist()[0]
    assert row["item_id"] == "mod.f1" and row["eval_set"] == "signature_holdout"
    assert json.loads(row["prompt"]) == _item(1)["messages"]
    assert json.loads(row["reference"]) == _item(1)["reference"]
    assert json.loads(row["screen_fields"]) == {"code": _item(1)["screen"]["code"]}
    assert registry.load_jsonl_eval_set("signature_holdout", str(path), "1", limit=2).num_rows == 2
    again = registry.load_jsonl_eval_set("signature_holdout", str(path), "1")
    assert registry.registry_checksum(again) == registry.registry_checksum(table)


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"id": "x", "messages": [', r"holdout\.jsonl:3: not valid JSON"),
        ('["not", "an", "object"]', r"holdout\.jsonl:3: expected a JSON object"),
        ('{"id": "x", "messages": []}', r"holdout\.jsonl:3: missing field\(s\) \['reference', 'screen'\]"),
        ('{"id": "x", "messages": "hi", "reference": {}, "screen": {}}', r"holdout\.jsonl:3: field 'messages'"),
        (json.dumps(_item(0)), r"holdout\.jsonl:3: duplicate id 'mod\.f0' \(first on line 1\)"),
    ],
)
def test_malformed_jsonl_line_names_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "holdout.jsonl"
    path.write_text(json.dumps(_item(0)) + "\n" + json.dumps(_item(1)) + "\n" + bad_line + "\n")
    with pytest.raises(registry.EvalRegistryError, match=message):
        registry.load_jsonl_eval_set("signature_holdout", str(path), "1")


def test_undecodable_line_and_missing_file_are_named(tmp_path):
    path = tmp_path / "holdout.jsonl"
    path.write_bytes(json.dumps(_item(0)).encode() + b'\n{"id": "caf\xe9"}\n')
    with pytest.raises(registry.EvalRegistryError, match=r"holdout\.jsonl:2: not valid UTF-8"):
        registry.load_jsonl_eval_set("s", str(path), "1")
    with pytest.raises(registry.EvalRegistryError, match=r"missing\.jsonl: cannot open"):
        registry.load_jsonl_eval_set("s", str(tmp_path / "missing.jsonl"), "1")


def test_eval_set_path_and_loader_follow_the_set_type(tmp_path):
    from mixtrain.config.evaluation import EvalSetSpec

    (tmp_path / "holdout.jsonl").write_text("".join(json.dumps(_item(i)) + "\n" for i in range(3)))

    def resolve(path: str) -> str:
        return str(tmp_path / path)

    jsonl = EvalSetSpec(id="sig", type="jsonl", path="holdout.jsonl", task="json_signature", version="2", limit=2)
    assert registry.eval_set_path(jsonl, resolve) == str(tmp_path / "holdout.jsonl")
    table = registry.load_eval_set(jsonl, resolve)
    expected = registry.load_jsonl_eval_set("sig", str(tmp_path / "holdout.jsonl"), "2", 2)
    assert table.equals(expected) and table.num_rows == 2

    he = EvalSetSpec(id="he", type="humaneval", limit=3)
    assert registry.eval_set_path(he, resolve) == registry.humaneval_path()
    assert registry.load_eval_set(he, resolve).equals(registry.load_humaneval(3, set_id="he"))

    with pytest.raises(registry.EvalRegistryError, match="eval set 'nopath': type jsonl needs a path"):
        registry.eval_set_path(EvalSetSpec(id="nopath", type="jsonl"), resolve)
