"""The whole graph on a tiny project: what its first run leaves behind (read only; the reruns are in
test_pipeline_reruns.py, which shares this run through the session-scoped ``pipeline_session`` fixture)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mixtrain.provenance import model_manifests
from mixtrain.summary import latest_check, latest_metadata, render_summary
from tests.pipeline_session import Session, stored_table


@pytest.fixture
def session(pipeline_session) -> Session:
    if pipeline_session.changed:
        pytest.fail("these checks read what the first run left: run them before test_pipeline_reruns.py")
    return pipeline_session


def test_first_run_materializes_the_whole_chain(session):
    report = session.first
    assert report.ok, report.failed_runs
    done = {k for k, _ in report.materialized}
    for key in [
        "raw_documents",
        "gated_documents",
        "source_manifest",
        "deduplicated_corpus",
        "screened_corpus",
        "mixture",
        "mixture_manifest",
        "base_model",
        "sft_adapter",
        "task_adapter",
        "eval_registry",
        "base_eval",
        "eval_report",
    ]:
        assert key in done, key
    sources = session.project.source_ids()
    assert {pk for k, pk in report.materialized if k == "gated_documents"} == set(sources)


def test_gates_quarantine_bad_input_with_reasons(session):
    held = stored_table(session, "quarantine", "community_forum.parquet").to_pylist()
    reasons = {r["rule_id"] for r in held}
    assert "read.malformed_record" in reasons and "read.undecodable" in reasons
    assert all(":" in r["reason"] or r["locator"] for r in held)
    mystery = stored_table(session, "quarantine", "mystery_dump.parquet").to_pylist()
    assert mystery and all(r["rule_id"] == "rights.unknown_license" for r in mystery)
    gated = stored_table(session, "gated_documents", "community_forum.parquet").column("text").to_pylist()
    assert any("<EMAIL>" in t for t in gated) and not any("@example" in t for t in gated)
    for sid in session.project.source_ids():
        assert latest_check(session.instance, "gated_documents", "conservation") is not None
        m = latest_metadata(session.instance, "gated_documents", sid)
        assert m["ingested"] == m["accepted"] + m["quarantined"] + m["rejected"]


def test_gating_history_has_a_row_per_source_and_rule_that_ran(session):
    history = stored_table(session, "gating_history").to_pylist()
    assert {r["source_id"] for r in history} == set(session.project.source_ids())
    for r in history:
        m = latest_metadata(session.instance, "gated_documents", r["source_id"])
        assert r["hits"] == m.get(f"rule.{r['rule_id']}", 0) and r["ingested"] == m["ingested"]
    assert any(r["hits"] > 0 for r in history) and any(r["hits"] == 0 for r in history)
    rates = {k for k in latest_metadata(session.instance, "gating_history") if k.startswith("hit_rate/")}
    assert rates


def test_dedupe_screen_and_mixture_checks(session):
    clusters = stored_table(session, "dedupe_clusters.parquet").to_pylist()
    assert {c["match_type"] for c in clusters} >= {"exact", "near"}
    by_doc = {(c["source_id"], c["doc_id"]): c for c in clusters}
    for c in clusters:  # a member names the member it matched; following those links ends at the cluster's keeper
        link = (c["kept_source_id"], c["kept_doc_id"])
        while link in by_doc:
            assert by_doc[link]["cluster_id"] == c["cluster_id"]
            link = (by_doc[link]["kept_source_id"], by_doc[link]["kept_doc_id"])
        assert c["cluster_id"] == f"{link[0]}/{link[1]}"
    assert all(c["exact_jaccard"] >= 0.8 for c in clusters if c["action"] == "dropped")
    index = stored_table(session, "dedupe_index.parquet")
    assert index.num_rows == latest_metadata(session.instance, "deduplicated_corpus")["documents_in"]
    findings = stored_table(session, "contamination_findings.parquet").to_pylist()
    assert {f["eval_set"] for f in findings} == {"humaneval", "signature_holdout"}
    assert all(len(f["overlap_text"]) > 0 for f in findings)
    mixture = stored_table(session, "mixture.parquet")
    assert "nc_tutorials" not in set(mixture.column("source_id").to_pylist())  # commercial policy
    assert not set(mixture.column("doc_id").to_pylist()) & {f["doc_id"] for f in findings}
    for check in ("mixture_license_policy", "mixture_contamination_free"):
        assert latest_check(session.instance, "mixture", check)["passed"] is True
    manifest = json.loads((Path(session.project.storage_root) / "mixture_manifest.json").read_text())
    assert manifest["shards"][0]["rows"] == mixture.num_rows
    for shard in manifest["shards"]:  # the mixture table's parts, named under the storage root, each with its checksum
        assert not Path(shard["path"]).is_absolute()
        path = Path(session.project.storage_root) / shard["path"]
        assert shard["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert set(manifest["inputs"]) == {"screened_corpus", "base_model", "mixture_spec"}
    assert all(manifest["inputs"].values())


def test_training_and_evaluation_outputs(session):
    adapter = json.loads((Path(session.project.storage_root) / "sft_adapter.json").read_text())
    run = adapter["run_manifest"]
    assert len(run["loss"]) == len(run["lr"]) == 2
    assert (Path(session.project.storage_root) / adapter["path"] / "adapter_config.json").exists()
    report = stored_table(session, "eval_report.parquet")
    models = {"base", "sft_adapter", "distilled_student", "student_sft_baseline"}
    assert set(report.column("model").to_pylist()) == models
    tool_rows = report.filter(pc.equal(report["suite"], "tool_calls"))
    assert set(tool_rows.column("model").to_pylist()) == models
    assert set(tool_rows.column("eval_set").to_pylist()) == {"tool_holdout"}
    heldout = stored_table(session, "heldout_text.parquet")
    mixture_ids = set(stored_table(session, "mixture.parquet").column("doc_id").to_pylist())
    assert heldout.num_rows > 0 and not set(heldout.column("doc_id").to_pylist()) & mixture_ids
    ppl_rows = report.filter(pc.equal(report["suite"], "perplexity"))
    limit = session.project.spec.evaluation.limit  # held-out rows go round-robin over sources
    assert (
        ppl_rows.column("item_id").to_pylist()[:limit]
        == [f"{s}/{d}" for s, d in zip(heldout["source_id"].to_pylist(), heldout["doc_id"].to_pylist(), strict=True)][
            :limit
        ]
    )
    assert len(set(heldout.column("source_id").to_pylist()[:limit])) == limit
    assert all(v is not None and v > 0 for v in ppl_rows.column("nll").to_pylist())
    comparison = stored_table(session, "eval_comparison.parquet")
    assert set(comparison.column("candidate_model").to_pylist()) == models - {"base"}
    student = json.loads((Path(session.project.storage_root) / "distilled_student.json").read_text())
    kd = student["run_manifest"]["distillation"]
    baseline = json.loads((Path(session.project.storage_root) / "student_sft_baseline.json").read_text())
    assert kd["kd_ratio"] > 0 and baseline["run_manifest"]["distillation"]["kd_ratio"] == 0
    gate = latest_check(session.instance, "eval_comparison", "release_gate")
    assert gate is not None and gate["passed"], gate
    release = json.loads((Path(session.project.storage_root) / "released_model.json").read_text())
    assert release["current"]["model"] == "sft_adapter" and release["current"]["version"] == adapter["version"]


def test_adapters_are_partitions_over_one_base(session):
    storage = Path(session.project.storage_root)
    base = json.loads((storage / "base_model.json").read_text())
    mixture = stored_table(session, "mixture.parquet")
    assert {pk for k, pk in session.first.materialized if k == "task_adapter"} == set(session.project.adapter_ids())
    for aid, spec in session.project.spec.adapters.items():
        out = json.loads((storage / "task_adapter" / f"{aid}.json").read_text())
        assert out["base_model_path"] == base["path"]  # one base, shared
        assert (storage / out["path"] / "adapter_config.json").exists()
        assert out["data_filter"] == {"sources": sorted(spec.sources), "domains": sorted(spec.domains)}
        shard = out["run_manifest"]["data_shards"][0]
        rows = pq.read_table(storage / shard["path"])
        wanted = [
            (not spec.sources or s in spec.sources) and (not spec.domains or d in spec.domains)
            for s, d in zip(mixture["source_id"].to_pylist(), mixture["domain"].to_pylist(), strict=True)
        ]
        assert rows.num_rows == shard["rows"] == sum(wanted) > 0
        assert shard["sha256"] == hashlib.sha256((storage / shard["path"]).read_bytes()).hexdigest()
    only = json.loads((storage / "task_adapter" / "signature-only.json").read_text())
    assert json.loads((storage / only["path"] / "adapter_config.json").read_text())["r"] == 4
    assert set(pq.read_table(storage / only["run_manifest"]["data_shards"][0]["path"])["source_id"].to_pylist()) == {
        "signature_sft"
    }
    labels = {m["asset"] for m in model_manifests(str(storage)) if m["current"]}
    assert {"sft_adapter", "task_adapter[signature-only]", "task_adapter[python-docs]"} <= labels
    summary = render_summary(session.instance)
    for heading in (
        "task_adapter[python-docs]",
        "evaluation (tool-call holdout)",
        "perplexity on held-out documents",
        "task adapters vs base",
    ):
        assert heading in summary, heading


def test_each_adapter_is_evaluated_against_its_base_on_every_suite(session):
    """Per partition: the adapter and the base on every configured suite, compared; the base's outputs are the
    ones eval_report got for it (same model, items and greedy decoding), so partitions are comparable."""
    columns = ["suite", "eval_set", "item_id", "output", "nll"]
    whole = stored_table(session, "eval_report.parquet")
    base_in_report = whole.filter(pc.equal(whole["model"], "base")).select(columns)
    # The base is evaluated once (base_eval); the report and every partition reuse its rows.
    assert stored_table(session, "base_eval").select(columns).equals(base_in_report)
    assert latest_metadata(session.instance, "eval_report")["record"]["models"]["base"]["reused"] is True
    suites = set(session.project.spec.evaluation.suites)
    for aid in session.project.adapter_ids():
        report = stored_table(session, "task_adapter_report", f"{aid}.parquet")
        label = f"task_adapter[{aid}]"
        assert set(report.column("model").to_pylist()) == {"base", label}
        assert set(report.column("suite").to_pylist()) == suites
        assert report.filter(pc.equal(report["model"], "base")).select(columns).equals(base_in_report)
        mine = report.filter(pc.equal(report["model"], label))
        assert mine.num_rows == base_in_report.num_rows
        comparison = stored_table(session, "task_adapter_comparison", f"{aid}.parquet")
        assert set(comparison.column("candidate_model").to_pylist()) == {label}
        assert set(comparison.column("suite").to_pylist()) == suites - {"efficiency"}
        meta = latest_metadata(session.instance, "task_adapter_report", aid)
        assert meta["problems"] == 0 and "adapter/perplexity/ppl" in meta and "base/perplexity/ppl" in meta
        tabled = "adapter/structured/json_valid_rate"  # every metric in one entry, a few as numbers of their own
        assert tabled in meta["all_metrics"] and tabled not in meta and len(meta["all_metrics"]) > len(meta)
        assert meta["record"]["models"]["base"]["reused"] is True
