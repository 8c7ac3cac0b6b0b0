"""The daemon acts by default, and an edited spec is recorded by the spec observation sensor within one tick.

A small code location stands in for the project's (as in ``test_status_observed``): an unpartitioned spec and a
spec partitioned like the sources, each with a materialized child. The sensor is called the way the daemon calls
it (``build_sensor_context`` with the instance and the last cursor); the observations it returns are recorded
the way the daemon records a sensor's asset events, and Dagster's own stale resolver (the UI's) is then asked.
"""

from __future__ import annotations

import json

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetObservation,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    SensorResult,
    SkipReason,
    asset,
    build_sensor_context,
    materialize,
)

from mixtrain import automation
from mixtrain.automation import spec_observation_sensor
from mixtrain.dagster_internals import stale_statuses
from mixtrain.partition_sync import CHECK_NAME
from tests.spec_graph import PARTS, VERSIONS, child, part_spec, spec


@asset(deps=[part_spec], partitions_def=PARTS, code_version="1", key_prefix="vault")  # a two-part key
def part_child() -> int:
    return 1


DEFS = Definitions(assets=[spec, part_spec, child, part_child])
SENSOR = spec_observation_sensor(DEFS)


def _tick(instance: DagsterInstance, cursor: str | None) -> tuple[SensorResult | SkipReason, str | None]:
    """One evaluation as the daemon runs it: its asset events recorded without a run, its cursor kept."""
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=DEFS)
    result = SENSOR(context)
    if isinstance(result, SensorResult):
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
        return result, result.cursor
    return result, context.cursor


def _observations(result: SensorResult) -> list[AssetObservation]:
    return [e for e in result.asset_events if isinstance(e, AssetObservation)]


def _behind(result: SensorResult) -> dict[str, list[str]]:
    """The partitions_in_sync evaluations of a tick: asset -> partitions listed as behind."""
    out = {}
    for e in result.asset_events:
        if isinstance(e, AssetCheckEvaluation):
            assert e.check_name == CHECK_NAME and e.passed == (e.metadata["partitions_behind"].value == 0)
            table = e.metadata["partitions"].value
            out[e.asset_key.to_user_string()] = [p for p in ("x", "y") if f"| {p} |" in table]
    return out


def _stale(instance: DagsterInstance) -> dict:
    statuses = stale_statuses(DEFS, instance, {"srcs": ["x", "y"]})  # recorded observations only, as the UI
    return {(s.key, s.partition): s.status for s in statuses}


def test_sensor_records_an_edited_spec_and_nothing_else(tmp_path) -> None:
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        VERSIONS.update(spec="a", parts={"x": "1", "y": "1"})
        instance.add_dynamic_partitions("srcs", ["x", "y"])
        first, cursor = _tick(instance, None)
        assert isinstance(first, SensorResult)
        assert len(_observations(first)) == 3  # spec, part_spec[x], part_spec[y]
        assert _behind(first) == {"vault/part_child": ["x", "y"]}  # never materialized: MISSING
        materialize([spec, child], selection=[child], instance=instance)
        for pk in ("x", "y"):
            materialize([part_spec, part_child], selection=[part_child], partition_key=pk, instance=instance)
        assert set(_stale(instance).values()) == {"FRESH"}
        caught_up, cursor = _tick(instance, cursor)  # the materializations grew the event log: asked again
        assert isinstance(caught_up, SensorResult) and not _observations(caught_up)
        assert _behind(caught_up) == {"vault/part_child": []}

        runs = instance.get_runs_count()
        quiet, cursor = _tick(instance, cursor)
        assert isinstance(quiet, SkipReason) and "no spec changed" in (quiet.skip_message or "")

        VERSIONS.update(spec="b", parts={"x": "1", "y": "2"})  # the user edits the spec and one source
        edited, cursor = _tick(instance, cursor)
        assert isinstance(edited, SensorResult)
        recorded = {(e.asset_key.to_user_string(), e.partition) for e in _observations(edited)}
        assert recorded == {("spec", None), ("part_spec", "y")}
        # The UI's unsynced tag cannot show part_child[y]; the partitions_in_sync check says it.
        assert _behind(edited) == {"vault/part_child": ["y"]}
        assert instance.get_runs_count() == runs  # observed without launching a run
        assert _stale(instance) == {
            ("child", None): "STALE",
            ("vault/part_child", "x"): "FRESH",
            ("vault/part_child", "y"): "STALE",
        }
        assert json.loads(cursor or "{}")["specs"] == {"spec": "b", "part_spec[x]": "1", "part_spec[y]": "2"}

        again, _ = _tick(instance, cursor)
        assert isinstance(again, SkipReason)


