"""What a crashed run leaves behind, cleared at the start of the next ``mixtrain run`` (under the project lock).

- temp files of writers that are gone (their names say which host and pid wrote them; a name that does not
  say, or another host's, is cleared once it is older than ``grace_s``);
- table parts that no manifest lists (a writer killed before its commit), older than ``grace_s``: a writer in
  flight renames finished parts into the table directory before it commits them, so age is what tells;
- runs that ``mixtrain run`` started and that are still STARTED in the event log: the lock proves their process
  is dead, so they are marked failed (otherwise the UI shows them running forever).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from upath import UPath

from mixtrain.durable import is_temp_name, writer_alive
from mixtrain.project import Project
from mixtrain.tables import MANIFEST_NAME, PART_PREFIX, is_local

TRIGGER_TAG = "mixtrain/trigger"
RUN_TRIGGER = "mixtrain run"
GRACE_S = 3600.0
UNFINISHED = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.NOT_STARTED]


@dataclass
class SweepReport:
    temp_files: list[str] = field(default_factory=list)
    orphan_parts: list[str] = field(default_factory=list)
    abandoned_runs: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.temp_files:
            out.append(f"removed {len(self.temp_files)} temp files a crashed run left (e.g. {self.temp_files[0]})")
        if self.orphan_parts:
            out.append(f"removed {len(self.orphan_parts)} uncommitted table parts (e.g. {self.orphan_parts[0]})")
        if self.abandoned_runs:
            out.append(f"marked {len(self.abandoned_runs)} runs left STARTED by a dead process as failed")
        return out


def _age_s(path: UPath, now: float) -> float:
    try:
        info = path.fs.info(path.path)
    except FileNotFoundError:
        return 0.0
    mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
    if mtime is None:
        return 0.0
    stamp = mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime)
    return now - stamp


def _stale_temp(path: UPath, now: float, grace_s: float) -> bool:
    alive = writer_alive(path.name)
    if alive is None:
        return _age_s(path, now) > grace_s
    return not alive


def _entries(root: UPath) -> list[UPath]:
    """Files under ``root``, and temp directories as single entries (a staged model directory is one unit)."""
    if not root.exists():
        return []
    if not is_local(root):
        return [root.joinpath(p[len(root.path.rstrip("/")) + 1 :]) for p in root.fs.find(root.path)]
    out = []
    for folder, dirs, files in os.walk(root.path):
        for d in [d for d in dirs if is_temp_name(d)]:
            dirs.remove(d)
            out.append(UPath(os.path.join(folder, d)))
        out.extend(UPath(os.path.join(folder, f)) for f in files)
    return out


def _remove(path: UPath) -> None:
    if is_local(path) and Path(path.path).is_dir():
        shutil.rmtree(path.path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _listed(manifest: UPath) -> set[str]:
    try:
        return {p["name"] for p in json.loads(manifest.read_bytes()).get("parts", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def sweep_storage(roots: list[UPath], *, grace_s: float = GRACE_S, now: float | None = None) -> SweepReport:
    """Remove dead writers' temp files and unlisted table parts under ``roots``."""
    now = time.time() if now is None else now
    report = SweepReport()
    for root in roots:
        manifests: dict[str, set[str]] = {}
        for path in _entries(root):
            name = path.name
            if is_temp_name(name):
                if _stale_temp(path, now, grace_s):
                    _remove(path)
                    report.temp_files.append(str(path))
                continue
            if not (name.startswith(PART_PREFIX) and name.endswith(".parquet")):
                continue
            folder = str(path.parent)
            if folder not in manifests:
                manifests[folder] = _listed(path.parent / MANIFEST_NAME)
            if name not in manifests[folder] and _age_s(path, now) > grace_s:
                path.unlink(missing_ok=True)
                report.orphan_parts.append(str(path))
    return report


def fail_abandoned_runs(instance: DagsterInstance) -> list[str]:
    """Mark failed the runs ``mixtrain run`` started that never finished; call only while holding the project
    lock (their process is then certainly gone)."""
    runs = instance.get_runs(RunsFilter(statuses=UNFINISHED, tags={TRIGGER_TAG: RUN_TRIGGER}))
    for run in runs:
        instance.report_run_failed(run, message="the mixtrain run that started this run died before it finished")
    return [run.run_id for run in runs]


def sweep_project(project: Project, instance: DagsterInstance, *, grace_s: float = GRACE_S) -> SweepReport:
    local_parts = Path(tempfile.gettempdir()) / "mixtrain-parts"  # TableWriter's staging for remote roots
    local = [project.root / ".mixtrain-cache", project.dagster_home, local_parts]
    roots = [UPath(project.storage_root), *(UPath(str(p)) for p in local)]
    report = sweep_storage(roots, grace_s=grace_s)
    report.abandoned_runs = fail_abandoned_runs(instance)
    return report
