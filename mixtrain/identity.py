"""Identity: the hashes and records that say *which* data, model, config, code and machine something was.

One module so that an identity never depends on which package asks: a model's vocabulary hash computed by the
training side equals the one the evaluation side records, and a config hashed here is hashed the same way
everywhere. Dagster-free and torch-free at import, so every engine may use it.

The formats are frozen: these hashes are stored in manifests and ids (a mixture id, a run manifest's
fingerprint), so changing a formula would make every stored artifact look new. Add a new function instead.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import posixpath
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import fsspec

BLOCK = 1 << 20

# What a run's software is: the versions a training or evaluation record lists.
PACKAGES = ("torch", "transformers", "peft", "tokenizers", "numpy", "pyarrow", "safetensors", "jsonschema", "mixtrain")


# --- canonical forms of values ---------------------------------------------------------------------------------


def canonical_json(obj: Any) -> str:
    """One text per value: sorted keys, no whitespace, non-ASCII kept, and no NaN (JSON cannot round-trip it)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fingerprint(obj: Any) -> str:
    """sha256 of a value's canonical JSON."""
    return bytes_sha256(canonical_json(obj).encode("utf-8"))


def spec_hash(obj: Any) -> str:
    """Short content hash of a config object (a pydantic model or plain data): key order and YAML formatting do
    not change it. The format predates :func:`canonical_json` and is kept because spec hashes are part of
    stored ids (the mixture id among them)."""
    payload = obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def json_bytes(obj: Any) -> bytes:
    """How every JSON object the project stores is written: sorted keys, one-space indent (diffable, stable)."""
    return json.dumps(obj, sort_keys=True, indent=1, default=str).encode()


# --- names that survive a moved project ---------------------------------------------------------------


def relative_path(path: str, base: str) -> str:
    """``path`` relative to ``base`` with forward slashes; paths outside ``base`` are kept whole.

    A file outside the project has no project-relative name, and a ``../../`` prefix would change with
    the checkout location, which is exactly what the relative name is meant to avoid. A URL's query, fragment
    and credentials are dropped first (see :func:`_url_name`): a locator names a file, not one way to fetch it.
    """
    if "://" in path or "://" in base:
        path, base = _url_name(path), _url_name(base)
        b = base.rstrip("/") + "/"
        return path[len(b) :] if path.startswith(b) else path
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(base))
    if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        return os.path.abspath(path).replace(os.sep, "/")
    return posixpath.join(*rel.split(os.sep))


def _url_name(url: str) -> str:
    """``url`` without what names no file: the query and fragment (a presigned URL's signature and expiry) and the
    ``user:password@`` of its authority. These change from one download to the next and must not reach a
    locator, which is stored in every row and hashed into doc ids. ``file://`` URLs and plain paths are left
    alone, since "?" and "#" are ordinary characters in a local file name."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() == "file":
        return url
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut].rpartition("@")[2], rest[cut:]
    for mark in "?#":
        tail = tail.partition(mark)[0]
    return f"{scheme}://{authority}{tail}"


def resolve_relative(path: str, base: str) -> str:
    """The inverse of :func:`relative_path`: a stored relative name joined to ``base`` as this run knows it.

    Records name what lies under the project or storage root relative to it, so a copied or moved project
    finds its files where it now is; absolute paths and URLs (kept whole, or written before names were
    relative) pass through unchanged.
    """
    if "://" in path or os.path.isabs(path):
        return path
    if "://" in base:
        return posixpath.join(base.rstrip("/"), path)
    return os.path.join(base, *path.split("/"))


# --- content hashes ------------------------------------------------------------------------------------------------


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_sha256(text: str | None) -> str | None:
    return None if text is None else bytes_sha256(text.encode("utf-8"))


def _update_from_file(h: Any, path: str | os.PathLike[str]) -> None:
    with fsspec.open(str(path), "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file (local path or fsspec URL), read in 1 MiB blocks."""
    h = hashlib.sha256()
    _update_from_file(h, path)
    return h.hexdigest()


def files_sha256(files: Iterable[Path], *, names: bool = True) -> str:
    """One hash over several files in the given order; ``names`` mixes each file's name in before its bytes (so
    renaming a shard changes the identity, as does moving bytes between files)."""
    h = hashlib.sha256()
    for f in files:
        if names:
            h.update(Path(f).name.encode() + b"\0")
        _update_from_file(h, f)
    return h.hexdigest()


def weights_sha256(model_dir: str | os.PathLike[str]) -> str:
    """Identity of a model's weights: every ``*.safetensors`` file in name order, name and bytes.

    The same weights give the same hash however the directory was produced, while config or tokenizer edits
    (which do not change what the network computes for given ids) leave it alone.
    """
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors files to hash")
    return files_sha256(files)


def vocab_sha256(tokenizer: Any) -> str:
    """Identity of a tokenizer's token -> id map, added tokens included (independent of how its files are laid
    out): equal hashes mean the same tokenization. The one formula every package records."""
    items = sorted(tokenizer.get_vocab().items(), key=lambda kv: (kv[1], kv[0]))
    return bytes_sha256(json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode())


# --- software and machine -------------------------------------------------------------------------------------------


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed distribution versions (None for one that is not installed) plus the Python version."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str, dtype: str) -> dict[str, Any]:
    """Where numbers were measured: the device and dtype a model ran in, the CPU, threads, GPUs and torch."""
    import torch

    cuda = device.startswith("cuda")
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    return {
        "device": device,
        "dtype": dtype,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpus[0] if gpus else None,
        "gpu_count": len(gpus),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def model_hardware(model: Any) -> dict[str, Any]:
    """:func:`hardware` for the device and dtype of a loaded torch model's weights."""
    param = next(model.parameters())
    return hardware(str(param.device), str(param.dtype).removeprefix("torch."))


# --- code ----------------------------------------------------------------------------------------------------------


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


CODE_ROOT = Path(__file__).resolve().parents[1]


def git_state(where: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the checkout holding ``where`` (default: this code's checkout).

    None when git is missing, the directory is not in a work tree, or git fails in any way: provenance is nice
    to have and must never stop a run.
    """
    path = Path(where) if where is not None else CODE_ROOT
    if not path.is_dir():
        return None
    commit = _git(["rev-parse", "HEAD"], path)
    if commit is None:
        return None
    status = _git(["status", "--porcelain", "--untracked-files=no"], path)
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}
