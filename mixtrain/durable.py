"""Local writes that survive a crash and a full disk, and can be cleaned up after either.

- A temp file's name says who wrote it (``.<final>.tmp-<host>-<pid>-<random>``), so a later run's sweep can
  tell a dead writer's leftovers from a live writer's work on this host without guessing by age.
- Data is fsynced before the rename and the directory after it: a power cut leaves the old object or the
  complete new one, never a renamed empty file.
- An OSError (ENOSPC above all) is re-raised naming the file it was writing; the temp file is removed.
- Files are made group-readable (whatever the umask says for others): teammates on a shared root read them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMP_MARK = ".tmp-"
PARTIAL_SUFFIX = ".partial"
HOST_ID = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_RE = re.compile(r"\.tmp-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]+")


def temp_name(final_name: str) -> str:
    """The hidden sibling name a writer of ``final_name`` uses until its rename."""
    return f".{final_name}{TEMP_MARK}{HOST_ID}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def is_temp_name(name: str) -> bool:
    return (name.startswith(".") and TEMP_MARK in name) or name.endswith(PARTIAL_SUFFIX)


def writer_alive(name: str) -> bool | None:
    """Whether the process that owns a temp file still runs: None when the name does not say (another host,
    or a name from before owners were recorded): the caller falls back to the file's age."""
    m = _TEMP_RE.search(name)
    if m is None or m["host"] != HOST_ID:
        return None
    pid = int(m["pid"])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


DEFAULT_UMASK = 0o022


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` can only be read by setting it, which races
    with other threads); Linux shows it in /proc, elsewhere the common default is assumed."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return DEFAULT_UMASK
    for line in status.splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    return DEFAULT_UMASK


def file_mode() -> int:
    return (0o666 & ~_umask()) | 0o040


def dir_mode() -> int:
    return (0o777 & ~_umask()) | 0o050


def make_dirs(path: Path) -> None:
    """``mkdir -p`` whose new directories are group-listable."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for d in reversed(missing):
        with contextlib.suppress(OSError):
            os.chmod(d, dir_mode())


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable; a no-op where directories cannot be opened (not POSIX)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        # Some file systems refuse fsync on a directory (EINVAL); the rename is then as durable as they make it.
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def named_error(e: OSError, path: Path | str) -> OSError:
    """The same error with the file in it: a full disk must say where, so the person knows what to clear."""
    if getattr(e, "filename", None):
        return e
    hint = " (no space left on the device that holds it)" if e.errno == errno.ENOSPC else ""
    err = OSError(e.errno, f"{e.strerror or e}{hint}", str(path))
    return err


@contextmanager
def _removed_on_failure(tmp: Path, final: Path) -> Iterator[None]:
    """Remove ``tmp`` if the block fails; an OSError comes out naming ``final``."""
    try:
        yield
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise named_error(e, final) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def finish_temp(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, make it group-readable and move it over ``final``; on failure remove it."""
    with _removed_on_failure(tmp, final):
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, final)
        fsync_dir(final.parent)


def write_file(final: Path, data: bytes) -> None:
    """Readers see the old file or the complete new one; nothing is left behind on failure."""
    make_dirs(final.parent)
    tmp = final.with_name(temp_name(final.name))
    with _removed_on_failure(tmp, final), open(tmp, "wb") as f:
        f.write(data)
    finish_temp(tmp, final)


def is_local(path: Any) -> bool:
    """Whether a UPath is on this machine's file system (a rename there is atomic), not an object store."""
    return getattr(path, "protocol", "") in ("", "file", "local")


def put_object(path: Any, data: bytes) -> None:
    """Readers see the old object or the whole new one: :func:`write_file` on a local disk, one PUT (atomic) on an
    object store. ``path`` is a UPath."""
    if is_local(path):
        write_file(Path(path.path), data)
        return
    try:
        path.fs.pipe_file(path.path, data)
    except OSError as e:
        raise named_error(e, path) from e
