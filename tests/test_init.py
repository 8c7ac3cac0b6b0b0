"""``mixtrain init``: the starter project it writes loads with the real loader, its graph builds without the
students (distillation is off), its data is what the json_signature task makes of its functions, a directory that
holds anything is left alone unless ``--force``, and (marked ``reruns``) the whole starter pipeline runs and
releases its adapter."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey

from eval_assets.engine.registry import load_jsonl_eval_set
from eval_assets.tasks import json_signature as task
from mixtrain.cli import main
from mixtrain.config.training import STUDENT_MODELS
from mixtrain.project import Project, ProjectError
from mixtrain.starter import starter_files, write_starter

CODE = re.compile(r"```python\n(.*)\n```", re.DOTALL)


def _graph(root: Path):
    from definitions import build_defs

    return build_defs(str(root)).resolve_asset_graph()


def _parents(graph, key: str) -> set[str]:
    return {k.to_user_string() for k in graph.get(AssetKey(key)).parent_keys}


def test_init_writes_a_starter_that_loads_and_validates(tmp_path, capsys):
    root = tmp_path / "my-proj"
    assert main(["init", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"mixtrain run --project {root}" in out
    project = Project(root)
    assert project.spec.name == "my-proj"
    assert project.spec.distillation is None and project.spec.student_models() == ()
    assert project.source_ids() == ["examples"] and [e.id for e in project.spec.eval_sets] == ["holdout"]
    assert project.spec.mixture.weights == {"examples": 1.0}
    assert project.spec.training.base_model == "smollm2-135m-instruct"  # offline, as the demo: no download
    assert len(project.source_paths("examples")) == 1
    written = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert (
        written
        == set(starter_files())
        == {
            "mixtrain.yaml",
            "sources/examples.yaml",
            "data/examples.jsonl",
            "data/holdout.jsonl",
        }
    )
    # The commented-out distillation section is the one the loader takes once uncommented.
    text = (root / "mixtrain.yaml").read_text()
    block = re.search(r"^# distillation:\n((?:#   .*\n)+)", text, re.MULTILINE)
    assert block, "the starter shows how to turn distillation on"
    uncommented = "distillation:\n" + "".join(line[2:] + "\n" for line in block.group(1).splitlines())
    (root / "mixtrain.yaml").write_text(text + "\n" + uncommented)
    assert Project(root).spec.student_models() == STUDENT_MODELS


def test_init_refuses_a_non_empty_directory_unless_forced(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "mixtrain.yaml").write_text("name: keep me\n")
    assert main(["init", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--force" in err and "notes.txt" in err
    assert (tmp_path / "mixtrain.yaml").read_text() == "name: keep me\n" and not (tmp_path / "sources").exists()
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "notes.txt").read_text() == "mine"  # other files are kept
    assert Project(tmp_path).spec.name == tmp_path.name
    (tmp_path / "plain").write_text("")
    with pytest.raises(ProjectError, match="not a directory"):
        write_starter(tmp_path / "plain")


def test_init_and_a_missing_project_have_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "init" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["init", "--help"])
    out = capsys.readouterr().out
    assert "--force" in out and "DIRECTORY" in out and "Distillation is left off" in out


def test_starter_records_are_what_the_task_makes_of_their_functions(tmp_path):
    """The starter's data is stored as written (the core cannot import the task module): every training chat
    and eval item must be exactly the json_signature task's prompt, answer and reference for the function it
    shows, so a change of the task's prompt or conventions shows up here."""
    write_starter(tmp_path)
    chats = [json.loads(line) for line in (tmp_path / "data" / "examples.jsonl").read_text().splitlines()]
    items = [json.loads(line) for line in (tmp_path / "data" / "holdout.jsonl").read_text().splitlines()]
    assert len(chats) == 16 and len(items) == 8
    seen = set()
    for chat in chats:
        code = CODE.search(chat["messages"][1]["content"]).group(1)
        ref = task.reference(code)
        expected = [*task.prompt_messages(code), {"role": "assistant", "content": task.format_answer(ref)}]
        assert chat["messages"] == expected and chat["id"] == f"example-{ref['name']}"
        seen.add(ref["name"])
    for item in items:
        code = item["screen"]["code"]
        assert item["messages"] == task.prompt_messages(code) and item["reference"] == task.reference(code)
        assert item["metadata"] == {"task": task.TASK_ID}
        assert item["reference"]["name"] not in seen, "a held-out function is also trained on"
    registry = load_jsonl_eval_set("holdout", str(tmp_path / "data" / "holdout.jsonl"), "1")
    assert registry.num_rows == 8
    # Every field of the answer takes both values somewhere in the training data, so none is a constant to learn.
    refs = [task.reference(CODE.search(c["messages"][1]["content"]).group(1)) for c in chats]
    for field in ("varargs", "kwargs", "returns_value", "raises"):
        assert {r[field] for r in refs} == {True, False}, field


