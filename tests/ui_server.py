"""``mixtrain ui`` as the webserver and browser tests start it: in a process session of its own (``dagster dev``
outlives a plain SIGTERM to its parent), on a free loopback port, stopped by signalling the whole group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mixtrain_ui(project: Path, *extra: str, ready_within_s: float = 120) -> Iterator[str]:
    """The UI's base URL once it answers ``/server_info``; every process of its group has exited afterwards."""
    port = free_port()
    mixtrain = str(Path(sys.executable).with_name("mixtrain"))
    cmd = [mixtrain, "ui", "--project", str(project), "--port", str(port), *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MIXTRAIN_PROJECT")}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + ready_within_s
        while time.time() < deadline:
            assert proc.poll() is None, "mixtrain ui exited early"
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail(f"mixtrain ui did not come up within {ready_within_s:.0f} s")
        yield url
    finally:
        stop_session(proc)


def stop_session(proc: subprocess.Popen) -> None:
    """SIGTERM the UI's process group and wait until every member (dagster dev, the webserver, the daemon, the
    code server) has exited, not just ``mixtrain ui``; SIGKILL what is left after 30 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.time() + 30
    while time.time() < deadline:
        proc.poll()
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
