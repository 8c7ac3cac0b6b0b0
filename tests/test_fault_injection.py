"""SIGKILL drills (``make test-faults``): a tiny project is run with ``mixtrain run`` and killed at one point after
another (see :mod:`mixtrain.faults`), each rerun picking up where the killed one stopped and then being killed
itself further on, until a last rerun finishes. The result must equal an uninterrupted run of a copy of the same
project: every committed table, every model file and every data version Dagster recorded; and nothing a killed
run left may survive: no temp or uncommitted file, no run still marked STARTED.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterRunStatus, RunsFilter

from mixtrain.durable import is_temp_name
from mixtrain.faults import KILL_ENV
from mixtrain.identity import bytes_sha256, file_sha256
from mixtrain.tables import MANIFEST_NAME, PART_PREFIX, open_table, version_of
from tests.conftest import build_tiny_project

pytestmark = pytest.mark.faults

# In pipeline order: each is reached by the rerun that follows the previous kill.
KILL_POINTS = [
    "table.part@raw_documents",  # reading: a source's first part renamed in, not committed
    "table.commit@raw_documents#3",  # reading: a later source committed, Dagster not told
    "model.pointer@base_model",  # publishing the base: its version complete, the pointer not yet moved
    "table.part@gated_documents",  # gating: mid-write
    "table.commit@quarantine",  # gating: between the outputs of one multi-asset
    "table.commit@deduplicated_corpus",  # dedupe: between write and record
    "table.commit@screened_corpus",  # screen: between write and record
    "object.write@mixture_manifest",  # mixture: its manifest written, not recorded
    "train.step",  # training: after the first optimiser step (and its checkpoint, when it keeps them)
    "model.pointer@sft_adapter",  # publishing an adapter: its version complete, the pointer not yet moved
    "object.write@sft_adapter",  # the adapter's record written, Dagster not told
    "object.write@released_model",  # the release record written, not recorded
]


def _mixtrain(project: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill_at is not None:
        env[KILL_ENV] = kill_at
    argv = [sys.executable, "-m", "mixtrain.cli", "run", "--project", str(project)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)


# Columns that measure the run rather than the data (an eval item's wall-clock latency): equal inputs cannot
# make them equal, so tables holding them are compared without them.
MEASURED = {"latency_s"}
# Records of the runs themselves (gating_history: a row per gated materialization, with its CPU seconds): a drill
# gates some partitions more than once by design, so these differ from the uninterrupted run's and are compared
# apart.
HISTORY = {"gating_history"}


def _outputs(project: Path) -> dict[str, str]:
    """Every committed table's version (its content without measured columns, where it has any) and every model
    file's sha256, by path under the storage root."""
    root = project / "storage"
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if rel.split("/")[0] in HISTORY:
            continue
        if path.name == MANIFEST_NAME:
            table = open_table(path.parent)
            measured = MEASURED & set(table.schema.names)
            if measured:
                content = table.read().drop_columns(sorted(measured)).to_pylist()
                found[rel] = bytes_sha256(json.dumps(content, sort_keys=True, default=str).encode())
            else:
                found[rel] = version_of(path.read_bytes())
        elif path.suffix == ".safetensors":
            found[rel] = file_sha256(str(path))
    return found


def _measured_assets(project: Path) -> set[str]:
    """Assets whose data version is their manifest hash, which covers measured columns."""
    root = project / "storage"
    return {
        str(p.parent.relative_to(root)).split("/")[0]
        for p in root.rglob(MANIFEST_NAME)
        if MEASURED & set(open_table(p.parent).schema.names)
    }


def _data_versions(project: Path) -> dict[str, str | None]:
    from mixtrain.instance import activate, load_definitions, open_instance
    from mixtrain.partitions import partition_keys
    from mixtrain.versioning import current_data_version

    proj = activate(project)
    defs = load_definitions(proj)
    graph = defs.resolve_asset_graph()
    out: dict[str, str | None] = {}
    with open_instance(proj) as instance:
        parts = partition_keys(proj)
        for key in graph.materializable_asset_keys:
            definition = graph.get(key).partitions_def
            pks = [None] if definition is None else parts.get(getattr(definition, "name", "") or "", [])
            for pk in pks:
                out[f"{key.to_user_string()}[{pk}]"] = current_data_version(instance, key, pk)
    return out


def _leftovers(project: Path) -> list[str]:
    """Temp files anywhere in the project, and table parts no manifest lists."""
    left = []
    for path in project.rglob("*"):
        if is_temp_name(path.name):
            left.append(str(path))
        elif path.name.startswith(PART_PREFIX) and path.suffix == ".parquet":
            manifest = path.parent / MANIFEST_NAME
            if not manifest.exists() or path.name not in manifest.read_text():
                left.append(str(path))
    return left


def _verify_committed(project: Path) -> int:
    """Every table a manifest commits reads back whole with its parts' sha256 (what a kill anywhere must leave)."""
    manifests = list((project / "storage").rglob(MANIFEST_NAME))
    for manifest in manifests:
        open_table(manifest.parent).verify()
    return len(manifests)


def _unfinished_runs(project: Path) -> list[str]:
    from mixtrain.instance import activate, open_instance

    with open_instance(activate(project)) as instance:
        statuses = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.NOT_STARTED]
        return [r.run_id for r in instance.get_runs(RunsFilter(statuses=statuses))]


def test_runs_killed_at_each_point_recover_to_the_uninterrupted_result(tmp_path: Path, tiny_model_dir: Path) -> None:
    faulted = build_tiny_project(tmp_path / "faulted", tiny_model_dir)
    clean = tmp_path / "clean"
    shutil.copytree(faulted, clean)

    reference = _mixtrain(clean)
    assert reference.returncode == 0, reference.stdout[-3000:] + reference.stderr[-3000:]

    for point in KILL_POINTS:
        killed = _mixtrain(faulted, kill_at=point)
        # The kill lands in the process doing the work: `mixtrain run`'s child, whose death by SIGKILL the CLI
        # reports as 128 + 9 as a shell would (or the CLI itself, were a point ever reached before the child).
        assert killed.returncode in (128 + signal.SIGKILL, -signal.SIGKILL), (
            f"the run never reached {point} (rc {killed.returncode}):\n{killed.stdout[-2000:]}{killed.stderr[-2000:]}"
        )
        _verify_committed(faulted)  # whatever the kill interrupted, what is committed is whole
    final = _mixtrain(faulted)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]

    assert _outputs(faulted) == _outputs(clean)
    measured = _measured_assets(clean)
    # Known, so that nothing else slips out unchecked.
    assert measured == {"base_eval", "eval_report", "released_model_eval", "task_adapter_report"}

    def compared(project: Path) -> dict[str, str | None]:
        return {k: v for k, v in _data_versions(project).items() if k.split("[")[0] not in measured | HISTORY}

    assert compared(faulted) == compared(clean)
    history = {p.name: open_table(p / "storage" / "gating_history").read() for p in (faulted, clean)}
    # The same sources and rules, at least once each; the drill's repeated gating only adds rows.
    keys = {
        name: set(zip(t["source_id"].to_pylist(), t["rule_id"].to_pylist(), strict=True)) for name, t in history.items()
    }
    assert keys["faulted"] == keys["clean"] and history["faulted"].num_rows >= history["clean"].num_rows
    assert _leftovers(faulted) == []
    assert _unfinished_runs(faulted) == []
    again = _mixtrain(faulted)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout[-2000:]
