from __future__ import annotations

import json
import textwrap

import jsonschema
import pytest

from eval_assets.tasks import json_signature as js

METHOD = textwrap.dedent(
    '''
    def fetch(self, key, /, default=None, *args, retries=3, strict, **options):
        """Nested scopes must not count as the function's own return or raise."""
        def helper():
            return 1
        check = lambda x: x
        class Inner:
            def m(self):
                raise ValueError
        if key is None:
            return
        print(key)
    '''
)


def test_reference_covers_posonly_defaults_star_args_kwonly_and_kwargs():
    ref = js.reference(METHOD)
    assert ref == {
        "name": "fetch",
        "params": ["self", "key", "default", "retries", "strict"],
        "defaults": 2,  # default=None and retries=3; strict is keyword-only without a default
        "varargs": True,
        "kwargs": True,
        "returns_value": False,  # the bare return does not count, nor the nested helper's return 1
        "raises": False,  # the raise is inside a nested class
    }
    jsonschema.validate(ref, js.ANSWER_SCHEMA)


def test_reference_counts_return_value_and_raise_in_own_body():
    src = "def f(a, b=2):\n    if a:\n        raise TypeError(a)\n    return None\n"
    assert js.reference(src) == {
        "name": "f",
        "params": ["a", "b"],
        "defaults": 1,
        "varargs": False,
        "kwargs": False,
        "returns_value": True,
        "raises": True,
    }


def test_reference_rejects_source_without_exactly_one_def():
    with pytest.raises(ValueError, match="exactly one"):
        js.reference("x = 1\n")


def test_extract_functions_reads_stdlib_files_and_skips_decorated_and_long(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(
        textwrap.dedent(
            """
            import functools

            def short(a, b=1):
                return a + b

            @functools.cache
            def decorated(x):
                return x

            def too_long(x):
                y = x
                y += 1
                y += 2
                y += 3
                return y

            class K:
                def method(self, *args):
                    return args

                @property
                def prop(self):
                    return 1

            def short(a):
                return a
            """
        )
    )
    items = js.extract_functions(["pkg.mod"], max_lines=4, root=str(tmp_path))
    assert [i.item_id for i in items] == ["pkg.mod.short", "pkg.mod.K.method"]
    # Method source is dedented so it parses on its own; the first definition of a repeated name wins.
    assert items[1].source.startswith("def method(self, *args):")
    assert js.reference(items[0])["params"] == ["a", "b"]
    assert js.reference(items[1])["varargs"] is True
    with pytest.raises(js.SourceNotFound, match=r"pkg\.nope"):
        js.extract_functions(["pkg.nope"], max_lines=4, root=str(tmp_path))


def test_extract_functions_on_installed_stdlib_is_deterministic():
    a = js.extract_functions(["reprlib", "genericpath"], max_lines=10, max_chars=330)
    b = js.extract_functions(["reprlib", "genericpath"], max_lines=10, max_chars=330)
    assert a == b and len(a) > 5
    assert all(len(i.source) <= 330 and i.end_lineno - i.lineno < 10 for i in a)
    # Every extracted source yields a schema-valid reference.
    for item in a:
        jsonschema.validate(js.reference(item), js.ANSWER_SCHEMA)


def test_prompt_messages_carry_the_schema_and_code():
    msgs = js.prompt_messages("def f(x):\n    return x\n")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert json.dumps(js.ANSWER_SCHEMA, separators=(",", ":")) in msgs[1]["content"]
    assert "def f(x):\n    return x\n```" in msgs[1]["content"]


REF = js.reference("def f(a, b=2):\n    return a\n")


def test_score_exact_answer_and_fenced_answer_with_prose():
    assert js.score(js.format_answer(REF), REF) == {
        "json_valid": True,
        "schema_valid": True,
        "field_accuracy": 1.0,
        "exact_match": True,
    }
    fenced = f"Sure! Here it is:\n```json\n{json.dumps(REF, indent=2)}\n```\nHope that helps {{:"
    assert js.score(fenced, REF)["exact_match"] is True


def test_score_invalid_json_is_zero():
    s = js.score('{"name": "f", "params": [', REF)
    assert s == {"json_valid": False, "schema_valid": False, "field_accuracy": 0.0, "exact_match": False}
    assert js.score("no json here", REF)["json_valid"] is False
    assert js.score("[1, 2]", REF)["json_valid"] is False  # an array is not an object


def test_score_schema_invalid_json_gets_partial_field_credit():
    pred = dict(REF, defaults="1", extra=True)  # wrong type and an extra key
    s = js.score(json.dumps(pred), REF)
    assert s["json_valid"] is True and s["schema_valid"] is False
    assert s["field_accuracy"] == pytest.approx(6 / 7)
    assert s["exact_match"] is False


def test_score_does_not_confuse_bool_and_int():
    pred = dict(REF, defaults=True)  # True == 1 in Python, but it is not the count 1
    assert js.score(json.dumps(pred), REF)["field_accuracy"] == pytest.approx(6 / 7)
    missing = {k: v for k, v in REF.items() if k != "raises"}
    s = js.score(json.dumps(missing), REF)
    assert s["schema_valid"] is False and s["field_accuracy"] == pytest.approx(6 / 7)


def test_split_is_deterministic_and_stable_under_added_items():
    items = js.extract_functions(["reprlib", "genericpath", "shlex"], max_lines=14)
    train, hold = js.split(items, 0.3, seed=0)
    assert js.split(items, 0.3, seed=0) == (train, hold)
    assert {i.item_id for i in train}.isdisjoint(i.item_id for i in hold)
    assert len(train) + len(hold) == len(items) and 0 < len(hold) < len(items)
    # Removing a module does not move any other item across the split.
    fewer = [i for i in items if i.module != "shlex"]
    _, hold_fewer = js.split(fewer, 0.3, seed=0)
    assert hold_fewer == [i for i in hold if i.module != "shlex"]
    # A different seed gives a different split; shares 0 and 1 are all-train and all-holdout.
    assert js.split(items, 0.3, seed=1)[1] != hold
    assert js.split(items, 0.0, seed=0)[1] == [] and js.split(items, 1.0, seed=0)[0] == []
    with pytest.raises(ValueError):
        js.split(items, 1.5, seed=0)
