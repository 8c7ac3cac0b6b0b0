"""A full disk (a real 512 KiB tmpfs, where this process may mount one): the error names the file being
written, the previous committed objects stay readable, and nothing temporary is left to keep the disk full."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from upath import UPath

from mixtrain.durable import is_temp_name
from mixtrain.storage import json_bytes, read_json, write_atomic
from mixtrain.tables import PendingTable, TableWriter, open_table


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _noise(rows: int, seed: int) -> pa.Table:
    """Incompressible text, so its size on disk is what it says."""
    rng = np.random.default_rng(seed)
    return pa.table({"text": [rng.bytes(2048).hex() for _ in range(rows)]})


def _temps(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if is_temp_name(p.name)]


def test_a_table_that_does_not_fit_fails_naming_the_file_and_keeps_the_previous_version(small_disk: Path) -> None:
    location = UPath(str(small_disk / "corpus"))
    before = PendingTable.of(_noise(20, seed=0)).commit(location)
    with pytest.raises(OSError) as caught, TableWriter(location, before.schema, rows_per_part=50) as writer:
        for seed in range(1, 40):
            writer.write(_noise(10, seed=seed))
        writer.finish()
    assert caught.value.errno == errno.ENOSPC
    assert str(small_disk / "corpus") in str(caught.value)
    assert "no space left" in str(caught.value).lower()
    again = open_table(location, expected_version=before.version)
    again.verify()
    assert again.read().equals(before.read())
    assert _temps(small_disk) == []
    parts = sorted(p.name for p in (small_disk / "corpus").glob("part-*"))
    assert parts == sorted(p.name for p in before.parts)  # the aborted writer's finished parts are gone too


def test_an_object_that_does_not_fit_fails_naming_it_and_keeps_the_old_one(small_disk: Path) -> None:
    path = UPath(str(small_disk / "release.json"))
    write_atomic(path, json_bytes({"model": "v1"}))
    with pytest.raises(OSError) as caught:
        write_atomic(path, json_bytes({"blob": os.urandom(600_000).hex()}))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(small_disk / "release.json")
    assert read_json(path) == {"model": "v1"}
    assert _temps(small_disk) == []
