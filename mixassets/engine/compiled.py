"""Compiling the gate's few hot loops with numba, once per process, cached on disk where the install allows it.

The loops are plain Python functions over NumPy arrays (the tests also run them uncompiled, as the reference for
the compiled code). Compiling one takes a second or two; numba keeps the machine code beside the module
(``__pycache__``) or in the user's cache directory, so later processes load it instead. Where neither is
writable (a read-only image run as a user without a home) numba refuses to cache, and the loop is compiled in
memory for that process only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_compiled: dict[Callable[..., Any], Callable[..., Any]] = {}
_lock = threading.Lock()


def compiled(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` compiled by numba (nopython, releasing the GIL), the same object on every call."""
    found = _compiled.get(function)
    if found is not None:
        return found
    with _lock:
        if function not in _compiled:
            import numba

            try:
                _compiled[function] = numba.njit(cache=True, nogil=True)(function)
            except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
                _compiled[function] = numba.njit(cache=False, nogil=True)(function)
        return _compiled[function]
