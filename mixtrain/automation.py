"""The one definition of "stale" shared by the daemon, the UI and ``mixtrain run``.

Dagster's ``eager()`` fires on any upstream materialization, changed or not, and skips assets that were
already missing before its first tick. mixtrain asks for something stricter and simpler: an asset is
requested when it is missing (and its last attempt did not fail), when its code version changed, or when an
upstream's *data version* — a content hash — changed; never while an upstream is missing, running, or has
failed a blocking check. A failed asset waits for a person or for changed inputs, so nothing retries in a loop.
"""

from dagster import AssetOut, AutomationCondition


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
