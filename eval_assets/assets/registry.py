"""The eval registry: every eval set frozen item by item with a checksum, and observed by content so that
adding or editing a set makes only the screen, and what follows it, stale."""

from dagster import AssetExecutionContext, DataVersion, observable_source_asset

from eval_assets.assets.wiring import GROUP, evaluation_asset
from eval_assets.engine.registry import eval_set_path, load_eval_set, registry_checksum
from eval_assets.engine.suites import checked_registry
from eval_assets.engine.task_plugins import task_fingerprints
from mixtrain.identity import spec_hash
from mixtrain.resources import ProjectResource
from mixtrain.storage import file_sha256
from mixtrain.versioning import table_output


@observable_source_asset(group_name=GROUP, description="Eval set specs, the files they read and the plugin tasks run.")
def eval_spec(project: ProjectResource) -> DataVersion:
    proj = project.load()
    sets = [e.model_dump(mode="json") for e in proj.spec.eval_sets]
    files = {e.id: file_sha256(eval_set_path(e, proj.resolve)) for e in proj.spec.eval_sets}
    evaluation = proj.spec.evaluation
    # Loading the plugin tasks here checks them (a broken one is reported by the observation, before any model
    # runs); their versions and code make the evaluation stale when a task changes. Without any, the version is
    # what it was before plugins existed.
    tasks = task_fingerprints(evaluation.suites, tuple(sorted(evaluation.tasks.items())))
    return DataVersion(spec_hash({"sets": sets, "files": files, **({"tasks": tasks} if tasks else {})}))


@evaluation_asset(
    deps=["eval_spec"],
    code_version="registry-1",
    description="All eval items (HumanEval, task holdouts) with the text fields the contamination screen checks.",
)
def eval_registry(context: AssetExecutionContext, project: ProjectResource):
    proj = project.load()
    tables = [load_eval_set(e, proj.resolve) for e in proj.spec.eval_sets]
    table = checked_registry(tables)
    counts = {f"items/{e.id}": t.num_rows for e, t in zip(proj.spec.eval_sets, tables, strict=True)}
    return table_output(table, {"items": table.num_rows, "registry_checksum": registry_checksum(table), **counts})
