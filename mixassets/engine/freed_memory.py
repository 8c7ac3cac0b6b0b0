"""Handing freed memory back to the OS between the batches of a long streamed pass.

Why: each batch allocates and frees its texts and Arrow buffers many times over, and both Arrow's allocator
(mimalloc) and glibc's heap keep freed pages for reuse, across threads. Over a pass of many batches what they
keep follows the size of the largest batches seen rather than one batch, so a stream's peak RSS would still
grow with the length of the documents although nothing live did. Measured on the contamination screen
(``tests/test_screen_mix_memory.py``): without this, 4x longer texts raised the streamed screen's peak about
as much as the extra text. The streaming gate (``gating_stream``) hands memory back through the same function.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import pyarrow as pa

T = TypeVar("T")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up on first use, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "malloc_trim", None)
    except OSError:
        return None


def release_freed_memory() -> None:
    """Give the pages that Arrow's pool and glibc's heap hold for reuse back to the OS (a few ms)."""
    pa.default_memory_pool().release_unused()
    if (trim := _malloc_trim()) is not None:
        trim(0)


def releasing(items: Iterable[T]) -> Iterator[T]:
    """``items``, with freed memory handed back after each one is done with (when the next is asked for)."""
    for item in items:
        yield item
        release_freed_memory()
