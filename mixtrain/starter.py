"""The starter project ``mixtrain init`` writes: a copy of the package data in ``mixtrain/starter_project/``.

The starter is plain files (a commented ``mixtrain.yaml``, one source spec, its data and an eval set) rather than
text built here, so what a user reads after ``init`` is exactly what ships, and the tests load it with the real
loader. Its data files are records of the ``json_signature`` task (``eval_assets.tasks.json_signature``) for a
few example functions: the core cannot import the task module, so they are stored as written, and
``tests/test_init.py`` checks that every record is what the task makes of the function it shows.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from mixtrain.project import PROJECT_FILE, Project, ProjectError

if TYPE_CHECKING:  # importlib.resources.abc is 3.11+; at run time only the methods are used
    from importlib.resources.abc import Traversable

STARTER = files("mixtrain") / "starter_project"
_NAME_LINE = re.compile(r"^name: .*$", re.MULTILINE)


def starter_files(root: Traversable = STARTER, prefix: str = "") -> dict[str, bytes]:
    """Every file of the starter, by its path relative to the project (``sources/examples.yaml``), sorted."""
    out: dict[str, bytes] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.startswith(("_", ".")):  # __pycache__ and editor droppings are not part of the template
            continue
        path = f"{prefix}{entry.name}"
        if entry.is_dir():
            out.update(starter_files(entry, f"{path}/"))
        else:
            out[path] = entry.read_bytes()
    return out


def write_starter(target: str | Path, *, force: bool = False) -> tuple[Project, list[str]]:
    """Write the starter project into ``target`` (created if missing) and load it, so that a template the loader
    rejects fails here, not at the user's first run. The project is named after the directory.

    A directory that already holds anything is refused unless ``force``: then the starter's files replace the
    files of the same name and everything else is left as it was. Returns the loaded project and the paths
    written.
    """
    root = Path(target).expanduser()
    if root.exists() and not root.is_dir():
        raise ProjectError(f"{root}: exists and is not a directory")
    if root.is_dir() and any(root.iterdir()) and not force:
        held = sorted(p.name for p in root.iterdir())
        shown = ", ".join(held[:5]) + (f", ... ({len(held)} entries)" if len(held) > 5 else "")
        raise ProjectError(
            f"{root}: not empty ({shown}); mixtrain init writes only into a new or empty directory. "
            "Pick another directory, or pass --force to write the starter's files over the ones of the same name "
            "(other files are kept)"
        )
    name = root.resolve().name or "project"
    written = []
    for rel, content in starter_files().items():
        if rel == PROJECT_FILE:
            content = _NAME_LINE.sub(f"name: {json.dumps(name)}", content.decode("utf-8"), count=1).encode("utf-8")
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(rel)
    return Project(root), written
