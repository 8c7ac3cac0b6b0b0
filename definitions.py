"""The one code location: the three packages' definitions merged, with the project's resources.

One location so that a single run can go from raw sources to evaluation and blocking checks gate across
stages. The project comes from ``$MIXTRAIN_PROJECT`` (``mixtrain ui`` and ``mixtrain run`` set it); with
nothing set, the bundled demo project is loaded. Kinds, owners, tags, code references and lineage groups are
applied here (:mod:`mixtrain.conventions`), with the named stage jobs (:mod:`mixtrain.jobs`).
"""

import os
from pathlib import Path

from dagster import Definitions

import eval_assets
import mixassets
import training_assets
from mixtrain.automation import automation_condition_sensor, spec_observation_sensor
from mixtrain.conventions import conform_all
from mixtrain.jobs import stage_jobs
from mixtrain.partition_sync import partition_sync_checks
from mixtrain.project import PROJECT_ENV, load_project
from mixtrain.resources import project_resources

DEMO_PROJECT = Path(__file__).resolve().parent / "examples" / "demo"


def build_defs(project_dir: str | None = None) -> Definitions:
    project_dir = project_dir or os.environ.get(PROJECT_ENV) or str(DEMO_PROJECT)
    spec = load_project(project_dir).spec
    # The graph follows the project where a stage is optional: without a distillation section there are no
    # student assets, and the evaluation neither reads nor waits for them.
    students = spec.student_models()
    packages = [
        (mixassets.__name__, mixassets.defs),
        (training_assets.__name__, training_assets.build_defs(students)),
        (eval_assets.__name__, eval_assets.build_defs(students)),
    ]
    merged = Definitions.merge(
        conform_all(packages, spec.dagster),
        Definitions(jobs=stage_jobs(), resources=project_resources(project_dir)),
    )
    # Over the whole graph: the daemon's automation and the spec observations that feed it (both need every
    # domain's assets, so they are added here rather than in one package's definitions).
    checks = [c for c in [partition_sync_checks(merged)] if c is not None]
    automation = Definitions(
        sensors=[automation_condition_sensor(), spec_observation_sensor(merged)], asset_checks=checks
    )
    return Definitions.merge(merged, automation)


defs = build_defs()
