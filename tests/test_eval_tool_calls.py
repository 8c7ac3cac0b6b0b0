from __future__ import annotations

import json

import pytest

from eval_assets.engine import tool_calls as tc

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "default": "celsius"},
                "days": {"type": "integer", "default": 1},
            },
            "required": ["city"],
        },
    },
}
REF = {"calls": [{"name": "get_weather", "arguments": {"city": ["Paris", "Paris, France"], "unit": ["celsius"]}}]}


def call(name, **arguments):
    return {"name": name, "arguments": arguments}


def score(pred, ref=REF, tools=None, **kw):
    return tc.score_tool_item(pred, ref, item_id="it", tools=tools, **kw)


# --- value matching ---


@pytest.mark.parametrize(
    ("pred", "exp", "ok"),
    [
        (2, 2.0, True),
        (2.0, 2, True),
        (True, 1, False),
        (1, True, False),
        ("2", 2, False),
        ("New-York City", "new york city", True),
        ("Paris.", "paris", True),
        ("Pariss", "paris", False),
        ([1, 2], [1, 2], True),
        ([2, 1], [1, 2], False),
        ([1, 2], [1, 2, 3], False),
        ({"a": [1, "X"]}, {"a": [1.0, "x"]}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        (None, None, True),
        (None, "", False),
    ],
)
def test_match_value(pred, exp, ok):
    assert tc.match_value(pred, exp) is ok


# --- parsing ---


def test_parse_tool_calls_counts_errors_without_raising():
    text = (
        'Let me check. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n'
        "<tool_call>{not json}</tool_call>"
        '<tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call>'
        '<tool_call>{"arguments": {}}</tool_call>'
        '<tool_call>{"name": "cut", "arguments": {"a": '
    )
    calls, errors = tc.parse_tool_calls(text)
    assert calls == [call("get_weather", city="Paris"), call("f", x=1)]
    assert len(errors) == 3
    assert "block 2" in errors[0] and "parse error" in errors[0]
    assert "block 4" in errors[1] and "name" in errors[1]
    assert "block 5" in errors[2] and "closing" in errors[2]
    assert tc.parse_tool_calls("plain answer, no tools") == ([], [])


# --- scoring ---


def test_correct_call_with_acceptable_alternative_value():
    item, args = score([call("get_weather", city="paris, france", unit="Celsius")])
    assert item["correct"] and item["selection_correct"] and item["arg_accuracy"] == 1.0
    assert [a["argument"] for a in args] == ["city", "unit"] and all(a["correct"] for a in args)


def test_wrong_function_name():
    item, args = score([call("get_forecast", city="Paris", unit="celsius")])
    assert not item["selection_correct"] and not item["correct"]
    assert item["args_correct"] == 0 and {a["reason"] for a in args} == {"call not made"}
    assert "get_forecast" in item["reason"]


def test_wrong_value_is_explained_per_argument():
    item, args = score([call("get_weather", city="Lyon", unit="celsius")])
    assert item["selection_correct"] and not item["correct"]
    assert item["arg_accuracy"] == pytest.approx(0.5)
    bad = next(a for a in args if not a["correct"])
    assert bad["argument"] == "city" and json.loads(bad["predicted"]) == "Lyon"
    assert "get_weather.city" in item["reason"]


def test_omitted_argument_is_wrong_unless_optional():
    item, _ = score([call("get_weather", city="Paris")])
    assert not item["correct"] and "omitted" in item["reason"]
    ref = {"calls": [{**REF["calls"][0], "optional": ["unit"]}]}
    assert score([call("get_weather", city="Paris")], ref)[0]["correct"]
    # the tool definition does not require unit: omission is fine, and so is spelling out its default
    assert score([call("get_weather", city="Paris")], tools=[WEATHER_TOOL])[0]["correct"]
    item, _ = score([call("get_weather", city="Paris", unit="celsius", days=1)], tools=[WEATHER_TOOL])
    assert item["correct"]
    item, _ = score([call("get_weather", city="Paris", unit="celsius", days=3)], tools=[WEATHER_TOOL])
    assert not item["correct"] and "unexpected argument" in item["reason"]


def test_required_argument_stays_required_with_tool_definition():
    ref = {"calls": [{"name": "get_weather", "arguments": {"city": ["Paris"]}}]}
    item, _ = score([call("get_weather", unit="celsius")], ref, tools=[WEATHER_TOOL])
    assert not item["correct"] and "city" in item["reason"]


def test_unexpected_argument_fails_without_definition():
    item, args = score([call("get_weather", city="Paris", unit="celsius", verbose=True)])
    assert not item["correct"]
    assert args[-1]["argument"] == "verbose" and args[-1]["reason"] == "unexpected argument"
    assert item["args_total"] == 3


def test_list_argument_is_order_sensitive():
    ref = {"calls": [{"name": "sort", "arguments": {"xs": [[3, 1, 2]]}}]}
    assert score([call("sort", xs=[3, 1, 2])], ref)[0]["correct"]
    assert not score([call("sort", xs=[1, 2, 3])], ref)[0]["correct"]
    assert score([call("sort", xs=[3.0, 1, 2])], ref)[0]["correct"]


def test_parallel_calls_match_in_any_order_and_count_extra_calls():
    ref = {
        "calls": [
            {"name": "get_weather", "arguments": {"city": ["Paris"]}},
            {"name": "get_weather", "arguments": {"city": ["Rome"]}},
        ]
    }
    pred = [call("get_weather", city="Rome"), call("get_weather", city="Paris")]
    item, _ = score(pred, ref)
    assert item["correct"] and item["args_correct"] == 2
    item, _ = score([*pred, call("get_weather", city="Oslo")], ref)
    assert not item["correct"] and not item["selection_correct"]
    item, _ = score(pred[:1], ref)
    assert not item["correct"] and item["args_correct"] == 1 and item["args_total"] == 2


def test_irrelevance_items():
    ref = {"calls": []}
    item, args = score([], ref)
    assert item["irrelevance"] and item["correct"] and args == [] and item["arg_accuracy"] is None
    item, _ = score([call("get_weather", city="Paris")], ref)
    assert not item["correct"] and "expected no call" in item["reason"]


def test_parse_error_makes_item_incorrect():
    item, _ = score([call("get_weather", city="Paris", unit="celsius")], parse_errors=1)
    assert not item["correct"] and item["selection_correct"] and "parse" in item["reason"]


def test_check_tool_reference_for_registry_validation():
    assert tc.check_tool_reference("a", REF) is None
    assert tc.check_tool_reference("a", {"calls": []}) is None
    assert "'b'" in tc.check_tool_reference("b", {"calls": [{"arguments": {}}]})
    assert "optional" in tc.check_tool_reference("c", {"calls": [{"name": "f", "optional": "unit"}]})
    assert "'calls'" in tc.check_tool_reference("d", ["not", "a", "spec"])


def test_bad_reference_spec_names_item_and_field():
    with pytest.raises(tc.ToolSpecError, match=r"'it'.*calls\[0\]\.arguments\.city"):
        score([], {"calls": [{"name": "f", "arguments": {"city": "Paris"}}]})
    with pytest.raises(tc.ToolSpecError, match="calls"):
        score([], {"call": []})
    with pytest.raises(tc.ToolSpecError, match="predicted call 0"):
        score([{"arguments": {}}])
    with pytest.raises(tc.ToolSpecError, match=r"tools\[0\]"):
        score([], tools=[{"parameters": {}}])


def test_tables_and_summary_from_raw_text_and_parsed_calls():
    ids = ["ok", "wrong", "irrelevant-ok", "irrelevant-bad", "broken"]
    outputs = [
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}</tool_call>',
        [call("get_weather", city="Oslo", unit="celsius")],
        "I can't help with that using these tools.",
        [call("get_weather", city="Paris")],
        "<tool_call>{oops</tool_call>",
    ]
    refs = [REF, REF, {"calls": []}, {"calls": []}, REF]
    items, args = tc.score_tool_calls(ids, outputs, refs)
    assert items.schema == tc.TOOL_ITEM_SCHEMA and args.schema == tc.TOOL_ARG_SCHEMA
    rows = {r["item_id"]: r for r in items.to_pylist()}
    assert rows["broken"]["parse_errors"] == 1 and "block 1" in rows["broken"]["reason"]
    s = tc.summarise_tool_calls(items)
    assert s["n"] == 5 and s["n_irrelevance"] == 2
    assert s["accuracy"] == pytest.approx(2 / 5)
    assert s["call_accuracy"] == pytest.approx(1 / 3)
    assert s["arg_accuracy"] == pytest.approx(3 / 6)  # ok: 2/2, wrong: 1/2, broken: 0/2
    assert s["irrelevance_accuracy"] == pytest.approx(1 / 2)
    assert s["selection_accuracy"] == pytest.approx(3 / 5)
    assert s["parse_error_rate"] == pytest.approx(1 / 5)
    assert set(args.column("item_id").to_pylist()) == {"ok", "wrong", "broken"}
