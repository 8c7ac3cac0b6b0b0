"""``mixtrain status`` observes specs in-process: same statuses as observing through a run, and no run.

A small code location stands in for the project's: an unpartitioned spec and a spec partitioned like the
sources, each with a materialized child. The answer from in-process observation is compared with the one the
old path gave (``observe_specs`` runs the ``refresh_specs`` job, then the plain resolver reads what it recorded).
"""

from __future__ import annotations

import pytest
from dagster import (
    AssetSelection,
    DagsterInstance,
    Definitions,
    asset,
    define_asset_job,
    materialize,
)

from mixtrain.conventions import conform
from mixtrain.dagster_internals import stale_statuses
from mixtrain.observe import observe_in_process
from mixtrain.runner import observe_specs
from tests.spec_graph import PARTS, VERSIONS, child, part_spec, spec


@asset(deps=[part_spec], partitions_def=PARTS, code_version="1")
def part_child() -> int:
    return 1


DEFS = Definitions(
    assets=[spec, part_spec, child, part_child],
    jobs=[define_asset_job("refresh_specs", AssetSelection.all(include_sources=True) - AssetSelection.all())],
)


def _summary(statuses) -> dict:
    return {(s.key, s.partition): (s.status, s.causes) for s in statuses}


# The code location hands Dagster its specs as external assets made by mixtrain.conventions, not as the packages'
# observable source assets: observing in-process must find them in either form.
@pytest.mark.parametrize("conformed", [False, True], ids=["declared", "conformed"])
def test_in_process_observation_gives_the_recorded_answer_without_a_run(tmp_path, conformed):
    defs = conform(DEFS, "tests") if conformed else DEFS
    keys = {"srcs": ["x", "y"]}
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        VERSIONS.update(spec="a", parts={"x": "1", "y": "1"})
        instance.add_dynamic_partitions("srcs", ["x", "y"])
        observe_specs(defs, instance)
        materialize([spec, child], selection=[child], instance=instance)
        for pk in ("x", "y"):
            materialize([part_spec, part_child], selection=[part_child], partition_key=pk, instance=instance)

        def both() -> tuple[dict, dict]:
            runs = instance.get_runs_count()
            fast = _summary(stale_statuses(defs, instance, keys, observed=observe_in_process(defs, instance)))
            assert instance.get_runs_count() == runs  # observing in-process launched nothing
            observe_specs(defs, instance)
            assert instance.get_runs_count() > runs
            return fast, _summary(stale_statuses(defs, instance, keys))

        fast, recorded = both()
        assert fast == recorded and {s for s, _ in fast.values()} == {"FRESH"}

        VERSIONS.update(spec="b", parts={"x": "2", "y": "1"})  # the specs change after the last materialization
        fast, recorded = both()
        assert fast == recorded
        assert fast[("child", None)][0] == "STALE" and fast[("part_child", "x")][0] == "STALE"
        assert fast[("part_child", "y")] == ("FRESH", ())

        VERSIONS.update(parts={"x": "1", "y": "1"})  # changed back: the recorded input version again
        fast, recorded = both()
        assert fast == recorded and fast[("part_child", "x")] == ("FRESH", ())
