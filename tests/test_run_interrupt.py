"""One Ctrl-C stops ``mixtrain run`` cleanly: a real SIGINT to a real ``mixtrain run`` on a tiny project.

The signal goes to the command's whole process group, as a terminal's Ctrl-C does, once the first data stage
has reported its rows. The run must end with status 130 and one summary line, no traceback; the Dagster run it
was executing is CANCELED, none is left STARTED, every committed table reads back whole; and the next
``mixtrain run`` finishes the pipeline, printing training progress (every step: ``--progress-every 0``).

Marked ``faults`` (``make test-faults``): building the tiny project and running its whole pipeline takes minutes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterRunStatus, RunsFilter

from mixtrain.tables import MANIFEST_NAME, open_table
from tests.conftest import build_tiny_project

pytestmark = pytest.mark.faults


def _start(project: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "mixtrain.cli", "run", "--project", str(project), "--progress-every", "0", *extra]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, bufsize=1
    )


def _runs(project: Path) -> dict[DagsterRunStatus, int]:
    from mixtrain.instance import activate, open_instance

    counts: dict[DagsterRunStatus, int] = {}
    with open_instance(activate(project)) as instance:
        for run in instance.get_runs(RunsFilter()):
            counts[run.status] = counts.get(run.status, 0) + 1
    return counts


def test_one_ctrl_c_stops_cleanly_and_the_next_run_completes(tmp_path: Path, tiny_model_dir: Path) -> None:
    project = build_tiny_project(tmp_path / "project", tiny_model_dir)
    proc = _start(project)
    seen: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("✓ raw_documents"):  # a data stage finished: the run is under way
            break
        assert time.monotonic() < deadline, "".join(seen)
    else:
        raise AssertionError("the run ended before a data stage reported:\n" + "".join(seen) + proc.stderr.read())
    os.killpg(proc.pid, signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    out = "".join(seen) + rest

    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "Traceback" not in out, err
    summary = [line for line in err.splitlines() if line.startswith("mixtrain run: interrupted")]
    assert len(summary) == 1, err
    assert "materialized" in summary[0] and "not materialized:" in summary[0], summary[0]

    statuses = _runs(project)
    assert statuses.get(DagsterRunStatus.CANCELED) == 1, statuses  # the stopped run, marked once
    assert not statuses.get(DagsterRunStatus.STARTED), statuses
    assert not statuses.get(DagsterRunStatus.FAILURE), statuses
    for manifest in (project / "storage").rglob(MANIFEST_NAME):
        open_table(manifest.parent).verify()  # nothing partial was committed

    again = _start(project)
    out, err = again.communicate(timeout=900)
    assert again.returncode == 0, out + err
    assert "Traceback" not in err, err
    assert "step 1/2" in out and "step 2/2" in out and "tok/s" in out, out
    assert "eval_report: " in out and "suite " in out, out
    assert not _runs(project).get(DagsterRunStatus.STARTED)
