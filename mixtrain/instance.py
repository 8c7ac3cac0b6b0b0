"""The project's Dagster instance and code location, opened the same way by the CLI and the tests."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, Definitions

from mixtrain.project import PROJECT_ENV, Project, load_project

CODE_LOCATION_MODULE = "definitions"  # the module workspace.yaml loads: all three packages, one location


def activate(project_dir: str | os.PathLike[str]) -> Project:
    """Point this process at a project: its DAGSTER_HOME (created, telemetry off) and the project env var."""
    project = load_project(project_dir)
    home = project.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():  # offline by default: no telemetry calls from a pipeline that may hold private data
        config.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ[PROJECT_ENV] = str(project.root)
    return project


def open_instance(project: Project) -> DagsterInstance:
    return DagsterInstance.from_config(str(project.dagster_home))


def load_definitions(project: Project) -> Definitions:
    """The code location as ``dagster dev -w workspace.yaml`` loads it, bound to this project."""
    module: Any = importlib.import_module(CODE_LOCATION_MODULE)
    return module.build_defs(str(project.root))


def workspace_file() -> Path | None:
    module: Any = importlib.import_module(CODE_LOCATION_MODULE)
    path = Path(module.__file__).with_name("workspace.yaml")
    return path if path.exists() else None
