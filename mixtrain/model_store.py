"""Model directories under a storage root: one immutable directory per version, committed by a pointer.

Layout under ``<root>/<key>/``::

    <version>/...             the save_pretrained files, never written into once complete
    _versions/<version>.json  the version's file list (size, sha256 of every file), written once it is verified
    _current.json             the live version: the same record; written last, as one object (the commit)

Why not copy the directory over the previous one: fsspec's ``put(recursive=True)`` into an existing directory
nests the copy (``base_model/base_model/``) on S3 and ``memory://`` and the old files keep being served, and a
crash mid-copy leaves a mixture of two models at the one name readers use. Here an upload only ever goes to a
version directory that does not exist yet (a leftover of a crashed upload is removed first), file by file, and
is read back and checked before the pointer moves, so readers see the previous version or the complete new one.
Readers resolve the pointer (or a version a release pinned) and check the sha256 of every file they load.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from upath import UPath

from mixtrain.durable import dir_mode, file_mode, temp_name
from mixtrain.faults import kill_point
from mixtrain.identity import BLOCK, file_sha256, files_sha256, json_bytes
from mixtrain.storage import model_dir, read_json, write_atomic
from mixtrain.tables import is_local

POINTER = "_current.json"
VERSIONS = "_versions"
# The files that decide how text becomes ids (and the chat template): what a release's tokenizer hash covers.
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
        "chat_template.jinja",
        "chat_template.json",
    }
)

FileList = dict[str, dict[str, Any]]  # relative posix path -> {"size": int, "sha256": str}


class ModelStoreError(RuntimeError):
    """A model directory is missing, incomplete or not the bytes its record names; the message says which."""


def _parts(key_path: list[str] | str) -> list[str]:
    return [key_path] if isinstance(key_path, str) else list(key_path)


def file_list(directory: str | os.PathLike[str]) -> FileList:
    """Size and sha256 of every file under ``directory`` (relative posix paths, sorted)."""
    root = Path(directory)
    if not root.is_dir():
        raise ModelStoreError(f"{root} is not a directory")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in files}


def content_version(files: FileList) -> str:
    """A version named by what the directory holds, for models without a version of their own."""
    return hashlib.sha256(json_bytes(files)).hexdigest()[:16]


def tokenizer_sha256(files: FileList) -> str | None:
    """One hash of the tokenizer files a directory holds (names and contents); None when it holds none."""
    h = hashlib.sha256()
    names = sorted(name for name in files if name in TOKENIZER_FILES)
    for name in names:
        h.update(f"{name}\0{files[name]['sha256']}\0".encode())
    return h.hexdigest() if names else None


def version_record(directory: Path, version: str) -> dict[str, Any]:
    """What the pointer and the version's file list hold: the files, and the two hashes releases pin."""
    files = file_list(directory)
    has_weights = any(name.endswith(".safetensors") and "/" not in name for name in files)
    return {
        "version": version,
        "path": version,  # relative to the key's directory, so a copied storage root stays valid
        "files": files,
        "weights_sha256": files_sha256(sorted(directory.glob("*.safetensors"))) if has_weights else None,
        "tokenizer_sha256": tokenizer_sha256(files),
    }


# --- local directories --------------------------------------------------------------------------------------------


def set_modes(directory: Path) -> None:
    """Make a finished model directory readable by the group, as every other stored file is
    (:func:`mixtrain.durable.file_mode`): a trainer or a copy may have left it owner-only."""
    os.chmod(directory, dir_mode())
    for p in directory.rglob("*"):
        os.chmod(p, dir_mode() if p.is_dir() else file_mode())


