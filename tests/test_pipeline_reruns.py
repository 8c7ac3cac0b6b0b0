"""What reruns when something changes, on the tiny project after its first run (in file order: each test
builds on the state the previous one left; the first run and its checks are in test_pipeline.py, sharing one
run through the session-scoped ``pipeline_session`` fixture)."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest
import yaml
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    build_schedule_context,
    build_sensor_context,
    evaluate_automation_conditions,
)
from upath import UPath

from mixtrain.provenance import model_manifests
from mixtrain.runner import run_project
from mixtrain.summary import latest_check, latest_metadata
from tests.pipeline_session import (
    GATING,
    MIXTURE_OUTPUTS,
    Session,
    asset_statuses,
    both_statuses,
    materialize_mixture,
    stored_table,
)

# A dozen incremental pipeline runs (about ten minutes here): `make test-reruns`, which CI runs after `make test`.
pytestmark = pytest.mark.reruns


@pytest.fixture
def session(pipeline_session) -> Session:
    return pipeline_session


def test_second_run_materializes_nothing(session):
    report = session.run()
    assert report.ok and report.materialized == []
    statuses = asset_statuses(session)
    assert {s.status for s in statuses.values()} == {"FRESH"}


def test_a_partly_recorded_multi_asset_reruns_whole(session):
    """A kill (or a full disk) between the outputs of the screen leaves its last output unrecorded; the next run
    must rerun the screen whole instead of asking Dagster for a subset it refuses."""
    before = {name: stored_table(session, name) for name in ("screened_corpus", "leaked_items")}
    session.instance.wipe_assets([AssetKey("leaked_items")])
    report = session.run()
    assert report.ok, report.failed_runs
    siblings = session.defs.resolve_asset_graph().get(AssetKey("leaked_items")).execution_set_asset_keys
    assert {(k.to_user_string(), None) for k in siblings} <= set(report.materialized)
    for name, table in before.items():
        assert stored_table(session, name).equals(table)
    assert session.run().materialized == []


def test_a_table_replaced_after_its_commit_is_inconsistent_until_run_rebuilds_it(session, capsys):
    """The state a kill between the IO manager's commit and Dagster's record leaves: storage holds a newer
    table than the event log names. Status says so; the next run rebuilds it (only it) from its inputs."""
    from mixtrain.cli import main
    from mixtrain.consistency import inconsistencies
    from mixtrain.partitions import partition_keys
    from mixtrain.tables import PendingTable

    original = stored_table(session, "screened_corpus")
    path = UPath(session.project.storage_root) / "screened_corpus"
    PendingTable.of(original.slice(0, original.num_rows // 2)).commit(path)

    def found() -> list[tuple[str, str | None]]:
        keys = partition_keys(session.project)
        listed = inconsistencies(session.defs, session.instance, session.project.storage_root, keys)
        return [(f.key.to_user_string(), f.partition) for f in listed]

    assert found() == [("screened_corpus", None)]
    assert main(["status", "--project", str(session.root)]) == 0
    assert "INCONSISTENT screened_corpus: storage holds version" in capsys.readouterr().out
    report = session.run()
    siblings = session.defs.resolve_asset_graph().get(AssetKey("screened_corpus")).execution_set_asset_keys
    assert report.ok and set(report.materialized) == {(k.to_user_string(), None) for k in siblings}
    assert stored_table(session, "screened_corpus").equals(original)
    assert found() == []


def test_editing_one_adapter_or_adding_one_trains_only_that_partition(session):
    cfg_path = session.root / "mixtrain.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["adapters"]["python-docs"]["lr"] = 5.0e-4
    cfg["adapters"]["tenant-a"] = {"sources": ["signature_sft", "pydoc_topics"], "steps": 2}
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    session.refresh()
    statuses = asset_statuses(session)
    assert statuses[("task_adapter", "python-docs")].status == "STALE"
    assert statuses[("task_adapter", "signature-only")].status == "FRESH"
    report = session.run()
    retrained = {("task_adapter", "python-docs"), ("task_adapter", "tenant-a")}
    evaluated = {(k, pk) for _, pk in retrained for k in ("task_adapter_report", "task_adapter_comparison")}
    assert report.ok and set(report.materialized) == retrained | evaluated


def test_adapter_sensor_adds_and_deletes_partitions_from_the_config(session):
    cfg_path = session.root / "mixtrain.yaml"
    original = cfg_path.read_text()
    cfg = yaml.safe_load(original)
    cfg["adapters"]["tenant-b"] = {"sources": ["signature_sft"]}
    del cfg["adapters"]["signature-only"]
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        session.refresh()
        sensor = session.defs.resolve_sensor_def("adapter_partitions_sensor")
        result = sensor(build_sensor_context(instance=session.instance, resources=session.defs.resources))
        requests = {type(r).__name__: list(r.partition_keys) for r in result.dynamic_partitions_requests}
        assert requests == {
            "AddDynamicPartitionsRequest": ["tenant-b"],
            "DeleteDynamicPartitionsRequest": ["signature-only"],
        }
        assert [r.partition_key for r in result.run_requests] == ["tenant-b"]
        observed = {(e.asset_key.to_user_string(), e.partition) for e in result.asset_events}
        assert ("adapter_spec", "tenant-b") in observed  # a first tick observes every adapter's spec
        again = sensor(
            build_sensor_context(instance=session.instance, resources=session.defs.resources, cursor=result.cursor)
        )
        assert not getattr(again, "asset_events", None)  # unchanged since: nothing to observe
    finally:
        cfg_path.write_text(original)
        session.refresh()


def test_a_spec_edit_that_leaves_the_mixture_identical_retrains_nothing(session):
    """The models' inputs are the mixture's content (manifest id = shard checksums), not the spec text: an edit
    that changes no row reruns the mixture and nothing after it; one that changes rows makes the models stale."""
    cfg_path = session.root / "mixtrain.yaml"
    original = cfg_path.read_text()
    before = json.loads((session.root / "storage" / "mixture_manifest.json").read_text())
    graph = session.defs.resolve_asset_graph()
    downstream = {
        k.to_user_string() for k in AssetSelection.assets("mixture_manifest").downstream().resolve(graph)
    } - MIXTURE_OUTPUTS
    assert {"sft_adapter", "distilled_student", "task_adapter"} <= downstream
    try:
        cfg = yaml.safe_load(original)
        cfg["mixture"]["drift_tolerance"] = 0.25  # only the drift check reads it: the same rows are sampled
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        session.refresh()
        status, ui = both_statuses(session)
        assert status == ui
        assert ui[("mixture", None)] == "STALE" and all(ui[k] == "FRESH" for k in ui if k[0] in downstream)

        report = session.run()
        assert report.ok, report.failed_runs
        done = {k for k, _ in report.materialized}
        assert "mixture" in done and not done - MIXTURE_OUTPUTS  # no model retrained, no evaluation rerun
        after = json.loads((session.root / "storage" / "mixture_manifest.json").read_text())
        assert after["manifest_id"] == before["manifest_id"] and after["spec"]["drift_tolerance"] == 0.25
        status, ui = both_statuses(session)
        assert status == ui and set(ui.values()) == {"FRESH"}

        # Half the token budget: other rows, so every model trained on the mixture is stale, in both views.
        tokens = sum(source["tokens"] for source in before["composition"]["sources"].values())
        cfg["mixture"]["token_budget"] = max(1, tokens // 2)
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        assert materialize_mixture(session) != before["manifest_id"]
        status, ui = both_statuses(session)
        assert status == ui
        stale = {k for k, v in ui.items() if v == "STALE"}
        assert {("sft_adapter", None), ("distilled_student", None), ("student_sft_baseline", None)} <= stale
        adapters = {k for k in ui if k[0] == "task_adapter"}
        assert adapters and adapters <= stale
    finally:
        cfg_path.write_text(original)
    # Back to the original spec: the original bytes again, which the models were trained on, so they are fresh.
    assert materialize_mixture(session) == before["manifest_id"]
    status, ui = both_statuses(session)
    assert status == ui and set(ui.values()) == {"FRESH"}


def test_changing_a_mixture_weight_does_not_rerun_gating(session):
    cfg_path = session.root / "mixtrain.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["mixture"]["weights"]["pydoc_topics"] = 3.0
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    session.refresh()
    statuses = asset_statuses(session)  # what `mixtrain status` reports
    assert statuses[("mixture", None)].status == "STALE"
    assert any("mixture_spec" in c for c in statuses[("mixture", None)].causes)
    assert statuses[("gated_documents", "pydoc_topics")].status == "FRESH"
    report = session.run()
    done = {k for k, _ in report.materialized}
    assert report.ok
    assert "mixture" in done and not done & GATING
    assert not done & {"deduplicated_corpus", "screened_corpus", "base_model", "eval_registry"}


def test_nightly_schedule_and_automation_pick_up_a_changed_source(session):
    path = session.root / "data" / "pydoc_topics.jsonl"
    path.write_text(path.read_text() + json.dumps({"id": "extra", "text": "A new topic " * 20}) + "\n")
    session.refresh()
    schedule = session.defs.resolve_schedule_def("nightly_refresh")
    requests = list(schedule.evaluate_tick(build_schedule_context(instance=session.instance)).run_requests or [])
    assert len(requests) == 1
    session.defs.resolve_job_def(schedule.job_name).execute_in_process(instance=session.instance)
    from mixtrain.runner import _load_cursor

    result = evaluate_automation_conditions(
        defs=session.defs, instance=session.instance, cursor=_load_cursor(session.project)
    )
    assert result.get_requested_partitions(AssetKey("raw_documents")) == {"pydoc_topics"}


def test_touching_one_source_reruns_only_its_partition_and_downstream(session):
    report = session.run()
    assert report.ok
    gated_partitions = {pk for k, pk in report.materialized if k in GATING}
    assert gated_partitions == {"pydoc_topics"}
    done = {k for k, _ in report.materialized}
    assert {"source_manifest", "deduplicated_corpus"} <= done
    assert "base_model" not in done and "eval_registry" not in done
    # The dedupe index is reused: at most the changed source's documents are sketched again.
    m = latest_metadata(session.instance, "deduplicated_corpus")
    pydoc = stored_table(session, "gated_documents", "pydoc_topics").num_rows
    assert m["incremental"] is True and m["sketched"] <= pydoc < m["documents_in"]
    assert m["sketches_reused"] + m["sketched"] == m["documents_in"]
    assert m["sources_unchanged"] == len(session.project.source_ids()) - 1  # all but pydoc_topics


def test_sensor_adds_a_partition_for_a_new_source_spec(session):
    (session.root / "data" / "extra.jsonl").write_text(json.dumps({"text": "an extra source " * 10}) + "\n")
    (session.root / "sources" / "extra.yaml").write_text(
        yaml.safe_dump({"id": "extra", "path": "data/extra.jsonl", "format": "jsonl", "license": "MIT"})
    )
    session.refresh()
    sensor = session.defs.resolve_sensor_def("new_source_sensor")
    ctx = build_sensor_context(instance=session.instance, resources=session.defs.resources)
    result = sensor(ctx)
    assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["extra"]]
    assert [r.partition_key for r in result.run_requests] == ["extra"]
    assert {(e.asset_key.to_user_string(), e.partition) for e in result.asset_events} == {
        ("source_spec", "extra"),
        ("gating_policy", "extra"),
        ("review_sheets", "extra"),
    }


def test_a_failed_source_names_its_spec_and_is_retried_after_the_fix(session):
    (session.root / "sources" / "late.yaml").write_text(
        yaml.safe_dump({"id": "late", "path": "data/late/*.jsonl", "format": "jsonl", "license": "MIT"})
    )
    messages: list[str] = []
    session.refresh()
    report = run_project(session.project, session.defs, session.instance, log=messages.append)
    assert not report.ok
    failed = session.instance.get_run_by_id(report.failed_runs[0])
    assert failed.tags.get("dagster/partition") == "late"
    errors = []
    for e in session.instance.all_logs(failed.run_id):
        if e.dagster_event and e.dagster_event.is_step_failure:
            err = e.dagster_event.step_failure_data.error
            while err is not None:
                errors.append(err.message)
                err = err.cause
    assert any("late.yaml: field 'path'" in m for m in errors), errors
    (session.root / "data" / "late").mkdir()
    late_doc = {"text": "This document arrived late, after the first run had already failed for its source."}
    (session.root / "data" / "late" / "a.jsonl").write_text(json.dumps(late_doc) + "\n")
    report = session.run()
    assert report.ok, report.failed_runs
    assert ("gated_documents", "late") in report.materialized
    assert ("mixture", None) in report.materialized


def test_review_verdicts_regate_only_the_reviewed_source(session, tmp_path):
    import csv

    from mixtrain.cli import main

    sheet = tmp_path / "sheet.csv"
    args = ["--project", str(session.root), "--source", "community_forum", "--n", "6", "--seed", "3"]
    assert main(["review", "sample", *args, "--out", str(sheet)]) == 0
    rows = list(csv.DictReader(sheet.open()))
    held = next(r for r in rows if r["automatic"] != "accepted" and not r["rule_id"].startswith("read."))
    kept = next(r for r in rows if r["automatic"] == "accepted")
    held.update(verdict="accept", reviewer="ana", note="fine after all")
    kept.update(verdict="reject", reviewer="ana", note="spam")
    with sheet.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert main(["review", "apply", str(sheet), "--project", str(session.root)]) == 0

    report = session.run()
    assert report.ok, report.failed_runs
    regated = {pk for k, pk in report.materialized if k == "gated_documents"}
    assert regated == {"community_forum"}
    gated_ids = set(stored_table(session, "gated_documents", "community_forum.parquet").column("doc_id").to_pylist())
    assert held["doc_id"] in gated_ids and kept["doc_id"] not in gated_ids
    decisions = stored_table(session, "decision_log", "community_forum.parquet").to_pylist()
    assert {d["rule_id"] for d in decisions if d["doc_id"] in (held["doc_id"], kept["doc_id"])} >= {
        "review.accept",
        "review.reject",
    }
    m = latest_metadata(session.instance, "gated_documents", "community_forum")
    assert m["accepted_by_review"] == 1 and m["rejected_by_review"] == 1
    assert "Review agreement" in latest_metadata(session.instance, "gating_report")["report"]


def test_a_threshold_change_regates_without_rereading_even_with_a_curation_change(session):
    spec_path = session.root / "sources" / "pydoc_topics.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec.setdefault("gating", {})["min_words"] = 40
    spec_path.write_text(yaml.safe_dump(spec))
    cfg_path = session.root / "mixtrain.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg.setdefault("dedupe", {})["threshold"] = 0.85  # requested in the same round as the regated partition
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    report = session.run()
    assert report.ok, report.failed_runs
    assert {pk for k, pk in report.materialized if k == "gated_documents"} == {"pydoc_topics"}
    assert not [k for k, _ in report.materialized if k in ("raw_documents", "raw_rejects")]
    assert {"source_manifest", "deduplicated_corpus"} <= {k for k, _ in report.materialized}
    history = stored_table(session, "gating_history").to_pylist()  # the regating is one more point per rule
    runs = {sid: {r["run_id"] for r in history if r["source_id"] == sid} for sid in session.project.source_ids()}
    for sid, materialized in runs.items():  # every materialization in the event log, none twice
        records = session.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("gated_documents"), asset_partitions=[sid]), limit=100
        ).records
        assert materialized == {r.run_id for r in records}, sid
    assert len(runs["pydoc_topics"]) > len(runs["web_crawl"])
    short = [r for r in history if r["source_id"] == "pydoc_topics" and r["rule_id"] == "quality.too_short"]
    assert len(short) == len(runs["pydoc_topics"]) and short[-1]["hits"] > short[0]["hits"]


def test_a_screen_setting_reruns_the_screen_but_not_the_dedupe(session):
    cfg_path = session.root / "mixtrain.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg.setdefault("screen", {})["containment_threshold"] = 0.6
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    report = session.run()
    assert report.ok, report.failed_runs
    done = {k for k, _ in report.materialized}
    assert "screened_corpus" in done and not done & {"deduplicated_corpus", "source_manifest", *GATING}


def test_a_lost_automation_cursor_still_reruns_what_changed(session):
    from mixtrain.runner import CURSOR_FILE

    (session.project.dagster_home / CURSOR_FILE).unlink()
    path = session.root / "data" / "pydoc_topics.jsonl"
    extra = {"id": "cursor", "text": "A topic added after the automation cursor was lost, described in a sentence."}
    path.write_text(path.read_text() + json.dumps(extra) + "\n")
    session.refresh()
    messages: list[str] = []
    report = run_project(session.project, session.defs, session.instance, log=messages.append)
    assert report.ok, report.failed_runs
    assert ("raw_documents", "pydoc_topics") in report.materialized, messages
    assert not {pk for k, pk in report.materialized if k == "raw_documents"} - {"pydoc_topics"}


def test_trace_and_impact_answer_from_stored_assets(session, capsys):
    import time

    from mixtrain.cli import main
    from mixtrain.provenance import impact, trace

    root = session.project.storage_root
    mixture = stored_table(session, "mixture.parquet")
    doc = mixture.filter(pc.equal(mixture["source_id"], "community_forum")).column("doc_id")[0].as_py()
    start = time.perf_counter()
    answer = trace(root, doc)
    reach = impact(root, "community_forum")
    assert time.perf_counter() - start < 1.0  # a filtered read of stored files, nothing recomputed
    assert answer["found"] and answer["raw"][0]["source_id"] == "community_forum" and answer["passed_gating"]
    assert answer["raw"][0]["locator"].startswith("data/community_forum.jsonl:")
    assert answer["mixtures"][0]["uses"][0]["occurrences"] >= 1
    # Every model version trained on this mixture (earlier tests retrained with other recipes), the live ones too.
    trained = {"sft_adapter", "distilled_student", "student_sft_baseline"}
    assert {m["asset"] for m in answer["models"]} == trained and any(m["current"] for m in answer["models"])
    # An adapter partition read only its sources / domains: a docs page reaches the docs adapters, not the rest.
    page = mixture.filter(pc.equal(mixture["source_id"], "pydoc_topics")).column("doc_id")[0].as_py()
    adapters = {m["asset"] for m in trace(root, page)["models"]} - trained
    assert adapters == {"task_adapter[python-docs]", "task_adapter[tenant-a]"}
    assert {m["asset"] for m in impact(root, "pydoc_topics")["models"]} - trained == adapters
    assert not {m["asset"] for m in reach["models"]} - trained  # no adapter read community_forum

    # A dropped duplicate names its keeper; a redacted post shows the PII decision with its span.
    clusters = stored_table(session, "dedupe_clusters.parquet").to_pylist()
    dup = next(c for c in clusters if c["source_id"] == "community_forum")
    dropped = trace(root, dup["doc_id"])
    assert dropped["dedupe"]["dropped_as"][0]["kept_doc_id"] == dup["kept_doc_id"] and not dropped["mixtures"]
    decisions = stored_table(session, "decision_log", "community_forum.parquet").to_pylist()
    redacted = next(d for d in decisions if d["rule_id"].startswith("pii."))
    spans = trace(root, redacted["doc_id"])["decision_log"]
    assert any(d["rule_id"] == redacted["rule_id"] and d["span_start"] is not None for d in spans)

    assert reach["partitions"]["gated_documents[community_forum]"] > 0
    assert reach["corpus"]["mixture"] == pc.sum(pc.equal(mixture["source_id"], "community_forum")).as_py()
    assert {m["asset"] for m in reach["models"]} == trained and any(m["current"] for m in reach["models"])
    assert main(["impact", "community_forum", "--project", str(session.root)]) == 0
    assert "sft_adapter" in capsys.readouterr().out
    assert main(["trace", "no-such-doc", "--project", str(session.root)]) == 1


def _commit_times(session) -> dict[str, int]:
    """When each gated partition was last committed (its manifest written)."""
    gated = session.root / "storage" / "gated_documents"
    return {p.parent.name: p.stat().st_mtime_ns for p in gated.glob("*/_manifest.json")}


def test_revoke_rebuilds_only_what_used_the_source_and_labels_the_old_model(session, capsys):
    from mixtrain.cli import main
    from mixtrain.provenance import impact

    forum = "community_forum"
    before = _commit_times(session)
    assert main(["revoke", forum, "--reason", "takedown request", "--by", "legal", "--project", str(session.root)]) == 0
    label = json.loads((session.root / "storage" / "sft_adapter.json").read_text())["trained_on_revoked"]
    assert [(m["source_id"], m["reason"], m["revoked_by"]) for m in label] == [(forum, "takedown request", "legal")]
    assert main(["status", "--project", str(session.root)]) == 0
    out = capsys.readouterr().out
    assert f"REVOKED  source {forum}" in out and "TAINTED  model sft_adapter" in out

    # The forum is a sliver of the mixture: a strict drift tolerance makes its removal a drift warning.
    cfg_path = session.root / "mixtrain.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["mixture"]["drift_tolerance"] = 0.001
    cfg_path.write_text(yaml.safe_dump(cfg))
    report = session.run()
    assert report.ok, report.failed_runs
    done = {k for k, _ in report.materialized}
    assert {"source_manifest", "deduplicated_corpus", "mixture", "sft_adapter"} <= done
    assert not done & GATING  # no per-source partition is touched
    after = _commit_times(session)
    assert after == before
    assert forum not in set(stored_table(session, "mixture.parquet").column("source_id").to_pylist())
    assert forum not in set(stored_table(session, "deduplicated_corpus.parquet").column("source_id").to_pylist())
    # The rebuilt adapter is a new version in its own directory; the old one keeps its weights and its label.
    live = json.loads((session.root / "storage" / "sft_adapter.json").read_text())
    assert "trained_on_revoked" not in live
    models = {m["version"]: m for m in model_manifests(str(session.root / "storage")) if m["asset"] == "sft_adapter"}
    superseded = [m for v, m in models.items() if v != live["version"]]
    old = superseded[-1]
    assert superseded and all(m["trained_on_revoked"][0]["source_id"] == forum for m in superseded)
    assert not old["current"] and (session.root / "storage" / old["path"]).is_dir()
    assert models[live["version"]]["current"] and not models[live["version"]]["trained_on_revoked"]
    used_by = impact(str(session.root / "storage"), forum)["mixtures"]
    assert used_by and not any(m["current"] for m in used_by)  # only superseded mixtures held the source
    assert main(["status", "--project", str(session.root)]) == 0
    assert "TAINTED  model sft_adapter (superseded" in capsys.readouterr().out
    observed = session.instance.fetch_observations(AssetKey("revocations"), limit=1).records[0]
    assert old["version"] in observed.asset_observation.metadata["impact"].value
    # The mixture moved: the drift check warns (not blocking) and `mixture diff` says what changed.
    drift = latest_check(session.instance, "mixture", "mixture_drift")
    assert drift["passed"] is False and f"moved/{forum}" in drift
    manifest = json.loads((session.root / "storage" / "mixture_manifest.json").read_text())
    assert forum not in manifest["input_partitions"] and manifest["previous_manifest_id"]
    capsys.readouterr()
    assert main(["mixture", "diff", "--project", str(session.root)]) == 0
    diff = capsys.readouterr().out
    assert forum in diff and manifest["previous_manifest_id"] in diff

    with pytest.raises(SystemExit):
        main(["revoke", forum, "--project", str(session.root)])  # --reason is required


def test_rollback_makes_the_previous_release_live(session, capsys):
    from mixtrain.cli import main

    path = session.root / "storage" / "released_model.json"
    before = json.loads(path.read_text())
    assert before["history"], "the revoke test retrained and re-released the adapter"
    assert main(["rollback", "--reason", "regression reported", "--project", str(session.root)]) == 0
    after = json.loads(path.read_text())
    assert after["current"]["version"] == before["history"][-1]["version"] != before["current"]["version"]
    assert after["previous"] == before["current"] and after["current"]["reason"]["rollback"] == "regression reported"
    assert "again" in capsys.readouterr().out
