"""One ``mixtrain run`` per project at a time.

Two runs over one project would each decide what is stale from the same event log and then build the same
assets twice, racing on every commit. The lock is an OS file lock (``filelock``: ``flock`` on POSIX) in the
project's DAGSTER_HOME, so the kernel drops it when its holder dies, even by SIGKILL: a stale lock can never
block a project. Beside it a small JSON note says who holds it, for the message the second run prints.

The lock guards one machine's view of a project directory; two machines sharing a storage root through
different project checkouts are not serialised by it (the README says so).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from mixtrain.project import Project, ProjectError

LOCK_NAME = "mixtrain-run.lock"
HOLDER_NAME = "mixtrain-run.holder.json"


class ProjectLocked(ProjectError):
    """Another ``mixtrain run`` holds this project."""


def _holder(home: Path) -> dict[str, Any]:
    try:
        return json.loads((home / HOLDER_NAME).read_text())
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {since}: {holder.get('command', '?')})"


@contextmanager
def project_lock(project: Project, *, wait_s: float = 0.0, command: str = "mixtrain run") -> Iterator[None]:
    """Hold the project's run lock for the block. ``wait_s`` > 0 waits that long for a holder to finish;
    otherwise a held lock raises :class:`ProjectLocked` at once, naming the holder."""
    home = project.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(home / LOCK_NAME), mode=0o664)
    try:
        lock.acquire(timeout=wait_s if wait_s > 0 else 0)
    except Timeout:
        waited = f" after waiting {wait_s:g} s" if wait_s > 0 else ""
        raise ProjectLocked(
            f"{project.root} is being run by {_describe(_holder(home))}{waited}; wait for it to finish "
            f"(or pass --wait SECONDS). A holder that died releases the lock by itself."
        ) from None
    try:
        note = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "command": command}
        (home / HOLDER_NAME).write_text(json.dumps(note))
        yield
    finally:
        (home / HOLDER_NAME).unlink(missing_ok=True)
        lock.release()
