"""The data side's definitions; the top-level ``definitions.py`` merges them with the other packages'."""

from dagster import Definitions

from mixtrain.warnings_policy import hide_library_warnings

hide_library_warnings()  # before the asset modules: they use beta APIs at import (-v shows the notes)

from mixassets.assets.corpus import gated_documents, raw_documents, review_overrides  # noqa: E402
from mixassets.assets.curation import deduplicated_corpus, screened_corpus, source_manifest  # noqa: E402
from mixassets.assets.mixture import mixture  # noqa: E402
from mixassets.assets.reports import gating_history, gating_report  # noqa: E402
from mixassets.assets.specs import (  # noqa: E402
    dedupe_spec,
    gating_policy,
    mixture_spec,
    review_sheets,
    revocations,
    screen_spec,
    source_spec,
)
from mixassets.checks import mixture_contamination_free, mixture_license_policy, mixture_pii_free  # noqa: E402
from mixassets.schedules import nightly_refresh  # noqa: E402
from mixassets.sensors import new_source_sensor  # noqa: E402
from mixtrain.jobs import refresh_specs  # noqa: E402

defs = Definitions(
    assets=[
        source_spec,
        gating_policy,
        review_sheets,
        dedupe_spec,
        screen_spec,
        mixture_spec,
        revocations,
        raw_documents,
        review_overrides,
        gated_documents,
        source_manifest,
        gating_report,
        gating_history,
        deduplicated_corpus,
        screened_corpus,
        mixture,
    ],
    asset_checks=[mixture_license_policy, mixture_contamination_free, mixture_pii_free],
    jobs=[refresh_specs],
    schedules=[nightly_refresh],
    sensors=[new_source_sensor],
)