def check_files(directory: Path, files: Mapping[str, Mapping[str, Any]], *, exact: bool = True) -> None:
    """Raise unless ``directory`` holds ``files`` byte for byte (and, with ``exact``, nothing else)."""
    if not directory.is_dir():
        raise ModelStoreError(f"{directory}: model directory is missing")
    for name, want in files.items():
        p = directory / name
        if not p.is_file():
            raise ModelStoreError(f"{directory}: {name} is missing")
        if p.stat().st_size != want["size"] or file_sha256(p) != want["sha256"]:
            raise ModelStoreError(f"{directory}: {name} is not the published file (size or sha256 differs)")
    if exact:
        extra = sorted(set(file_list(directory)) - set(files))
        if extra:
            raise ModelStoreError(f"{directory}: files not in the published version: {extra}")


def _is_complete(directory: Path, files: Mapping[str, Mapping[str, Any]]) -> bool:
    try:
        check_files(directory, files)
    except ModelStoreError:
        return False
    return True


def _remove(directory: Path) -> None:
    """Move aside, then delete: a reader never sees a half-deleted directory under the version's name."""
    if directory.exists():
        trash = directory.with_name(f".{directory.name}.trash-{uuid.uuid4().hex[:8]}")
        os.replace(directory, trash)
        shutil.rmtree(trash, ignore_errors=True)


