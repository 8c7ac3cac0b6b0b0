"""Build one project with two code versions and compare what they stored: the proof that a refactor left the
pipeline's outputs as they were.

Run: ``python benchmarks/refactor_identity.py --base 4cf7e6f [--project tiny|demo] [--workdir DIR] [--keep]``

* The base version is checked out with ``git worktree add --detach`` into the work directory; the other version
  is this checkout as it is on disk (uncommitted changes included), or ``--head REV`` checked out the same way.
* Each version builds its own copy of the project with the same interpreter (``sys.executable``) and
  ``PYTHONPATH`` set to that tree only (``benchmarks/identity_build.py`` checks that every project module it
  loaded came from that tree). ``tiny`` is the tests' tiny project (``tests/conftest.py::build_tiny_project``, one
  tiny model shared by both sides) run in process as the tests run it; ``demo`` is the demo project
  (``examples/demo/generate.py`` at full scale) run through the tree's CLI (``mixassets.cli`` before the move,
  ``mixtrain.cli`` after).
* Both builds happen at the same absolute path (``<workdir>/project``), one after the other, each moved to
  ``<workdir>/<side>/project`` when done: outputs record absolute paths, and the mixture manifest id hashes its
  shard's path, so two copies in two directories get two manifest ids (and so two version names for every model
  trained on it) with the same code.
* The inputs each version generated are compared byte for byte, then the second copy's files get the first copy's
  modification times: a document's ``capture_time`` is its file's mtime, so two copies written a minute apart
  would otherwise differ in every table for a reason that has nothing to do with the code.
* Every build step runs with ``PYTHONHASHSEED=0``: peft writes ``adapter_config.json``'s ``target_modules`` from
  a set, so its order (and the file's bytes) change from one process to the next with the same code.
* The two storage roots are compared by ``benchmarks/compare_storage.py`` (see its docstring for what is ignored).

Exit status 0 when the inputs and the outputs are the same, 1 when something differs, 2 when a build failed.
The work directory keeps each build's log; it is removed at the end unless ``--keep`` (or ``--workdir``) is given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from benchmarks.compare_storage import compare_roots, render  # noqa: E402

BUILD = Path(__file__).resolve().with_name("identity_build.py")
NOT_INPUTS = ("storage", ".dagster", "__pycache__")  # what a build writes into the project, not what it reads
HASH_SEED = "0"  # peft writes an adapter's target_modules in set order, which follows str hashing
STEPS = {"tiny": ("prepare-tiny", "run"), "demo": ("prepare-demo", "run-cli")}


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def checkout(rev: str, where: Path) -> Path:
    """``rev`` in a detached worktree at ``where`` (removed by :func:`remove_checkout`)."""
    git("worktree", "add", "--detach", str(where), rev)
    return where


def remove_checkout(where: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=ROOT, check=False, capture_output=True)


class BuildFailed(RuntimeError):
    """One side's build failed: the comparison would be meaningless, so the driver stops and says which."""


def build_step(tree: Path, step: str, out: Path, log: Path, *extra: str) -> float:
    """One ``identity_build.py`` step with ``tree``'s code; returns its wall seconds, raises with the log's tail."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TQDM_DISABLE": "1", "PYTHONHASHSEED": HASH_SEED}
    start = time.perf_counter()
    with log.open("a") as sink:
        sink.write(f"\n$ PYTHONPATH={tree} {sys.executable} {BUILD.name} {step} {out} {' '.join(extra)}\n")
        sink.flush()
        proc = subprocess.run(
            [sys.executable, str(BUILD), step, str(out), *extra], cwd=tree, env=env, stdout=sink, stderr=sink
        )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise BuildFailed(f"{step} with {tree} failed ({proc.returncode}); log {log}:\n{log.read_text()[-3000:]}")
    return seconds


def _inputs(project: Path) -> dict[str, Path]:
    return {
        p.relative_to(project).as_posix(): p
        for p in sorted(project.rglob("*"))
        if p.is_file() and not set(p.relative_to(project).parts) & set(NOT_INPUTS)
    }


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def align_inputs(first: Path, second: Path) -> dict[str, list[str]]:
    """Compare the two projects' input files byte for byte, and give the second copy's files the first's mtimes."""
    a, b = _inputs(first), _inputs(second)
    differ = [rel for rel in sorted(set(a) & set(b)) if _digest(a[rel]) != _digest(b[rel])]
    for rel in set(a) & set(b):
        st = a[rel].stat()
        os.utime(b[rel], ns=(st.st_atime_ns, st.st_mtime_ns))
    return {
        "different": differ,
        "only_base": sorted(set(a) - set(b)),
        "only_head": sorted(set(b) - set(a)),
        "same": [rel for rel in sorted(set(a) & set(b)) if rel not in differ],
    }


