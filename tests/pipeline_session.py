"""The tiny project's pipeline session, shared by ``test_pipeline.py`` (what the first run left behind, read only)
and ``test_pipeline_reruns.py`` (what reruns when something changes, each test building on the state the previous
one left). The ``pipeline_session`` fixture in ``conftest.py`` is session-scoped, so both files share one run of the
whole graph."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from dagster import AssetSelection, materialize
from upath import UPath

from mixtrain.instance import activate, load_definitions, open_instance
from mixtrain.partitions import partition_keys
from mixtrain.runner import RunReport, run_project
from mixtrain.tables import open_table

GATING = {"raw_documents", "raw_rejects", "gated_documents", "decision_log", "quarantine"}
# The data half of the pipeline, up to the mixture, and what it reads from the other halves.
DATA_GROUPS = {"sources", "corpus", "curation", "mixture"}
ALSO = {"base_model", "base_model_spec", "eval_registry", "eval_spec"}  # the mixture's tokenizer, the screen's items


def run_data_stages(root: Path) -> RunReport:
    """``mixtrain run`` of a project's data stages only (no training or evaluation); fails on a failed run."""
    project = activate(root)
    defs = load_definitions(project)
    graph = defs.resolve_asset_graph()

    def data(key) -> bool:
        return graph.get(key).group_name in DATA_GROUPS or key.to_user_string() in ALSO

    with open_instance(project) as instance:
        report = run_project(project, defs, instance, select=data, log=lambda s: None)
    assert report.ok, report.failed_runs
    return report


class Session:
    first: RunReport  # the first run's report
    changed = False  # set by every run after the first

    def __init__(self, root: Path):
        self.root = root
        self.refresh()

    def refresh(self):
        self.project = activate(self.root)
        self.defs = load_definitions(self.project)
        self.instance = open_instance(self.project)

    def run(self):
        self.refresh()
        self.changed = True  # after the first run: the state is no longer what the first run left
        return run_project(self.project, self.defs, self.instance, log=lambda s: None)

    @classmethod
    def first_run(cls, root: Path) -> Session:
        session = cls(root)
        session.first = session.run()
        session.changed = False
        return session


def stored_table(session: Session, *parts: str) -> pa.Table:
    """A committed table, named as the tests did when tables were files (a trailing ``.parquet`` is dropped)."""
    *head, last = parts
    return open_table(UPath(session.project.storage_root).joinpath(*head, last.removesuffix(".parquet"))).read()


def asset_statuses(session: Session) -> dict[tuple[str, str | None], object]:
    from mixtrain.dagster_internals import stale_statuses
    from mixtrain.runner import observe_specs

    observe_specs(session.defs, session.instance)
    found = stale_statuses(session.defs, session.instance, partition_keys(session.project))
    return {(s.key, s.partition): s for s in found}


MIXTURE_OUTPUTS = {"mixture", "mixture_manifest", "heldout_text"}


def both_statuses(session: Session) -> tuple[dict, dict]:
    """What `mixtrain status` says (specs observed in-process) and what the UI's resolver says after an
    observation run, as {(asset, partition): status}."""
    from mixtrain.dagster_internals import stale_statuses
    from mixtrain.observe import observe_in_process

    keys = partition_keys(session.project)
    observed = observe_in_process(session.defs, session.instance)
    status = {(s.key, s.partition): s.status for s in stale_statuses(session.defs, session.instance, keys, observed)}
    ui = {k: s.status for k, s in asset_statuses(session).items()}
    return status, ui


def materialize_mixture(session: Session) -> str:
    """Observe the specs and rebuild only the mixture (what the daemon does first after a mixture spec edit); the
    new manifest id."""
    from mixtrain.runner import QUIET, observe_specs

    session.refresh()
    observe_specs(session.defs, session.instance)
    result = materialize(
        [*session.defs.assets, *(session.defs.asset_checks or [])],
        selection=AssetSelection.assets(*sorted(MIXTURE_OUTPUTS)),
        instance=session.instance,
        resources=session.defs.resources,
        run_config=QUIET,
    )
    assert result.success
    return json.loads((session.root / "storage" / "mixture_manifest.json").read_text())["manifest_id"]
