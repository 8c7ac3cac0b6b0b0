"""Jobs of the data side."""

from dagster import AssetSelection, define_asset_job

# Every observable spec in the code location (source files, config sections of all three packages).
refresh_specs = define_asset_job(
    "refresh_specs",
    selection=AssetSelection.all(include_sources=True) - AssetSelection.all(),
    description="Fingerprint every source and config section; automation then rebuilds what changed.",
)
