"""What the evaluation assets share: their group, the models they read as inputs, and an evaluation run
written out as a report (per item) and a comparison (per metric and slice)."""

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from dagster import AssetExecutionContext, AssetIn, MetadataValue, Output, asset

from eval_assets.engine.candidates import Candidate
from eval_assets.engine.comparison import EvalRun
from mixtrain.automation import rerun_when_changed
from mixtrain.metadata import metric_table, rounded
from mixtrain.progress import progress_message
from mixtrain.versioning import table_output

GROUP = "evaluation"


def model_in() -> AssetIn:
    """A model's JSON (path, weights hash, manifest) as an input."""
    return AssetIn(input_manager_key="json_io_manager")


def candidate_ins(candidates: Sequence[Candidate]) -> dict[str, AssetIn]:
    """Every one of ``candidates`` as an input, by asset key (the asset takes them as ``**trained``)."""
    return {c.name: model_in() for c in candidates}


def evaluation_asset(**kwargs: Any) -> Any:
    """``@asset`` in the evaluation group under the shared automation condition."""
    return asset(group_name=GROUP, automation_condition=rerun_when_changed(), **kwargs)


def log_progress(context: AssetExecutionContext) -> Callable[[dict[str, Any]], None]:
    """Each (candidate, suite) an evaluation finishes, as a step log: the UI lists it, `mixtrain run` prints it."""
    return lambda info: context.log.info(progress_message(**info))


def run_outputs(
    run: EvalRun,
    report: str,
    comparison: str,
    headline: Mapping[str, Any],
    values: Mapping[str, float],
) -> Iterator[Output]:
    """The run's items as ``report`` and its comparison as ``comparison`` (rendered as Markdown). The report's
    metadata: the ``headline`` numbers (plotted by the UI), the problem count, every metric of ``values``
    (``reporting.reported_metrics``) as one table and as JSON for tools (``mixtrain summary``), and the
    reproducibility record."""
    metadata = {
        **headline,  # floats rounded by table_output
        "problems": len(run.problems),
        "metrics": MetadataValue.md(metric_table(values)),  # one row per model
        "all_metrics": MetadataValue.json(rounded(values)),
        "record": MetadataValue.json(run.record),
    }
    yield table_output(run.items, metadata, name=report)
    yield table_output(run.comparison, {"comparison": MetadataValue.md(run.to_markdown())}, name=comparison)
