"""Evaluation tasks from a real plugin: the README's example task (and a few more) in a module on ``sys.path``,
registered by a distribution's ``entry_points.txt`` or by import path in ``evaluation.tasks``. The task scores
items from generations without a model, runs in an evaluation of the tiny model with its metric compared like a
built-in one, fails per item rather than per run, is checked where it is registered, and is in the fingerprints."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from eval_assets.engine import task_plugins
from eval_assets.engine.evaluate import Generation
from eval_assets.engine.live import _NOT_IN_ROWS, run_fingerprint
from eval_assets.engine.registry import load_jsonl_eval_set
from eval_assets.engine.reporting import eval_settings, suite_items
from eval_assets.engine.suites import RUN_ITEM_SCHEMA, EvalSettings
from eval_assets.engine.task_plugins import score_task, suite_table, summarise_task, task_fingerprints
from mixtrain.config.evaluation import EVAL_TASKS_GROUP
from mixtrain.config.plugins import PluginError
from mixtrain.identity import canonical_json
from mixtrain.project import Project, ProjectError
from tests.plugin_dist import PluginDist, readme_example

EXTRAS = """

class ReplyLength(EvalTask):
    version, higher_is_better = 2, False

    def score(self, item, output):
        if item.metadata.get("explode"):
            raise RuntimeError("boom")
        return TaskScore(len(output), details={"chars": len(output)})


class Words(EvalTask):
    def score(self, item, output):
        return "yes"


class Infinite(EvalTask):
    def score(self, item, output):
        return float("inf")


class Unfinished(EvalTask):
    pass


