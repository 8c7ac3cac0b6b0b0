"""Nightly refresh: re-fingerprint every source and spec; the automation conditions rebuild only what changed."""

from dagster import DefaultScheduleStatus, ScheduleDefinition

from mixtrain.jobs import refresh_specs

nightly_refresh = ScheduleDefinition(
    name="nightly_refresh",
    job=refresh_specs,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="02:00 UTC: observe sources and specs; stale assets follow through automation conditions.",
)