def test_a_project_without_distillation_evaluates_and_releases_without_students(tmp_path, project_dir):
    write_starter(tmp_path / "starter")
    graph = _graph(tmp_path / "starter")
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert not keys & {*STUDENT_MODELS, "distillation_recipe"}
    assert _parents(graph, "eval_report") == {
        "base_eval",
        "base_model",
        "eval_registry",
        "eval_spec",
        "heldout_text",
        "sft_adapter",
    }
    assert _parents(graph, "released_model") == {"eval_comparison", "eval_report", "sft_adapter"}
    # The demo keeps its distilled student (without the SFT-only baseline), and its report and release wait for it.
    demo = _graph(project_dir)
    assert {"distilled_student"} <= _parents(demo, "eval_report") and {"distilled_student"} <= _parents(
        demo, "released_model"
    )
    assert "student_sft_baseline" not in {k.to_user_string() for k in demo.get_all_asset_keys()}
    assert _parents(demo, "distilled_student") >= {"sft_adapter", "distillation_recipe"}
    # sft_baseline: false trains the distilled student alone.
    cfg = yaml.safe_load((project_dir / "mixtrain.yaml").read_text())
    cfg["distillation"]["sft_baseline"] = False
    (project_dir / "mixtrain.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    one = _graph(project_dir)
    assert "distilled_student" in _parents(one, "eval_report")
    assert AssetKey("student_sft_baseline") not in one.get_all_asset_keys()


def test_a_student_candidate_without_distillation_is_refused_at_load(tmp_path):
    write_starter(tmp_path)
    file = tmp_path / "mixtrain.yaml"
    file.write_text(file.read_text().replace("candidate: sft_adapter", "candidate: distilled_student"))
    with pytest.raises(ProjectError, match=r"release_gate\.candidate") as err:
        Project(tmp_path)
    assert "only with a distillation section" in str(err.value) and "line" in str(err.value)


def tiny_starter(root: Path, model_dir: Path) -> Path:
    """The starter as `mixtrain init` writes it, on the tests' tiny random model (the SmolLM2 GGUF takes minutes
    to convert on a CPU) with two training steps. A random model emits no valid JSON and never ends a turn, so the
    release gate keeps only its no-regression rule and allows truncated answers, as the tiny demo project does."""
    write_starter(root)
    cfg = yaml.safe_load((root / "mixtrain.yaml").read_text())
    # The tiny model's small byte-level vocabulary needs far more tokens per example than SmolLM2's.
    cfg["training"].update(base_model=str(model_dir), steps=2, batch_size=2, max_seq_len=1024)
    cfg["evaluation"].update(max_new_tokens=8)
    cfg["release_gate"].update(criteria=[], max_truncated_share=1.0)
    (root / "mixtrain.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


@pytest.mark.reruns
def test_the_starter_runs_end_to_end_and_releases_without_students(tmp_path, tiny_model_dir):
    """The whole starter pipeline: every example passes the gate, dedupe and the contamination screen into the
    mixture; the report holds the base and the SFT adapter only, its blocking checks pass and the adapter is
    released. Minutes of CPU (the data stages alone cost more than a test module of `make test`), so it runs with
    the `reruns` tests: `make test-reruns`."""
    from upath import UPath

    from mixtrain.instance import activate, load_definitions, open_instance
    from mixtrain.release import current_release
    from mixtrain.runner import run_project
    from mixtrain.summary import latest_check
    from mixtrain.tables import open_table

    root = tiny_starter(tmp_path / "starter", tiny_model_dir)
    project = activate(root)
    defs = load_definitions(project)
    with open_instance(project) as instance:
        report = run_project(project, defs, instance, log=lambda s: None)
        assert report.ok, report.failed_runs
        done = {name for name, _ in report.materialized}
        assert {"sft_adapter", "eval_report", "eval_comparison", "released_model"} <= done
        assert not done & set(STUDENT_MODELS)
        for check in ("eval_report_complete", "eval_report_truncation"):
            assert latest_check(instance, "eval_report", check)["passed"], check
        assert latest_check(instance, "eval_comparison", "release_gate")["passed"]
    storage = UPath(project.storage_root)
    assert open_table(storage / "gated_documents" / "examples").read().num_rows == 16
    assert open_table(storage / "contamination_findings").read().num_rows == 0
    mixture = open_table(storage / "mixture").read()
    assert set(mixture["source_id"].to_pylist()) == {"examples"} and mixture.num_rows > 0
    assert set(open_table(storage / "eval_report").read()["model"].to_pylist()) == {"base", "sft_adapter"}
    assert current_release(project.storage_root)["current"]["model"] == "sft_adapter"
