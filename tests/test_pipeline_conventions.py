"""What the tiny project's first run (the shared ``pipeline_session``) shows in Dagster: runs under the named stage
jobs, table metadata the UI understands, a few rounded eval numbers with their table, and the adapter's loss curve."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from dagster import AssetKey, TableSchema

from eval_assets.engine.candidates import BASELINE
from mixtrain.jobs import SPEC_JOBS, STAGE_JOBS
from mixtrain.summary import latest_metadata
from tests.pipeline_session import Session
from training_assets.engine.curves import LOSS_CURVE_FILE, TRAINER_STATE_FILE


@pytest.fixture
def session(pipeline_session) -> Session:
    if pipeline_session.changed:
        pytest.fail("these checks read what the first run left: run them before test_pipeline_reruns.py")
    return pipeline_session


def test_runs_are_named_after_their_stage(session):
    names = {session.instance.get_run_by_id(run_id).job_name for run_id in session.first.run_ids}
    assert {"data_refresh", "train", "evaluate"} <= names, names
    assert names <= {*STAGE_JOBS, *SPEC_JOBS, "__ephemeral_asset_job__"}, names


def test_table_materializations_carry_row_count_and_column_schema(session):
    for key in ("mixture", "screened_corpus", "eval_registry"):
        # the metadata values themselves (latest_metadata gives their plain values)
        records = session.instance.fetch_materializations(AssetKey(key), limit=1).records
        md = records[0].asset_materialization.metadata
        assert md["dagster/row_count"].value > 0, key
        schema = md["dagster/column_schema"].value
        assert isinstance(schema, TableSchema) and schema.columns, key
        assert any(c.constraints.nullable is False for c in schema.columns), key  # doc_id / item ids are required


def test_eval_numbers_are_few_rounded_and_tabled(session):
    report = latest_metadata(session.instance, "eval_report")
    numbers = {k: v for k, v in report.items() if isinstance(v, int | float) and not k.startswith("dagster/")}
    assert len(numbers) <= 10, sorted(numbers)  # a few headline numbers the UI plots; the rest in the table
    gate = session.project.spec.release_gate
    assert {f"{BASELINE}/structured/{gate.primary_metric}", "release_gate/passed", "problems"} <= set(numbers)
    everything = report["all_metrics"]
    assert len(everything) > 3 * len(numbers)  # what used to be flat keys is kept, as one entry
    for k, v in numbers.items():
        assert everything.get(k, v) == v, k  # a headline number is the same one as in the full set
    floats = [v for v in [*numbers.values(), *everything.values()] if isinstance(v, float) and math.isfinite(v)]
    digits = [f"{abs(v):.15g}".replace(".", "").strip("0") for v in floats]
    assert floats and all(len(d) <= 4 for d in digits), floats  # 4 significant digits at most
    assert report["metrics"].startswith("| model |") and f"| {BASELINE} |" in report["metrics"]


def test_adapter_shows_its_loss_curve_and_keeps_it_next_to_the_weights(session):
    adapter = latest_metadata(session.instance, "sft_adapter")
    assert adapter["loss_curve"].startswith("| step | loss | lr | tokens |")
    found = list(Path(session.project.storage_root).rglob(TRAINER_STATE_FILE))
    assert any("sft_adapter" in p.parts for p in found), found
    assert all((p.parent / LOSS_CURVE_FILE).is_file() for p in found)
