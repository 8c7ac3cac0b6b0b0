"""Plugins a project names by import path (``package.module:name``) or that a package installs as entry points.

The core knows no kind of plugin (a gating rule, an evaluation task); the domain that uses one checks that what was
loaded is of its kind. What every kind shares lives here: a path that does not import is a config error phrased in
the file's terms (the config models call :func:`import_object` in their validators, so the message names the file,
the field and the line), and the code of a plugin is part of the fingerprint of what it decides, so editing the
module makes what it decided stale, as editing a threshold does.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import os
import re
import sys
from typing import Any

from mixtrain.config.errors import suggest

# ``package.module:attribute`` (the attribute may be dotted: ``module:Class.factory``), as entry points write it.
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class PluginError(ValueError):
    """A plugin that cannot be loaded or is not of the kind asked for; the message says where it was named."""


def check_import_path(path: str) -> str:
    """``path`` when it names an object that imports (for a config validator), else a :class:`PluginError`."""
    import_object(path)
    return path


def import_object(path: str) -> Any:
    """The object ``package.module:name`` names. A module that is not found and one that fails while importing
    are told apart, since the fixes differ (install the package or put its folder on PYTHONPATH, or mend it)."""
    if not IMPORT_PATH.match(path):
        raise PluginError(f"'{path}' is not an import path of the form 'package.module:name'")
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise PluginError(
                f"cannot import '{module_name}': no module named '{e.name}' (install the package that provides it, "
                "or put its folder on PYTHONPATH)"
            ) from None
        raise PluginError(f"importing '{module_name}' failed: a module it imports is missing: {e}") from e
    except Exception as e:  # a plugin's own import-time error: report it, never crash the whole load
        raise PluginError(f"importing '{module_name}' failed: {type(e).__name__}: {e}") from e
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise PluginError(f"'{module_name}' has no attribute '{attribute}'{suggest(part, names)}")
        obj = getattr(obj, part)
    return obj


def entry_point_names(group: str) -> list[str]:
    """The names installed in an entry point group, without loading any (so the config can accept them)."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=group)})


def load_entry_points(group: str) -> list[tuple[str, str, Any]]:
    """``(name, where, object)`` for every entry point of ``group``, in name order; ``where`` names the entry point
    and its distribution for messages. One that fails to load is an error: a rule or task silently missing would
    change results without a word."""
    loaded = []
    for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: (e.name, e.value)):
        dist = getattr(ep, "dist", None)
        where = f"entry point '{ep.name} = {ep.value}' (group '{group}'" + (
            f", distribution '{dist.name}')" if dist is not None else ")"
        )
        if not IMPORT_PATH.match(ep.value):
            raise PluginError(f"{where}: not an import path of the form 'package.module:name'")
        try:
            obj = import_object(ep.value)
        except PluginError as e:
            raise PluginError(f"{where}: {e}") from None
        loaded.append((ep.name, where, obj))
    return loaded


def describe(obj: Any) -> str:
    """What an object is, in words a message can end on ("the int 3", "the function 'mypkg.make'")."""
    if inspect.ismodule(obj):
        return f"the module '{obj.__name__}'"
    if inspect.isclass(obj):
        return f"the class '{obj.__module__}.{obj.__qualname__}'"
    if inspect.isroutine(obj):
        return f"the function '{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}'"
    kind = type(obj)
    if kind.__module__ == "builtins":
        shown = repr(obj)
        return f"the {kind.__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"
    return f"an instance of '{kind.__module__}.{kind.__qualname__}'"


def code_sha256(obj: Any) -> str | None:
    """sha256 of the source file of the module defining ``obj`` (an instance's class's module), read afresh each
    time so a long-lived observer sees an edit; None where there is no such file (built in, made at run time).
    Only that module is hashed: a plugin whose decisions change through another module bumps its version."""
    target = obj if inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj) else type(obj)
    module = target if inspect.ismodule(target) else sys.modules.get(getattr(target, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    if not path or not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def plugin_fingerprint(path: str) -> dict[str, Any]:
    """What a plugin named by import path contributes to a fingerprint: the path, its version where the object
    declares one, and its module's code."""
    obj = import_object(path)
    version = getattr(obj, "version", None)
    return {
        "path": path,
        "version": version if isinstance(version, int | str) and not isinstance(version, bool) else None,
        "code": code_sha256(obj),
    }