NOT_A_TASK = [1, 2]
"""
CONTAINS = ("contains_answer", "mytasks:ContainsAnswer")


@pytest.fixture
def dist(tmp_path, monkeypatch):
    d = PluginDist(tmp_path / "site", monkeypatch)
    d.module("mytasks", readme_example("**Your own evaluation tasks.**") + EXTRAS)
    task_plugins.installed.cache_clear()
    yield d
    d.forget()
    task_plugins.installed.cache_clear()


@pytest.fixture
def trivia(tmp_path) -> pa.Table:
    """Three items in the layout of every task holdout, loaded by the registry like any JSON-lines eval set."""
    items = [
        ("capital", "What is the capital of France?", "Paris", {}),
        ("river", "Which river flows through Vienna?", "Danube", {}),
        ("moon", "Who walked on the moon first?", "Armstrong", {"explode": True}),
    ]
    path = tmp_path / "trivia.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": i,
                    "messages": [{"role": "user", "content": q}],
                    "reference": a,
                    "screen": {"prompt": q},
                    "metadata": meta,
                }
            )
            + "\n"
            for i, q, a, meta in items
        )
    )
    return load_jsonl_eval_set("trivia", str(path), "1")


def test_the_readme_task_scores_items_from_generations_without_a_model(dist, trivia):
    suite = suite_table([CONTAINS])["contains_answer"]
    assert [m.name for m in suite.item_metrics] == ["contains_answer_score"] and suite.generates
    gens = [Generation("The capital is PARIS.", prompt_tokens=20), Generation("Rhine"), Generation("", error="oom")]
    task = task_plugins.plugin_tasks([CONTAINS])["contains_answer"][0]
    table = score_task("contains_answer", task, trivia, gens, model_label="m")
    assert table.schema.equals(RUN_ITEM_SCHEMA)
    rows = table.to_pylist()
    assert [(r["suite"], r["item_id"], r["task_score"]) for r in rows] == [
        ("contains_answer", "capital", 1.0),
        ("contains_answer", "river", 0.0),
        ("contains_answer", "moon", 0.0),
    ]
    assert [r["reason"] for r in rows] == [None, "'danube' not in the reply", "generation failed: oom"]
    assert rows[0]["length_bucket"] == "<=128" and rows[2]["error"] == "oom"
    assert suite.summarise(table)["contains_answer_score"] == pytest.approx(1 / 3)


def test_a_score_that_fails_is_that_items_error(dist, trivia):
    tasks = task_plugins.plugin_tasks([("reply_length", "mytasks:ReplyLength"), ("words", "mytasks:Words")])
    gens = [Generation("abc"), Generation("abcdef"), Generation("x")]
    rows = score_task("reply_length", tasks["reply_length"][0], trivia, gens).to_pylist()
    assert [(r["task_score"], r["details"], r["error"]) for r in rows] == [
        (3.0, '{"chars": 3}', None),
        (6.0, '{"chars": 6}', None),
        (0.0, None, "scoring failed: RuntimeError('boom')"),
    ]
    summary = summarise_task("reply_length_score", score_task("reply_length", tasks["reply_length"][0], trivia, gens))
    assert summary["reply_length_score"] == pytest.approx(3.0)
    words = score_task("words", tasks["words"][0], trivia, gens).to_pylist()
    assert "score() returned the str 'yes', not a number or a TaskScore" in words[0]["error"]
    inf = task_plugins.plugin_tasks([("inf", "mytasks:Infinite")])["inf"][0]
    assert "not a finite number" in score_task("inf", inf, trivia, gens).to_pylist()[0]["error"]


def test_an_installed_task_runs_in_an_evaluation_and_is_compared(dist, trivia, tiny_model_dir):
    pytest.importorskip("torch")
    from eval_assets.engine.comparison import run_evaluation

    dist.distribution("mytasks", {EVAL_TASKS_GROUP: {"reply_length": "mytasks:ReplyLength"}})
    settings = EvalSettings(max_new_tokens=4, batch_size=4, n_resamples=50)
    models = {"base": (str(tiny_model_dir), None), "again": (str(tiny_model_dir), None)}
    run = run_evaluation(models, "base", {"reply_length": trivia}, settings)
    assert not run.problems
    rows = run.items.to_pylist()
    assert len(rows) == 6 and {r["suite"] for r in rows} == {"reply_length"}
    for r in rows:  # the model's real reply reached the task
        expected = 0.0 if r["item_id"] == "moon" else float(len(r["output"]))
        assert r["task_score"] == expected and (r["error"] is None) == (r["item_id"] != "moon")
    summary = {(r["model"], r["metric"], r["slice"]): r["value"] for r in run.summary.to_pylist()}
    assert summary[("base", "reply_length_score", "all")] == pytest.approx(sum(r["task_score"] for r in rows) / 6)
    compared = [r for r in run.comparison.to_pylist() if r["metric"] == "reply_length_score" and r["slice"] == "all"]
    assert len(compared) == 1 and compared[0]["paired"] and compared[0]["diff"] == 0  # the same model twice
    assert compared[0]["higher_is_better"] is False


def test_loaded_tasks_are_checked_naming_where_they_were_registered(dist):
    for path, expected in [
        ("mytasks:NOT_A_TASK", "the list [1, 2] is not an EvalTask"),
        ("mytasks:Unfinished", "is abstract (it does not define score)"),
        ("mytasks:TaskScore", "is not a subclass of eval_assets.engine.task_plugins.EvalTask"),
    ]:
        with pytest.raises(PluginError) as err:
            suite_table([("mine", path)])
        assert f"field 'evaluation.tasks.mine' ('{path}'): " in str(err.value) and expected in str(err.value)
    dist.distribution("mytasks", {EVAL_TASKS_GROUP: {"structured": "mytasks:ContainsAnswer"}})
    task_plugins.installed.cache_clear()  # entry points are read once per process
    with pytest.raises(PluginError, match=r"entry point 'structured = .*'structured' is a built-in task or suite"):
        suite_table()
    dist.distribution("mytasks", {EVAL_TASKS_GROUP: {"contains_answer": "mytasks:ContainsAnswer"}})
    task_plugins.installed.cache_clear()
    with pytest.raises(PluginError, match="task 'contains_answer' is registered twice"):
        suite_table([CONTAINS])


def _project(project_dir: Path, evaluation: dict, eval_set_task: str | None = "contains_answer") -> Path:
    cfg_path = project_dir / "mixtrain.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["evaluation"].update(evaluation)
    if eval_set_task is not None:
        cfg["eval_sets"].append({"id": "trivia", "type": "jsonl", "path": "trivia.jsonl", "task": eval_set_task})
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg_path


def _error(project_dir: Path) -> str:
    with pytest.raises(ProjectError) as err:
        Project(project_dir)
    return str(err.value)


def _line(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_the_config_names_tasks_by_import_path(dist, project_dir, trivia):
    cfg = _project(project_dir, {"suites": ["structured", "contains_answer"], "tasks": dict([CONTAINS])})
    project = Project(project_dir)
    settings = eval_settings(project.spec.evaluation)
    assert settings.tasks == (CONTAINS,)
    registry = pa.concat_tables([trivia])
    assert suite_items(["contains_answer"], project.spec.eval_sets, registry, pa.table({}))["contains_answer"].equals(
        trivia
    )
    assert set(suite_table(settings.tasks)) >= {"structured", "contains_answer"}

    _project(project_dir, {"tasks": {"contains_answer": "mytasks:ContainsAnswr"}}, None)
    message = _error(project_dir)
    assert "mixtrain.yaml: field 'evaluation.tasks.contains_answer': 'mytasks' has no attribute 'ContainsAnswr' " in (
        message
    )
    assert "(did you mean 'ContainsAnswer'?)" in message and f"(line {_line(cfg, 'ContainsAnswr')})" in message


@pytest.mark.parametrize(
    ("evaluation", "task", "expected"),
    [
        ({"suites": ["contains_answr"], "tasks": dict([CONTAINS])}, None, "unknown suite 'contains_answr' (did you "
         "mean 'contains_answer'?)"),
        ({"tasks": {"structured": "mytasks:ContainsAnswer"}}, None, "'structured' is a built-in task or suite"),
        ({"tasks": dict([CONTAINS])}, "contains_answr", "field 'eval_sets.3.task': unknown task 'contains_answr' (did "
         "you mean 'contains_answer'?)"),
        ({"suites": ["contains_answer"], "tasks": dict([CONTAINS])}, None, "field 'evaluation.suites': contains_answer"
         " needs an eval set with task contains_answer"),
    ],
)  # fmt: skip
def test_bad_task_config_fails_the_load(dist, project_dir, evaluation, task, expected):
    _project(project_dir, evaluation, task)
    assert expected in _error(project_dir)


def test_an_installed_task_is_known_to_the_config_by_its_entry_point_name(dist, project_dir):
    _project(project_dir, {"suites": ["structured", "contains_answer"]})
    assert "unknown suite 'contains_answer'" in _error(project_dir)
    dist.distribution("mytasks", {EVAL_TASKS_GROUP: {"contains_answer": "mytasks:ContainsAnswer"}})
    assert Project(project_dir).spec.evaluation.suites == ["structured", "contains_answer"]


def test_a_tasks_version_and_code_are_in_the_run_fingerprint(dist, trivia):
    items = {"structured": trivia}
    built_in = EvalSettings()
    decided = {k: v for k, v in asdict(built_in).items() if k not in (*_NOT_IN_ROWS, "tasks")}
    old = hashlib.sha256(canonical_json({"items": _digests(items), "settings": decided}).encode()).hexdigest()
    assert run_fingerprint(items, built_in) == old  # rows stored before plugin tasks existed are still reused

    settings = EvalSettings(tasks=(CONTAINS,))
    with_task = {**items, "contains_answer": trivia}
    first = run_fingerprint(with_task, settings)
    assert task_fingerprints(["structured", "contains_answer"], settings.tasks)["contains_answer"]["version"] == 1
    code = (dist.root / "mytasks.py").read_text()
    dist.module("mytasks", code.replace("answer in output.lower()", "answer in output.lower().strip()"))
    assert run_fingerprint(with_task, settings) != first


def _digests(items: dict[str, pa.Table]) -> dict[str, str]:
    from eval_assets.engine.live import _items_digest

    return {name: _items_digest(table) for name, table in sorted(items.items())}
