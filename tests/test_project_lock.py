"""One ``mixtrain run`` per project: a second refuses (or waits) naming the holder; a SIGKILLed holder never
leaves the project locked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mixtrain.cli import main
from mixtrain.project import load_project
from mixtrain.project_lock import HOLDER_NAME, ProjectLocked, project_lock

HOLD = textwrap.dedent(
    """
    import sys, time
    from mixtrain.project import load_project
    from mixtrain.project_lock import project_lock
    with project_lock(load_project(sys.argv[1])):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def _holder(project_dir: Path, seconds: float) -> subprocess.Popen:
    argv = [sys.executable, "-c", HOLD, str(project_dir), str(seconds)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_refuses_naming_the_holder_and_a_killed_holder_frees_the_project(project_dir: Path) -> None:
    project = load_project(project_dir)
    proc = _holder(project_dir, 60)
    try:
        with pytest.raises(ProjectLocked, match=f"pid {proc.pid} on"), project_lock(project):
            raise AssertionError("the lock was granted while another process held it")
        # The CLI says the same and exits 2 before touching anything.
        assert main(["run", "--project", str(project_dir)]) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert (project.dagster_home / HOLDER_NAME).exists()  # the holder had no chance to clean up ...
        with project_lock(project):  # ... but the kernel dropped its lock
            assert (project.dagster_home / HOLDER_NAME).read_text().count(f'"pid": {os.getpid()}') == 1
    finally:
        proc.kill()
        proc.wait()
    assert not (project.dagster_home / HOLDER_NAME).exists()


def test_a_second_run_can_wait_for_the_first(project_dir: Path) -> None:
    project = load_project(project_dir)
    proc = _holder(project_dir, 1.5)
    try:
        start = time.monotonic()
        with project_lock(project, wait_s=30):
            waited = time.monotonic() - start
        assert proc.wait(10) == 0
        assert waited > 0.5  # it did wait for the holder rather than barge in
    finally:
        proc.kill()
        proc.wait()
