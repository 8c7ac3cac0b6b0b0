from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from eval_assets.engine import metrics as m
from eval_assets.engine import registry
from eval_assets.engine.evaluate import _percentile
from eval_assets.tasks import json_signature as js

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "n": {"type": "integer"}, "ok": {"type": "boolean"}},
    "required": ["name", "n", "ok"],
    "additionalProperties": False,
}
REF = {"name": "f", "n": 2, "ok": True}


# --- percentile / latency ---


@pytest.mark.parametrize("q", [0.0, 0.1, 0.5, 0.95, 1.0])
def test_percentile_agrees_with_evaluate_helper(q):
    values = [0.3, 1.7, 0.2, 5.0, 2.2, 2.2, 0.9]
    assert m.percentile(values, q) == pytest.approx(_percentile(values, q))


def test_percentile_rejects_percent_scale_and_is_nan_when_empty():
    assert math.isnan(m.percentile([], 0.5))
    with pytest.raises(ValueError, match="fraction"):
        m.percentile([1.0], 95)


def test_latency_summary_uses_wall_time_for_batched_throughput():
    # Two batches of two requests: each request reports its batch's latency.
    lat = [1.0, 1.0, 3.0, 3.0]
    tokens = [10, 10, 20, 20]
    s = m.latency_summary(lat, tokens, wall_s=4.0)
    assert s["latency_p50_s"] == pytest.approx(2.0)
    assert s["latency_p95_s"] == pytest.approx(3.0)
    assert s["latency_max_s"] == 3.0
    assert s["tokens_per_s"] == pytest.approx(60 / 4.0)
    sequential = m.latency_summary(lat, tokens)
    assert sequential["tokens_per_s"] == pytest.approx(60 / 8.0)
    with pytest.raises(ValueError, match="token counts"):
        m.latency_summary(lat, [1, 2])
    with pytest.raises(ValueError, match="finite"):
        m.latency_summary([1.0, -1.0])


# --- JSON extraction ---


def test_extract_json_strict_fenced_and_embedded():
    assert m.extract_json('{"a": 1}') == ({"a": 1}, True, None)
    assert m.extract_json('```json\n{"a": 1}\n```') == ({"a": 1}, True, None)
    value, strict, err = m.extract_json('Sure! Here it is: {"a": 1} hope that helps {"b": 2}')
    assert value == {"a": 1} and strict is False and err is None
    # a broken first object is skipped in favour of the next parseable one
    assert m.extract_json('{"a": } then {"b": 2}')[0] == {"b": 2}
    value, strict, err = m.extract_json("no json here")
    assert value is None and not strict and "not JSON" in err
    value, _, err = m.extract_json('{"a": ')
    assert value is None and "parse error" in err


def test_extract_json_respects_expected_kind():
    assert m.extract_json('[1, 2] and {"a": 1}', (dict,))[0] == {"a": 1}
    assert m.extract_json('[1, 2] and {"a": 1}', (list,))[0] == [1, 2]
    assert m.extract_json("42", (object,)) == (42, True, None)


def test_values_equal_is_type_aware():
    assert m.values_equal(2, 2.0)
    assert not m.values_equal(True, 1)
    assert not m.values_equal(1, True)
    assert not m.values_equal("2", 2)
    assert not m.values_equal([1, 2], [2, 1])
    assert m.values_equal({"a": [1, {"b": False}]}, {"a": [1.0, {"b": False}]})
    assert not m.values_equal({"a": 1, "x": 0}, {"a": 1})


# --- structured scoring ---


def test_structured_row_for_a_correct_answer_in_prose():
    row = m.score_structured_output('Answer: {"name": "f", "n": 2, "ok": true}', REF, SCHEMA, item_id="i1")
    assert row["json_valid"] and not row["json_strict"]
    assert row["schema_valid"] is True and row["schema_error"] is None
    assert row["field_accuracy"] == 1.0 and row["exact_match"] and row["wrong_fields"] == []


def test_structured_row_explains_partial_answer():
    row = m.score_structured_output('{"name": "f", "n": 3, "ok": 1}', REF, SCHEMA, item_id="i2")
    assert row["json_strict"]
    assert row["fields_correct"] == 1 and row["fields_total"] == 3
    assert row["field_accuracy"] == pytest.approx(1 / 3)
    assert sorted(row["wrong_fields"]) == ["n", "ok"]
    assert row["schema_valid"] is False and "ok" in row["schema_error"]
    assert not row["exact_match"]


def test_extra_key_keeps_fields_but_loses_exact_match_and_schema():
    row = m.score_structured_output('{"name": "f", "n": 2, "ok": true, "extra": 0}', REF, SCHEMA)
    assert row["field_accuracy"] == 1.0
    assert not row["exact_match"]
    assert row["schema_valid"] is False


def test_unparseable_output_scores_zero_with_reason():
    row = m.score_structured_output("I don't know", REF, SCHEMA, item_id="i3")
    assert not row["json_valid"] and row["schema_valid"] is False
    assert row["field_accuracy"] == 0.0 and row["error"]


def test_no_or_broken_schema_is_not_charged_to_the_model():
    assert m.score_structured_output(json.dumps(REF), REF)["schema_valid"] is None
    row = m.score_structured_output(json.dumps(REF), REF, {"type": "objekt"}, item_id="bad-item")
    assert row["schema_valid"] is None
    assert "bad-item" in row["error"] and "invalid JSON Schema" in row["error"]
    assert row["exact_match"]


