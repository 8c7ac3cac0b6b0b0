"""The one definition of "stale" shared by the daemon, the UI and ``mixtrain run``.

Dagster's ``eager()`` fires on any upstream materialization, changed or not, and skips assets that were
already missing before its first tick. mixtrain asks for something stricter and simpler: an asset is
requested when it is missing (and its last attempt did not fail), when its code version changed, or when an
upstream's *data version* — a content hash — changed; never while an upstream is missing, running, or has
failed a blocking check. A failed asset waits for a person or for changed inputs, so nothing retries in a loop.

Under ``mixtrain ui`` the daemon acts on it: the automation condition sensor, the spec observation sensor, the
other sensors and the nightly schedule start RUNNING. ``$MIXTRAIN_AUTOMATION=off`` (``mixtrain ui
--no-automation``) starts them stopped, for a UI that only looks.
"""

from __future__ import annotations

import json
import os

from dagster import (
    AssetObservation,
    AssetOut,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from mixtrain.dagster_internals import DATA_VERSION_TAG
from mixtrain.observe import observe_in_process
from mixtrain.partition_sync import behind, evaluations
from mixtrain.versioning import current_data_version

AUTOMATION_ENV = "MIXTRAIN_AUTOMATION"  # "off": sensors and schedules start stopped
SPEC_SENSOR_INTERVAL_S = 5  # an edited spec shows as unsynced in the UI within a few seconds
AUTOMATION_SENSOR_INTERVAL_S = 30


def automation_on() -> bool:
    """Whether sensors and schedules start running; read when the code location loads."""
    value = os.environ.get(AUTOMATION_ENV, "on").strip().lower()
    if value not in ("on", "off"):
        raise ValueError(f"${AUTOMATION_ENV} must be 'on' or 'off', got {value!r}")
    return value == "on"


def sensor_status() -> DefaultSensorStatus:
    return DefaultSensorStatus.RUNNING if automation_on() else DefaultSensorStatus.STOPPED


def schedule_status() -> DefaultScheduleStatus:
    return DefaultScheduleStatus.RUNNING if automation_on() else DefaultScheduleStatus.STOPPED


def rerun_when_changed() -> AutomationCondition:
    trigger = (
        (AutomationCondition.missing() & ~AutomationCondition.execution_failed())
        | AutomationCondition.code_version_changed()
        | AutomationCondition.any_deps_match(AutomationCondition.data_version_changed())
    )
    handled = AutomationCondition.newly_requested() | AutomationCondition.newly_updated()
    return (
        trigger.since(handled)
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
        & AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("rerun_when_changed")


def changed_out(code_version: str, description: str, **kwargs) -> AssetOut:
    """A multi-asset output under the shared automation condition (multi-assets set it per output)."""
    return AssetOut(
        code_version=code_version, description=description, automation_condition=rerun_when_changed(), **kwargs
    )


def automation_condition_sensor() -> AutomationConditionSensorDefinition:
    """The daemon's evaluation of :func:`rerun_when_changed` over every asset, named and running (Dagster's
    implicit default sensor starts stopped)."""
    return AutomationConditionSensorDefinition(
        "automation_condition_sensor",
        target=AssetSelection.all(),
        default_status=sensor_status(),
        minimum_interval_seconds=AUTOMATION_SENSOR_INTERVAL_S,
        description="Requests what rerun_when_changed selects: missing assets, changed code versions, changed "
        "upstream data versions.",
    )


def _cursor_key(key: str, partition: str | None) -> str:
    return key if partition is None else f"{key}[{partition}]"


def spec_observation_sensor(defs: Definitions) -> SensorDefinition:
    """A sensor that records an observation of each spec (per partition) whose content hash changed, and the
    ``partitions_in_sync`` check of each partitioned asset whose stale partitions changed.

    It calls the specs' observe functions in its own process (:func:`mixtrain.observe.observe_in_process`, what
    ``mixtrain status`` compares against) and emits an observation event only for a spec whose version differs
    from the one the instance last recorded: no run is launched, so it can tick every few seconds and an edited
    spec shows as unsynced in the UI right away. The cursor keeps the versions of the last tick, so a tick where
    no file changed asks the instance nothing about specs. Partition staleness (which the UI's unsynced tag does
    not cover, see :mod:`mixtrain.partition_sync`) is asked again only when a spec changed or the event log grew
    since the last tick, and recorded only where the answer changed."""

    @sensor(
        name="spec_observation_sensor",
        minimum_interval_seconds=SPEC_SENSOR_INTERVAL_S,
        default_status=sensor_status(),
        description="Observes the project's specs (source files, config sections, adapters) in-process and "
        "records a new data version for each one whose content hash changed; automation follows from there. "
        "Also records which partitions are stale (check partitions_in_sync).",
    )
    def _observe_specs(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        instance = context.instance
        found = observe_in_process(defs, instance)
        observed = {
            (key, partition, _cursor_key(key.to_user_string(), partition)): v for (key, partition), v in found.items()
        }
        versions = {name: version.value for (_, _, name), version in observed.items()}
        last: dict = json.loads(context.cursor) if context.cursor else {}
        seen: dict[str, str] = last.get("specs", {})
        events: list = [
            AssetObservation(asset_key=key, partition=partition, tags={DATA_VERSION_TAG: version.value})
            for (key, partition, name), version in sorted(observed.items(), key=lambda item: item[0][2])
            if seen.get(name) != version.value and current_data_version(instance, key, partition) != version.value
        ]
        last_event = instance.event_log_storage.get_maximum_record_id()
        behind_before: dict[str, list] = last.get("behind", {})
        behind_now = behind_before
        if events or "behind" not in last or last.get("last_event") != last_event:
            behind_now = {k: [list(row) for row in rows] for k, rows in behind(defs, instance, found).items()}
            changed = {k: rows for k, rows in behind_now.items() if behind_before.get(k) != rows}
            events += evaluations({k: [tuple(row) for row in rows] for k, rows in changed.items()})
        cursor = json.dumps({"specs": versions, "last_event": last_event, "behind": behind_now}, sort_keys=True)
        if not events:
            context.update_cursor(cursor)
            return SkipReason(f"no spec changed ({len(versions)} observed), stale partitions unchanged")
        return SensorResult(asset_events=events, cursor=cursor)

    return _observe_specs
