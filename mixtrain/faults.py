"""Named points where a fault-injection drill can SIGKILL the process, to prove a crash there loses nothing.

``MIXTRAIN_KILL_AT=<point>[@<where>][#<n>]`` kills the process (SIGKILL: no handler, no cleanup, as the OOM
killer or a lost node would) the ``n``-th time (default first) it reaches ``point`` with ``where`` a substring of
the place (a table's location, a file name). Unset, a point costs one dictionary lookup. The drills are the
``faults``-marked tests; an operator can run the same against a staging project.

Points: ``table.part`` (a part renamed into its table directory, not yet committed), ``table.commit`` (a
manifest committed, Dagster not yet told), ``object.write`` (a JSON object written, not yet recorded),
``train.step`` (an optimiser step and its checkpoint done), ``model.file`` / ``model.pointer`` (a model version
partly uploaded / completely uploaded but not yet made current).
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "MIXTRAIN_KILL_AT"
_hits: dict[str, int] = {}


def _parse(spec: str) -> tuple[str, str, int]:
    spec, _, count = spec.partition("#")
    point, _, where = spec.partition("@")
    return point, where, int(count) if count else 1


def kill_point(point: str, where: str = "") -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    wanted, place, nth = _parse(spec)
    if wanted != point or place not in where:
        return
    _hits[spec] = _hits.get(spec, 0) + 1
    if _hits[spec] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
