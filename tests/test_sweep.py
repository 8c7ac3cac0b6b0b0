"""What a crashed run leaves is cleared by the next one: dead writers' temp files, uncommitted parts, runs left
STARTED by a SIGKILLed process; a live writer's files and every committed part stay."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
from dagster import DagsterInstance, DagsterRunStatus
from upath import UPath

from mixtrain.durable import temp_name
from mixtrain.sweep import RUN_TRIGGER, TRIGGER_TAG, fail_abandoned_runs, sweep_storage
from mixtrain.tables import PendingTable, TableWriter


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_dead_writers_leftovers_and_keeps_live_work(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    table = root / "t"
    committed = PendingTable.of(pa.table({"x": [1, 2, 3]})).commit(UPath(str(table)))
    listed = {p.name for p in committed.parts}

    dead = temp_name("part-00000").replace(f"-{os.getpid()}-", f"-{_dead_pid()}-")
    (table / dead).write_bytes(b"half a part")
    mine = table / temp_name("_manifest.json")  # this process is alive: its temp file is work in flight
    mine.write_bytes(b"{}")
    legacy_old = table / ".part-00001.tmp-1a2b3c4d"  # a name that does not say who wrote it
    legacy_old.write_bytes(b"x")
    os.utime(legacy_old, (time.time() - 7200, time.time() - 7200))
    legacy_new = table / ".part-00002.tmp-5e6f7a8b"
    legacy_new.write_bytes(b"x")
    staged_model = root / "base_model" / temp_name("v1").replace(f"-{os.getpid()}-", f"-{_dead_pid()}-")
    staged_model.mkdir(parents=True)
    (staged_model / "weights.safetensors").write_bytes(b"w")

    # Parts a killed writer renamed into place but never committed: old ones go, fresh ones may be in flight.
    with TableWriter(UPath(str(tmp_path / "scratch")), pa.schema([("x", pa.int64())]), rows_per_part=1) as w:
        w.write(pa.table({"x": [7, 8]}))
        pending = w.finish()
    orphans = [tmp_path / "scratch" / p.name for p in pending.parts]
    for orphan in orphans:
        (table / orphan.name).write_bytes(orphan.read_bytes())
    old_orphan, new_orphan = (table / o.name for o in orphans)
    os.utime(old_orphan, (time.time() - 7200, time.time() - 7200))

    report = sweep_storage([UPath(str(root))], grace_s=3600)

    left = {p.name for p in table.iterdir()}
    assert listed <= left and "_manifest.json" in left
    assert dead not in left and legacy_old.name not in left and old_orphan.name not in left
    assert {mine.name, legacy_new.name, new_orphan.name} <= left
    assert not staged_model.exists()
    assert len(report.temp_files) == 3 and report.orphan_parts == [str(UPath(str(old_orphan)))]
    from mixtrain.tables import open_table

    assert open_table(UPath(str(table))).read().column("x").to_pylist() == [1, 2, 3]


JOB = (
    textwrap.dedent(
        """
    import sys, time
    from dagster import DagsterInstance, job, op

    @op
    def slow():
        print("running", flush=True)
        time.sleep(120)

    @job
    def stuck():
        slow()

    with DagsterInstance.from_config(sys.argv[1]) as instance:
        stuck.execute_in_process(instance=instance, tags={"TAG": "TRIGGER"})
    """
    )
    .replace("TAG", TRIGGER_TAG)
    .replace("TRIGGER", RUN_TRIGGER)
)


def test_a_run_killed_mid_step_is_marked_failed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    proc = subprocess.Popen([sys.executable, "-c", JOB, str(home)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.wait()
    with DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == DagsterRunStatus.STARTED
        assert fail_abandoned_runs(instance) == [run.run_id]
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        assert fail_abandoned_runs(instance) == []
