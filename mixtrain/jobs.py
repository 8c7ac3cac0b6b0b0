"""Jobs of the data side."""

from dagster import AssetSelection, define_asset_job

# Observable specs partitioned by something other than source carry this tag and are observed by their own job
# (``SPEC_JOBS``): one Dagster job cannot span two partitions definitions.
SEPARATE_SPECS_TAG = "mixtrain/specs"
SPEC_JOBS = ("refresh_specs", "refresh_adapter_specs")

# Every observable spec in the code location (source files, config sections of all three packages).
refresh_specs = define_asset_job(
    "refresh_specs",
    selection=AssetSelection.all(include_sources=True)
    - AssetSelection.all()
    - AssetSelection.tag(SEPARATE_SPECS_TAG, "adapters", include_sources=True),
    description="Fingerprint every source and config section; automation then rebuilds what changed.",
)