def run(args: argparse.Namespace, work: Path) -> int:
    base_tree = checkout(args.base, work / "tree-base")
    head_tree = checkout(args.head, work / "tree-head") if args.head else ROOT
    sides = {"base": base_tree, "head": head_tree}
    revs = {
        "base": git("rev-parse", "--short", "HEAD", cwd=base_tree),
        "head": git("rev-parse", "--short", "HEAD", cwd=head_tree),
    }
    if not args.head and git("status", "--porcelain", "--untracked-files=no"):
        revs["head"] += " + uncommitted changes"
    prepare, build = STEPS[args.project]
    timings: dict[str, dict[str, float]] = {side: {} for side in sides}
    extra: list[str] = []
    if args.project == "tiny":  # one tiny model for both sides, made by the head's code
        model = work / "tiny-model"
        timings["head"]["tiny model"] = build_step(head_tree, "tiny-model", model, work / "head.log")
        extra = ["--model", str(model)]
    build_dir = work / "project"  # both sides build here in turn: outputs record absolute paths (see above)
    inputs: dict[str, list[str]] = {}
    for side, tree in sides.items():
        timings[side]["prepare"] = build_step(tree, prepare, build_dir, work / f"{side}.log", *extra)
        if side == "head":
            inputs = align_inputs(work / "base" / "project", build_dir)
        timings[side]["run"] = build_step(tree, build, build_dir, work / f"{side}.log")
        (work / side).mkdir(exist_ok=True)
        build_dir.rename(work / side / "project")

    report = compare_roots(work / "base" / "project" / "storage", work / "head" / "project" / "storage")
    print(f"project: {args.project}   A = base {revs['base']} ({base_tree})   B = head {revs['head']} ({head_tree})")
    print(f"python: {sys.executable}")
    print("\nbuild timings (wall seconds, one after the other on this machine)")
    for side in sides:
        print(f"  {side}: " + ", ".join(f"{step} {s:.1f}" for step, s in timings[side].items()))
    print(f"\ninputs: {len(inputs['same'])} files the same bytes", end="")
    print(f", different: {inputs['different']}, only base: {inputs['only_base']}, only head: {inputs['only_head']}")
    print("\nstorage (A = base, B = head)\n" + render(report, differences_only=not args.all_files))
    same_inputs = not (inputs["different"] or inputs["only_base"] or inputs["only_head"])
    summary = {"revs": revs, "timings": timings, "inputs": inputs, "ok": report.ok and same_inputs}
    (work / "identity.json").write_text(json.dumps({**summary, "storage": report.highlights}, indent=1, default=str))
    print(f"\nwritten: {work / 'identity.json'}")
    return 0 if summary["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision built as A (e.g. the commit before the move)")
    parser.add_argument("--head", help="git revision built as B (default: this checkout as it is on disk)")
    parser.add_argument("--project", choices=sorted(STEPS), default="tiny")
    parser.add_argument("--workdir", type=Path, help="where the checkouts, projects and logs go (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.add_argument("--all-files", action="store_true", help="list every compared file, not only the differing")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="refactor-identity-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, work)
    except BuildFailed as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        for name in ("tree-base", "tree-head"):
            if (work / name).exists():
                remove_checkout(work / name)
        if not (args.keep or args.workdir):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")


if __name__ == "__main__":
    sys.exit(main())
