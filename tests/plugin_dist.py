"""A real plugin distribution for the plugin tests: modules and a ``*.dist-info`` with ``entry_points.txt`` written
into a folder that goes on ``sys.path``, so ``importlib.metadata`` finds the entry points exactly as it finds an
installed package's; and the README's examples, which the tests load as the plugins' code."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example(heading: str, language: str = "python") -> str:
    """The first ``language`` code block after the paragraph that starts with ``heading`` in the README."""
    text = README.read_text(encoding="utf-8")
    start = text.index(heading)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no {language} block after {heading!r}"
    return match.group(1)


class PluginDist:
    """A folder on ``sys.path`` holding plugin modules and distributions (undone by ``monkeypatch``)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.modules: set[str] = set()
        root.mkdir(parents=True, exist_ok=True)
        monkeypatch.syspath_prepend(str(root))

    def module(self, name: str, code: str) -> Path:
        """Write (or rewrite) module ``name``; a rewritten module is imported afresh on next use."""
        path = self.root / f"{name}.py"
        path.write_text(code, encoding="utf-8")
        self.modules.add(name)
        sys.modules.pop(name, None)
        importlib.invalidate_caches()
        return path

    def distribution(self, name: str, entry_points: dict[str, dict[str, str]]) -> None:
        """A distribution ``name`` declaring ``{group: {entry point name: import path}}``."""
        info = self.root / f"{name}-0.1.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n", encoding="utf-8")
        groups = "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
            for group, eps in entry_points.items()
        )
        (info / "entry_points.txt").write_text(groups, encoding="utf-8")
        importlib.invalidate_caches()

    def forget(self) -> None:
        for name in self.modules:
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
