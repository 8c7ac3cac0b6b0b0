"""Build one project with whatever code is on ``PYTHONPATH`` (run by ``refactor_identity.py`` once per code version).

It imports nothing from the checkout it lives in: the caller points ``PYTHONPATH`` at the tree under test, and the
core modules are looked up under their name in that tree (``mixtrain.*`` after the move, ``mixassets.*`` before).
A package the tree lacks must not come from elsewhere (an editable install of another checkout would supply
``mixtrain`` to a pre-move tree), so the core is taken only from the tree, and at the end every loaded project
module is checked to have come from it.

    python benchmarks/identity_build.py tiny-model MODEL_DIR
    python benchmarks/identity_build.py prepare-tiny PROJECT_DIR --model MODEL_DIR
    python benchmarks/identity_build.py prepare-demo PROJECT_DIR
    python benchmarks/identity_build.py run PROJECT_DIR        # in process, as the tests run it
    python benchmarks/identity_build.py run-cli PROJECT_DIR    # through the tree's CLI
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CORE_PACKAGES = ("mixtrain", "mixassets")  # after the move, before it
PROJECT_PACKAGES = ("definitions", "mixtrain", "mixassets", "training_assets", "eval_assets", "tests")


def tree_root() -> Path:
    """The checkout under test: the first ``PYTHONPATH`` entry, which must hold ``definitions.py``."""
    entry = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
    root = Path(entry).resolve() if entry else None
    if root is None or not (root / "definitions.py").is_file():
        raise SystemExit(f"PYTHONPATH must start with the checkout under test (got {entry!r})")
    return root


def core_package() -> str:
    """The core package of the tree under test: the first of :data:`CORE_PACKAGES` it has a folder for."""
    root = tree_root()
    return next(p for p in CORE_PACKAGES if (root / p / "__init__.py").is_file())


def core_module(name: str):
    return importlib.import_module(f"{core_package()}.{name}")


def foreign_modules() -> list[str]:
    """Loaded project modules that do not come from the tree under test."""
    root = tree_root()
    return sorted(
        f"{name} ({module.__file__})"
        for name, module in list(sys.modules.items())
        if name.split(".")[0] in PROJECT_PACKAGES
        and getattr(module, "__file__", None)
        and not Path(module.__file__).resolve().is_relative_to(root)
    )


def prepare_tiny(project_dir: Path, model_dir: Path) -> None:
    """The tests' tiny project (``tests/conftest.py::build_tiny_project`` of the tree): demo sources and config,
    small data, the given tiny model, two training steps."""
    importlib.import_module("tests.conftest").build_tiny_project(project_dir, model_dir)


def prepare_demo(project_dir: Path) -> None:
    """The demo project as the tree ships it (config and sources; generated data, models and storage are not
    copied), its data and moderation model generated at full scale by the tree's generator."""
    root = tree_root()
    generated = shutil.ignore_patterns("data", "models", "storage", ".dagster", "__pycache__")
    shutil.copytree(root / "examples" / "demo", project_dir, ignore=generated)
    generate = [sys.executable, str(root / "examples" / "demo" / "generate.py"), "--project", str(project_dir)]
    subprocess.run(generate, check=True, cwd=root)


def run_in_process(project_dir: Path) -> None:
    """One ``run`` of the whole graph, as the tests run it (``runner.run_project`` on the tree's definitions)."""
    instance = core_module("instance")
    runner = core_module("runner")
    project = instance.activate(project_dir)
    defs = instance.load_definitions(project)
    report = runner.run_project(project, defs, instance.open_instance(project), log=lambda s: None)
    if not report.ok:
        raise SystemExit(f"run failed: {report.failed_runs}")


def run_cli(project_dir: Path) -> None:
    """One ``run`` through the tree's CLI (``mixtrain.cli`` after the move, ``mixassets.cli`` before)."""
    command = [sys.executable, "-m", f"{core_package()}.cli", "run", "--project", str(project_dir)]
    subprocess.run(command, check=True, cwd=tree_root())


STEPS = {
    "tiny-model": lambda out, model: importlib.import_module("training_assets.engine.tiny").make_tiny_model(str(out)),
    "prepare-tiny": prepare_tiny,
    "prepare-demo": lambda out, model: prepare_demo(out),
    "run": lambda out, model: run_in_process(out),
    "run-cli": lambda out, model: run_cli(out),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("out", type=Path, help="the model directory (tiny-model) or the project directory")
    parser.add_argument("--model", type=Path, help="tiny model directory (for prepare-tiny)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    STEPS[args.step](args.out, args.model)
    foreign = foreign_modules()
    if foreign:
        raise SystemExit("modules from outside the tree under test: " + ", ".join(foreign))
    print(json.dumps({"step": args.step, "tree": str(tree_root()), "seconds": round(time.perf_counter() - start, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