def install_local(src: Path, dest: Path, files: FileList, *, move: bool) -> None:
    """Put ``src`` at ``dest`` whole: reuse a complete ``dest``, replace an incomplete one, never write into one.

    The copy is built in a sibling temp directory and renamed over the name, so a crash leaves ``dest`` absent or
    complete; ``move`` renames ``src`` itself when it is on the same filesystem.
    """
    if src.resolve() == dest.resolve():
        check_files(dest, files)
        set_modes(dest)
        return
    if dest.exists():
        if _is_complete(dest, files):
            set_modes(dest)
            if move:
                shutil.rmtree(src, ignore_errors=True)
            return
        _remove(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / temp_name(dest.name)  # named for its writer: a later run's sweep knows if it is dead
    tmp.mkdir()
    try:
        try:
            if not move:
                raise OSError("copy requested")
            os.replace(src, tmp)  # tmp is empty: a directory rename over it is allowed
        except OSError:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
        kill_point("model.file", str(dest))
        check_files(tmp, files)
        set_modes(tmp)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if move and src.exists():
        shutil.rmtree(src, ignore_errors=True)


# --- remote (fsspec) directories ----------------------------------------------------------------------------------


def _upload_file(fs: Any, src: Path, dest: str) -> None:
    """One file's upload (a seam the fault tests cut)."""
    fs.put_file(str(src), dest)
    kill_point("model.file", dest)


def _remote_files(fs: Any, dest: str, *, hashes: bool) -> FileList:
    """The files under a remote directory: sizes from one listing, sha256 by reading each back when ``hashes``."""
    prefix = fs._strip_protocol(dest).rstrip("/") + "/"
    found = fs.find(dest, detail=True)
    out: FileList = {}
    for path, info in sorted(found.items()):
        if info.get("type") == "directory" or not path.startswith(prefix):
            continue
        name = path[len(prefix) :]
        entry: dict[str, Any] = {"size": int(info["size"])}
        if hashes:
            h = hashlib.sha256()
            with fs.open(path, "rb") as f:
                while chunk := f.read(BLOCK):
                    h.update(chunk)
            entry["sha256"] = h.hexdigest()
        out[name] = entry
    return out


def _remote_complete(base: UPath, version: str, files: FileList) -> bool:
    """A version uploaded before: its file list was committed (only after a verified upload) and every file is
    still there at its size. Checked without reading the weights back."""
    manifest = base / VERSIONS / f"{version}.json"
    if not manifest.exists() or read_json(manifest).get("files") != files:
        return False
    sizes = _remote_files(base.fs, (base / version).path, hashes=False)
    return {k: v["size"] for k, v in sizes.items()} == {k: v["size"] for k, v in files.items()}


def upload(local: Path, base: UPath, version: str, files: FileList) -> None:
    """Upload ``local`` as ``<base>/<version>/``, which must not exist (a leftover is removed), then read every
    file back and compare its size and sha256."""
    dest = base / version
    fs = dest.fs
    if fs.exists(dest.path):
        fs.rm(dest.path, recursive=True)
    for name in files:
        _upload_file(fs, local / name, f"{dest.path.rstrip('/')}/{name}")
    got = _remote_files(fs, dest.path, hashes=True)
    if got != files:
        bad = sorted(k for k in set(got) | set(files) if got.get(k) != files.get(k))
        raise ModelStoreError(f"{dest}: uploaded files differ from {local}: {bad}")


# --- publish and resolve ------------------------------------------------------------------------------------------


def publish_model(
    local: str | os.PathLike[str],
    root: str,
    key_path: list[str] | str,
    cache_root: str | os.PathLike[str],
    *,
    version: str | None = None,
    move: bool = False,
) -> dict[str, Any]:
    """Publish a finished local model directory as version ``version`` (default: named by its contents) of
    ``key_path`` and make it the live one.

    Returns the version record plus ``location`` (the version directory in storage) and ``local_path`` (the
    checked local directory a training job or evaluation reads: the version directory itself on a local root,
    else its copy in ``cache_root``). ``move`` lets the local directory be renamed into place instead of copied.
    """
    parts = _parts(key_path)
    src = Path(local)
    record = version_record(src, version or content_version(file_list(src)))
    version = record["version"]
    files = record["files"]
    base = UPath(root).joinpath(*parts)
    local_copy = model_dir(root, [*parts, version], cache_root)
    install_local(src, local_copy, files, move=move)
    if not is_local(base) and not _remote_complete(base, version, files):
        upload(local_copy, base, version, files)
    write_atomic(base / VERSIONS / f"{version}.json", json_bytes(record))
    kill_point("model.pointer", str(base))
    write_atomic(base / POINTER, json_bytes(record))  # the commit: written last, one object
    return {**record, "location": str(base / version), "local_path": str(local_copy)}


def current_version(root: str, key_path: list[str] | str) -> dict[str, Any] | None:
    """The live version's record (the pointer), None when nothing was published under ``key_path``."""
    pointer = UPath(root).joinpath(*_parts(key_path)) / POINTER
    return read_json(pointer) if pointer.exists() else None


def version_of(root: str, key_path: list[str] | str, version: str) -> dict[str, Any]:
    """The record of a version published before (live or not): what a release that pinned it checks against."""
    path = UPath(root).joinpath(*_parts(key_path)) / VERSIONS / f"{version}.json"
    if not path.exists():
        raise ModelStoreError(f"{path.parent.parent}: version {version} was never published (no {path.name})")
    return read_json(path)


def fetch_model(
    root: str,
    key_path: list[str] | str,
    cache_root: str | os.PathLike[str],
    *,
    version: str | None = None,
) -> Path:
    """A local, checked directory of a published model: the live version, or ``version``.

    On a local root it is the version directory itself; else a copy in ``cache_root``, downloaded into a temp
    directory and renamed into place. Every file's sha256 is checked against the version's record either way,
    so a reader never loads bytes other than the ones published.
    """
    parts = _parts(key_path)
    record = current_version(root, parts) if version is None else version_of(root, parts, version)
    if record is None:
        raise ModelStoreError(f"{UPath(root).joinpath(*parts)}: no model published (no {POINTER})")
    files = record["files"]
    local_copy = model_dir(root, [*parts, record["path"]], cache_root)
    if is_local(UPath(root)) or _is_complete(local_copy, files):
        check_files(local_copy, files)
        return local_copy
    remote = UPath(root).joinpath(*parts, record["path"])
    local_copy.parent.mkdir(parents=True, exist_ok=True)
    tmp = local_copy.parent / temp_name(local_copy.name)
    tmp.mkdir()
    try:
        for name in files:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            remote.fs.get_file(f"{remote.path.rstrip('/')}/{name}", str(tmp / name))
        install_local(tmp, local_copy, files, move=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return local_copy