def test_a_lost_cursor_does_not_record_unchanged_specs_again(tmp_path) -> None:
    """A restarted daemon (no cursor) compares with what the instance holds, so nothing unchanged is re-recorded."""
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        VERSIONS.update(spec="a", parts={"x": "1"})
        instance.add_dynamic_partitions("srcs", ["x"])
        _tick(instance, None)
        restarted, cursor = _tick(instance, None)
        assert isinstance(restarted, SensorResult) and not _observations(restarted)  # only the check again
        assert json.loads(cursor or "{}")["specs"] == {"spec": "a", "part_spec[x]": "1"}


def test_sensors_and_schedule_run_by_default_and_one_switch_stops_them(monkeypatch) -> None:
    from definitions import build_defs

    monkeypatch.delenv(automation.AUTOMATION_ENV, raising=False)
    repo = build_defs().get_repository_def()
    sensors = {s.name: s.default_status for s in repo.sensor_defs}
    assert {"automation_condition_sensor", "spec_observation_sensor", "new_source_sensor"} <= set(sensors)
    assert "adapter_partitions_sensor" in sensors
    assert set(sensors.values()) == {DefaultSensorStatus.RUNNING}
    assert {s.default_status for s in repo.schedule_defs} == {DefaultScheduleStatus.RUNNING}
    assert repo.get_sensor_def("spec_observation_sensor").minimum_interval_seconds <= 10

    monkeypatch.setenv(automation.AUTOMATION_ENV, "off")
    assert automation.sensor_status() == DefaultSensorStatus.STOPPED
    assert automation.schedule_status() == DefaultScheduleStatus.STOPPED
    monkeypatch.setenv(automation.AUTOMATION_ENV, "sometimes")
    with pytest.raises(ValueError, match="must be 'on' or 'off'"):
        automation.sensor_status()


def test_fingerprints_rehash_a_file_only_when_its_stat_changed(tmp_path, monkeypatch) -> None:
    """The sensor fingerprints every source file each tick; an untouched old file is hashed once, an edited one
    again (its mtime moved), and one modified within the clock's resolution window is never cached."""
    import os

    from mixtrain import fingerprint

    calls: list[str] = []
    real = fingerprint.file_sha256
    monkeypatch.setattr(fingerprint, "file_sha256", lambda p: calls.append(p) or real(p))
    old, fresh = tmp_path / "old.jsonl", tmp_path / "fresh.jsonl"
    old.write_text("one\n")
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    fresh.write_text("two\n")
    first = fingerprint._content_sha256(str(old))
    assert fingerprint._content_sha256(str(old)) == first and calls.count(str(old)) == 1
    fingerprint._content_sha256(str(fresh))
    fingerprint._content_sha256(str(fresh))
    assert calls.count(str(fresh)) == 2  # racy: too recent to trust its stat
    old.write_text("uno\n")  # same size, new content and mtime
    assert fingerprint._content_sha256(str(old)) != first and calls.count(str(old)) == 2


def test_the_check_runs_with_its_asset_and_asks_only_about_it(tmp_path) -> None:
    """Dagster adds an asset's checks to the runs that materialize it: the check is subset to that asset and
    reports its partitions as they are once it was written (here: x written, y never)."""
    from mixtrain.partition_sync import partition_sync_checks

    checks = partition_sync_checks(DEFS)
    assert checks is not None
    defs = Definitions(assets=DEFS.assets, asset_checks=[checks])
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        VERSIONS.update(spec="a", parts={"x": "1", "y": "1"})
        instance.add_dynamic_partitions("srcs", ["x", "y"])
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=instance, asset_selection=[part_child.key], partition_key="x")
        evaluations = result.get_asset_check_evaluations()
        assert [(e.asset_key.to_user_string(), e.check_name, e.passed) for e in evaluations] == [
            ("vault/part_child", CHECK_NAME, False)
        ]
        table = evaluations[0].metadata["partitions"].value
        assert "| y | MISSING |" in table and "| x |" not in table
