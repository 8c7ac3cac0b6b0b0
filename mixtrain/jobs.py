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


# One named job per stage, so the runs list says what a run built (``mixtrain run`` launches its runs under the
# stage job that holds their assets). A stage is a package: its tag comes from mixtrain.conventions.
STAGE_JOBS = {
    "data_refresh": ("mixassets", "Gate, dedupe, screen and mix the corpus from the sources."),
    "train": ("training_assets", "Fetch the base model; train the SFT and task adapters and the distilled student."),
    "evaluate": ("eval_assets", "Build the eval registry, score every candidate and run the release gate."),
}


def stage_jobs() -> list:
    """The stage jobs, selecting by the ``package`` tag every asset carries."""
    return [
        define_asset_job(name, selection=AssetSelection.tag("package", package), description=description)
        for name, (package, description) in STAGE_JOBS.items()
    ]