def test_check_item_schema_names_the_item_and_uses_declared_draft():
    assert m.check_item_schema("ok", SCHEMA) is None
    assert m.check_item_schema("ok-bool", True) is None
    msg = m.check_item_schema("set/item-7", {"type": "object", "properties": {"a": {"minimum": "zero"}}})
    assert "set/item-7" in msg and "properties/a/minimum" in msg
    assert "set/item-8" in m.check_item_schema("set/item-8", ["not", "a", "schema"])
    # exclusiveMaximum was a boolean in draft 4 and a number later: the declared draft decides.
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 3, "exclusiveMaximum": True}
    assert m.check_item_schema("d4", draft4) is None
    assert m.check_item_schema("d2020", {k: v for k, v in draft4.items() if k != "$schema"}) is not None
    errors = m.check_item_schemas([("a", SCHEMA), ("b", {"type": 5}), ("c", {"required": "x"})])
    assert [e.split("'")[1] for e in errors] == ["b", "c"]


def test_scalar_and_list_references():
    assert m.score_structured_output("42", 42)["exact_match"]
    assert not m.score_structured_output("43", 42)["exact_match"]
    row = m.score_structured_output("the list is [1, 2, 3].", [1, 2, 3])
    assert row["exact_match"] and row["field_accuracy"] == 1.0 and not row["json_strict"]


def test_unknown_field_selection_is_an_error():
    with pytest.raises(ValueError, match="i9"):
        m.score_structured_output("{}", REF, fields=["nope"], item_id="i9")


def test_table_and_summary():
    outputs = [json.dumps(REF), 'x {"name": "g", "n": 2, "ok": true}', "nothing"]
    table = m.score_structured_outputs(["a", "b", "c"], outputs, [REF] * 3, SCHEMA)
    assert table.schema == m.STRUCTURED_ITEM_SCHEMA
    s = m.summarise_structured(table)
    assert s["n"] == 3
    assert s["json_valid_rate"] == pytest.approx(2 / 3)
    assert s["json_strict_rate"] == pytest.approx(1 / 3)
    assert s["schema_valid_rate"] == pytest.approx(2 / 3)
    assert s["exact_match"] == pytest.approx(1 / 3)
    assert s["field_accuracy"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    with pytest.raises(ValueError, match="schemas"):
        m.score_structured_outputs(["a"], ["{}"], [REF], [SCHEMA, SCHEMA])


def test_agrees_with_json_signature_scorer_on_its_fields():
    ref = js.reference("def f(a, b=2):\n    return a\n")
    outputs = [
        js.format_answer(ref),
        "Here: " + js.format_answer({**ref, "defaults": 0}),
        '{"name": "f", "params": ["a", "b"], "defaults": true}',
        "no idea",
    ]
    for out in outputs:
        old = js.score(out, ref)
        new = m.score_structured_output(out, ref, js.ANSWER_SCHEMA)
        assert new["json_valid"] == old["json_valid"]
        assert bool(new["schema_valid"]) == old["schema_valid"]
        assert new["field_accuracy"] == pytest.approx(old["field_accuracy"])
        assert new["exact_match"] == old["exact_match"]


def test_registry_items_with_per_item_and_default_schema(tmp_path):
    path = tmp_path / "set.jsonl"
    lines = [
        {
            "id": "own",
            "messages": [{"role": "user", "content": "q"}],
            "reference": REF,
            "screen": {"q": "q"},
            "metadata": {"schema": {"type": "object", "required": ["zzz"]}},
        },
        {"id": "default", "messages": [{"role": "user", "content": "q"}], "reference": REF, "screen": {"q": "q"}},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    items = registry.load_jsonl_eval_set("s", str(path), "1")
    table = m.score_structured_registry_items(items, [json.dumps(REF)] * 2, default_schema=SCHEMA)
    rows = {r["item_id"]: r for r in table.to_pylist()}
    assert rows["own"]["schema_valid"] is False and "zzz" in rows["own"]["schema_error"]
    assert rows["default"]["schema_valid"] is True


# --- stability ---


def test_stability_all_agree_and_pairwise():
    groups = {
        "same": ["Paris", "paris.", "  PARIS "],
        "two_of_three": ["42", "42", "41"],
        "all_differ": ["a", "b", "c"],
        "single": ["x"],
    }
    table, s = m.prompt_variant_stability(groups)
    rows = {r["group"]: r for r in table.to_pylist()}
    assert rows["same"]["all_agree"] and rows["same"]["pairwise_agreement"] == 1.0
    assert rows["two_of_three"]["pairwise_agreement"] == pytest.approx(1 / 3)
    assert rows["two_of_three"]["majority_answer"] == "42"
    assert rows["all_differ"]["pairwise_agreement"] == 0.0 and rows["all_differ"]["n_distinct"] == 3
    assert rows["single"]["all_agree"] is None and "at least 2" in rows["single"]["error"]
    assert s["n_groups"] == 3 and s["n_skipped"] == 1
    assert s["agreement_rate"] == pytest.approx(1 / 3)
    assert s["mean_pairwise_agreement"] == pytest.approx((1 + 1 / 3 + 0) / 3)


def test_group_outputs_and_custom_normaliser():
    grouped = m.group_outputs(["t1", "t2", "t1"], ["A", "b", "a"])
    assert grouped == {"t1": ["A", "a"], "t2": ["b"]}
    _, strict = m.prompt_variant_stability({"t1": ["A", "a"]}, normalise=lambda s: s)
    assert strict["agreement_rate"] == 0.0
    with pytest.raises(ValueError):
        m.group_outputs(["t1"], [])


def test_summary_of_empty_table_is_nan_not_crash():
    empty = pa.Table.from_pylist([], schema=m.STRUCTURED_ITEM_SCHEMA)
    s = m.summarise_structured(empty)
    assert s["n"] == 0 and np.isnan(s["field_accuracy"])
