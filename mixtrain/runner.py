"""``mixtrain run``: what the daemon would do, done now, in this process.

1. sync the dynamic source partitions with the project's ``sources/`` directory;
2. observe every spec (the ``refresh_specs`` job: content fingerprints become data versions);
3. evaluate the same automation conditions the daemon evaluates (``evaluate_automation_conditions``), execute
   what they request, and repeat until they request nothing.

The automation cursor is kept in DAGSTER_HOME between invocations, so "changed" means changed since the last
``mixtrain run`` — a second run right after the first materializes nothing.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterExecutionInterruptedError,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    define_asset_job,
    evaluate_automation_conditions,
)

from mixtrain.consistency import inconsistencies
from mixtrain.dagster_internals import deserialize_cursor, serialize_cursor
from mixtrain.durable import write_file
from mixtrain.interrupts import StopRequest
from mixtrain.jobs import SPEC_JOBS, STAGE_JOBS
from mixtrain.legacy_storage import find_legacy_tables
from mixtrain.partitions import SOURCES_PARTITION, partition_keys
from mixtrain.progress import RunProgress
from mixtrain.project import Project, ProjectError
from mixtrain.project_lock import project_lock
from mixtrain.sweep import RUN_TRIGGER, TRIGGER_TAG, sweep_project
from mixtrain.tables import MANIFEST_NAME

CURSOR_FILE = "mixtrain_automation_cursor"
# Dagster's console logger prints every engine event at DEBUG; the CLI reports progress itself. Step logs and
# failures still reach the event log (UI) and the console at WARNING and above.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# With a progress display, failures are shown by it (one line, the stack with -v): the console logger would
# print every interrupted or failed step's full traceback a second time. Observing specs runs silent too: its
# failures raise (raise_on_error), and an interrupted observation is reported by the caller.
SILENT = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
JOB_NAME = "__ephemeral_asset_job__"  # the name dagster.materialize gives its runs, which the UI lists
MAX_ROUNDS = 30


@dataclass
class RunReport:
    added_sources: list[str] = field(default_factory=list)
    removed_sources: list[str] = field(default_factory=list)
    materialized: list[tuple[str, str | None]] = field(default_factory=list)  # (asset key, partition)
    failed_runs: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    interrupted: bool = False  # stopped by Ctrl-C (or SIGTERM): no asset was started after it
    not_materialized: list[tuple[str, str | None]] = field(default_factory=list)  # requested, left by the stop

    @property
    def ok(self) -> bool:
        return not self.failed_runs


def sync_partitions(project: Project, instance: DagsterInstance) -> tuple[list[str], list[str]]:
    """Make every dynamic partitions definition hold exactly the keys the project names; returns the sources
    added and removed (adapters follow silently: a removed adapter's stored versions stay in model_history)."""
    changes: dict[str, tuple[list[str], list[str]]] = {}
    for name, keys in partition_keys(project).items():
        known = set(instance.get_dynamic_partitions(name))
        wanted = set(keys)
        added, removed = sorted(wanted - known), sorted(known - wanted)
        if added:
            instance.add_dynamic_partitions(name, added)
        for key in removed:
            instance.delete_dynamic_partition(name, key)
        changes[name] = (added, removed)
    return changes[SOURCES_PARTITION]


def observe_specs(defs: Definitions, instance: DagsterInstance) -> None:
    repository = defs.get_repository_def()
    for name in SPEC_JOBS:
        if not repository.has_job(name):  # refresh_adapter_specs comes with training_assets
            continue
        result = defs.resolve_job_def(name).execute_in_process(
            instance=instance, raise_on_error=True, run_config=SILENT, tags={TRIGGER_TAG: RUN_TRIGGER}
        )
        if not result.success:
            raise RuntimeError(f"observing the project's specs failed ({name})")


def _load_cursor(project: Project) -> object | None:
    path = project.dagster_home / CURSOR_FILE
    return deserialize_cursor(path.read_text()) if path.exists() else None


def _save_cursor(project: Project, cursor: object) -> None:
    write_file(project.dagster_home / CURSOR_FILE, serialize_cursor(cursor).encode())


def _requested(defs: Definitions, result) -> dict[str | None, set[AssetKey]]:
    """Requested assets grouped by partition key (None = unpartitioned): one Dagster run per group."""
    by_partition: dict[str | None, set[AssetKey]] = defaultdict(set)
    graph = defs.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        for pk in result.get_requested_partitions(key):
            by_partition[pk].add(key)
    return by_partition


def _blocking_check_failed(graph, instance: DagsterInstance, key: AssetKey) -> bool:
    from mixtrain.summary import latest_check

    for check_key in graph.get(key).check_keys:
        if graph.get_check_spec(check_key).blocking:
            result = latest_check(instance, key.to_user_string(), check_key.name)
            if result is not None and result["passed"] is False:
                return True
    return False


def _retryable(defs: Definitions, instance: DagsterInstance, project: Project, tried: set) -> dict:
    """Missing or stale asset partitions whose inputs are all fresh, by the state-based resolver the UI uses.

    The automation conditions leave a failed asset alone (so the daemon does not retry it in a loop), but
    ``mixtrain run`` is a person asking, so it tries once. The same pass covers a lost automation cursor:
    changes the cursor can no longer see are still visible as STALE here."""
    from mixtrain.dagster_internals import stale_statuses

    statuses = stale_statuses(defs, instance, partition_keys(project))
    pending = {(s.key, s.partition) for s in statuses if s.status in ("MISSING", "STALE")}
    pending_keys = {k for k, _ in pending}
    graph = defs.resolve_asset_graph()
    by_partition: dict[str | None, set[AssetKey]] = defaultdict(set)
    for key, pk in sorted(pending, key=str):
        asset_key = AssetKey.from_user_string(key)
        parents = {p.to_user_string() for p in graph.get(asset_key).parent_keys}
        blocked = any((p, pk) in pending or (p, None) in pending for p in parents)
        blocked = blocked or any(_blocking_check_failed(graph, instance, p) for p in graph.get(asset_key).parent_keys)
        if pk is None:
            blocked = blocked or bool(parents & pending_keys)
        if not blocked and (key, pk) not in tried:
            by_partition[pk].add(asset_key)
    return by_partition


def _fan_ins_to_refresh(defs: Definitions, keys: set[AssetKey], done_partitioned: set[AssetKey]) -> set[AssetKey]:
    """Unpartitioned ancestors of ``keys`` that read partitions rematerialized earlier in this round.

    Automation may request a downstream asset (say, for a config change) in the same round as upstream
    partitions; the fan-in between them (``source_manifest``) is only requested once those partitions land.
    Running it in the same run, ahead of its dependents, keeps the run consistent instead of failing it.
    """
    graph = defs.resolve_asset_graph()
    extra: set[AssetKey] = set()
    seen: set[AssetKey] = set()
    stack = list(keys)
    while stack:
        for parent in graph.get(stack.pop()).parent_keys:
            if parent in seen or not graph.get(parent).is_materializable:
                continue
            seen.add(parent)
            node = graph.get(parent)
            if node.partitions_def is None and node.parent_keys & done_partitioned:
                extra.add(parent)
            stack.append(parent)
    return extra


def _selected(
    groups: dict[str | None, set[AssetKey]], select: Callable[[AssetKey], bool] | None
) -> dict[str | None, set[AssetKey]]:
    picked = {pk: {k for k in keys if select is None or select(k)} for pk, keys in groups.items()}
    return {pk: keys for pk, keys in picked.items() if keys}


def _defer_downstream(defs: Definitions, groups: dict[str | None, set[AssetKey]]) -> dict[str | None, set[AssetKey]]:
    """Hold back every requested asset that has a requested ancestor; it runs in a later round, on fresh inputs.

    Automation conditions see only direct inputs: a config change can request ``mixture`` in the same tick as a
    revocation requests ``source_manifest``, two steps above it. One run of both would train on a mixture built
    from the old corpus and then rebuild (and retrain) it again once the corpus catches up. Deferring costs one
    more evaluation per level; a deferred asset whose inputs end up unchanged is still picked up as stale by
    :func:`_retryable`.
    """
    graph = defs.resolve_asset_graph()
    requested = {k for keys in groups.values() for k in keys}
    out: dict[str | None, set[AssetKey]] = {}
    for pk, keys in groups.items():
        kept = {k for k in keys if not (graph.get_ancestor_asset_keys(k) - {k}) & requested}
        if kept:
            out[pk] = kept
    return out


def _whole(defs: Definitions, groups: dict[str | None, set[AssetKey]]) -> dict[str | None, set[AssetKey]]:
    """Each requested output of a multi-asset with all its siblings: a multi-asset runs whole (it cannot be
    subset), and one left partly recorded (a kill or a full disk between its outputs) asks for only the
    missing outputs, which Dagster would refuse to run alone."""
    graph = defs.resolve_asset_graph()
    return {pk: {s for k in keys for s in graph.get(k).execution_set_asset_keys} for pk, keys in groups.items()}


def _inconsistent(
    defs: Definitions, instance: DagsterInstance, project: Project, tried: set
) -> dict[str | None, set[AssetKey]]:
    """Assets whose stored content is not what Dagster recorded (see :mod:`mixtrain.consistency`): rebuilt
    whatever automation says, since nothing upstream changed to make them stale."""
    by_partition: dict[str | None, set[AssetKey]] = defaultdict(set)
    for found in inconsistencies(defs, instance, project.storage_root, partition_keys(project)):
        if (found.key.to_user_string(), found.partition) not in tried:
            by_partition[found.partition].add(found.key)
    return by_partition


def _merged(*groups: dict[str | None, set[AssetKey]]) -> dict[str | None, set[AssetKey]]:
    out: dict[str | None, set[AssetKey]] = defaultdict(set)
    for group in groups:
        for pk, keys in group.items():
            out[pk] |= keys
    return dict(out)


def _runs(defs: Definitions, groups: dict[str | None, set[AssetKey]]) -> list[tuple[str | None, set[AssetKey]]]:
    """One run per partition key *and* partitions definition (a source and an adapter may share a name, but one
    run cannot span two definitions), partitioned runs first: fan-ins read what they wrote."""
    graph = defs.resolve_asset_graph()
    runs: dict[tuple[bool, str, str], set[AssetKey]] = defaultdict(set)
    for pk, keys in groups.items():
        for k in keys:
            definition = graph.get(k).partitions_def if pk is not None else None
            runs[(pk is None, pk or "", getattr(definition, "name", None) or "")].add(k)
    return [(None if unpartitioned else pk, keys) for (unpartitioned, pk, _), keys in sorted(runs.items())]


def stage_job(defs: Definitions, keys: set[AssetKey]) -> str | None:
    """The named stage job (:data:`mixtrain.jobs.STAGE_JOBS`) that holds every asset in ``keys``, if any."""
    repository = defs.get_repository_def()
    for name in STAGE_JOBS:
        if repository.has_job(name) and keys <= repository.get_job(name).asset_layer.selected_asset_keys:
            return name
    return None


def table_assets(defs: Definitions) -> set[str]:
    """Top-level storage names of the assets the table IO manager stores."""
    names = set()
    for assets_def in defs.assets or []:
        for key in getattr(assets_def, "keys", ()):
            if assets_def.get_io_manager_key_for_asset_key(key) == "io_manager":
                names.add(key.path[0])
    return names


def check_storage(project: Project, defs: Definitions) -> None:
    """Refuse a storage root written by the v1 table contract (one parquet file per table): reading it would
    fail stage by stage; saying so once, before anything runs, says what to do."""
    legacy = find_legacy_tables(project.storage_root, table_assets(defs))
    if legacy:
        raise ProjectError(
            f"{project.storage_root} holds tables written by mixtrain's storage contract v1 (e.g. {legacy[0]}); "
            f"tables are now directories of parts committed by {MANIFEST_NAME}. Move that storage root aside (or "
            f"delete it) and run again: everything is rebuilt from the sources."
        )


def _on_interrupt(instance: DagsterInstance, run_id: str, stop: StopRequest | None) -> Callable[[Any], None]:
    """An event listener marking the run CANCELING when one of its steps reports an interruption.

    Dagster records an interrupted run as CANCELED when it finds the run CANCELING as the interruption unwinds,
    and as a failure ("interrupted unexpectedly") otherwise; the step-failure event is written before that
    check, so marking here makes the one status the run ends with say what happened: a person stopped it."""

    def listener(entry: Any) -> None:
        event = entry.dagster_event
        if event is None or event.event_type_value != "STEP_FAILURE":
            return
        if getattr(event.step_failure_data.error_source, "value", None) != "INTERRUPT":
            return
        if stop is not None:
            stop.note()
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status == DagsterRunStatus.STARTED:
            instance.report_run_canceling(run, message="stopped by Ctrl-C in `mixtrain run`")

    return listener


def _execute(
    defs: Definitions,
    instance: DagsterInstance,
    keys: set[AssetKey],
    pk: str | None,
    *,
    progress: RunProgress | None,
    stop: StopRequest | None,
) -> Any:
    """What ``dagster.materialize`` does, with the run id chosen here: the listeners that show progress and
    record an interruption must be registered for the run before its first event."""
    name = stage_job(defs, keys) or JOB_NAME  # the runs list then says which stage a run built
    job_defs = Definitions(
        jobs=[define_asset_job(name=name, selection=AssetSelection.assets(*keys))],
        assets=[*defs.assets, *(defs.asset_checks or [])],
        resources=defs.resources,
    )
    run_id = str(uuid.uuid4())
    instance.add_event_listener(run_id, _on_interrupt(instance, run_id, stop))
    if progress is not None:
        instance.add_event_listener(run_id, progress)
    return job_defs.resolve_job_def(name).execute_in_process(
        run_config=SILENT if progress is not None else QUIET,
        instance=instance,
        partition_key=pk,
        raise_on_error=False,
        tags={TRIGGER_TAG: RUN_TRIGGER},
        run_id=run_id,
    )


def run_project(
    project: Project,
    defs: Definitions,
    instance: DagsterInstance,
    *,
    select: Callable[[AssetKey], bool] | None = None,
    log: Callable[[str], None] = print,
    wait_s: float = 0.0,
    progress: RunProgress | None = None,
    stop: StopRequest | None = None,
) -> RunReport:
    """One ``mixtrain run``: under the project lock (a second run waits ``wait_s`` or refuses), after sweeping
    what a crashed run left, materialize what automation, inconsistency or staleness asks for.

    ``progress`` shows each run's stages, training steps and evaluation as they happen. Once ``stop`` is
    requested (Ctrl-C) or a run reports an interruption, no further run starts; the report says so and lists
    what the stopped run and the rest of its round would have materialized. An interruption between runs
    (a KeyboardInterrupt) ends the same way instead of escaping as a traceback."""
    check_storage(project, defs)
    report = RunReport()
    try:
        with project_lock(project, wait_s=wait_s):
            for line in sweep_project(project, instance).lines():
                log(line)
            _run_rounds(project, defs, instance, report, select=select, log=log, progress=progress, stop=stop)
    except (KeyboardInterrupt, DagsterExecutionInterruptedError):
        report.interrupted = True
    return report


def _was_interrupted(instance: DagsterInstance, run_id: str, stop: StopRequest | None) -> bool:
    run = instance.get_run_by_id(run_id)
    canceled = run is not None and run.status in (DagsterRunStatus.CANCELED, DagsterRunStatus.CANCELING)
    return canceled or (stop is not None and stop.requested)


def _run_rounds(
    project: Project,
    defs: Definitions,
    instance: DagsterInstance,
    report: RunReport,
    *,
    select: Callable[[AssetKey], bool] | None,
    log: Callable[[str], None],
    progress: RunProgress | None,
    stop: StopRequest | None,
) -> None:
    report.added_sources, report.removed_sources = sync_partitions(project, instance)
    if report.added_sources:
        log(f"new sources: {', '.join(report.added_sources)}")
    if report.removed_sources:
        log(f"removed sources (partitions deleted): {', '.join(report.removed_sources)}")
    observe_specs(defs, instance)
    cursor = _load_cursor(project)
    tried: set[tuple[str, str | None]] = set()
    for _ in range(MAX_ROUNDS):
        result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        _save_cursor(project, cursor)
        # Selected first: automation requesting only unselected assets must not hide selected stale ones.
        groups = _selected(
            _merged(_requested(defs, result), _inconsistent(defs, instance, project, tried)), select
        ) or _selected(_retryable(defs, instance, project, tried), select)
        groups = _whole(defs, _defer_downstream(defs, groups))
        if not groups:
            break
        tried |= {(k.to_user_string(), pk) for pk, keys in groups.items() for k in keys}
        done_partitioned: set[AssetKey] = set()
        runs = _runs(defs, groups)
        for index, (pk, keys) in enumerate(runs):
            if stop is not None and stop.requested:
                _left(report, runs[index:])
                return
            if pk is None:
                keys = keys | _fan_ins_to_refresh(defs, keys, done_partitioned)
            names = sorted(k.to_user_string() for k in keys)
            log(f"materializing {', '.join(names)}" + (f" [{pk}]" if pk else ""))
            res = _execute(defs, instance, keys, pk, progress=progress, stop=stop)
            report.run_ids.append(res.run_id)
            if res.success:
                report.materialized.extend((n, pk) for n in names)
                if pk is not None:
                    done_partitioned |= keys
            elif _was_interrupted(instance, res.run_id, stop):
                report.failed_runs.append(res.run_id)
                _left(report, [(pk, keys), *runs[index + 1 :]])
                return
            else:
                report.failed_runs.append(res.run_id)
                log(f"run {res.run_id} failed for {', '.join(names)}" + (f" [{pk}]" if pk else ""))
    else:
        log(f"stopped after {MAX_ROUNDS} rounds of automation")


def _left(report: RunReport, runs: list[tuple[str | None, set[AssetKey]]]) -> None:
    """Record a stop: the runs not started (or stopped) are what this invocation did not materialize."""
    report.interrupted = True
    report.not_materialized.extend((k.to_user_string(), pk) for pk, keys in runs for k in sorted(keys, key=str))
