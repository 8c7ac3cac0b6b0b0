"""The evaluation side's definitions."""

from dagster import Definitions

from mixtrain.warnings_policy import hide_library_warnings

hide_library_warnings()  # before the asset modules: they use beta APIs at import (-v shows the notes)

from eval_assets.assets.adapter_eval import task_adapter_eval  # noqa: E402
from eval_assets.assets.base_eval import base_eval  # noqa: E402
from eval_assets.assets.registry import eval_registry, eval_spec  # noqa: E402
from eval_assets.assets.release import released_model  # noqa: E402
from eval_assets.assets.reports import eval_report  # noqa: E402
from eval_assets.checks import eval_report_complete, eval_report_truncation, release_gate  # noqa: E402

defs = Definitions(
    assets=[eval_spec, eval_registry, base_eval, eval_report, task_adapter_eval, released_model],
    asset_checks=[release_gate, eval_report_complete, eval_report_truncation],
)
