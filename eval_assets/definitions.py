"""The evaluation side's definitions."""

from collections.abc import Collection

from dagster import Definitions

from mixtrain.config.training import STUDENT_MODELS
from mixtrain.warnings_policy import hide_library_warnings

hide_library_warnings()  # before the asset modules: they use beta APIs at import (-v shows the notes)

from eval_assets.assets.adapter_eval import task_adapter_eval  # noqa: E402
from eval_assets.assets.base_eval import base_eval  # noqa: E402
from eval_assets.assets.registry import eval_registry, eval_spec  # noqa: E402
from eval_assets.assets.release import released_model_asset  # noqa: E402
from eval_assets.assets.reports import eval_report_asset  # noqa: E402
from eval_assets.checks import eval_report_complete, eval_report_truncation, release_gate  # noqa: E402
from eval_assets.engine.candidates import project_candidates  # noqa: E402


def build_defs(students: Collection[str] = STUDENT_MODELS) -> Definitions:
    """The evaluation graph over the candidates of a project that trains ``students``
    (``ProjectSpec.student_models``): the report and the release read and wait for those models only."""
    candidates = project_candidates(students)
    return Definitions(
        assets=[
            eval_spec,
            eval_registry,
            base_eval,
            eval_report_asset(candidates),
            task_adapter_eval,
            released_model_asset(candidates),
        ],
        asset_checks=[release_gate, eval_report_complete, eval_report_truncation],
    )


defs = build_defs()  # every candidate, as a project with a distillation section has them
