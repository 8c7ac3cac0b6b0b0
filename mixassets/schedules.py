"""Nightly refresh: re-fingerprint every source and spec; the automation conditions rebuild only what changed."""

from dagster import ScheduleDefinition

from mixtrain.automation import schedule_status
from mixtrain.jobs import refresh_specs

nightly_refresh = ScheduleDefinition(
    name="nightly_refresh",
    job=refresh_specs,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=schedule_status(),
    description="02:00 UTC: observe sources and specs; stale assets follow through automation conditions.",
)
