"""The wall-clock limit on evaluating one candidate model.

A model that never ends its turn, a slow device or a huge eval set would otherwise hold the evaluation (and the
run, and the daemon's slot) for as long as it takes. The limit is checked where the time goes, without killing
the process: between generated batches and likelihood batches, and inside one ``generate`` call through
transformers' ``max_time`` (a ``MaxTimeCriteria``), which ends the call at the deadline. The suites reach it
through a context variable, so every suite and helper is bounded without each passing a deadline along.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass


class GenerationTimeout(BaseException):
    """A candidate's evaluation ran past its time limit.

    A ``BaseException`` (like ``asyncio.CancelledError``) on purpose: the suites turn an ``Exception`` raised on
    one item into that item's error row and go on with the next, which here would score a half-evaluated
    candidate as if it were complete. The evaluation run catches it once per candidate.
    """

    def __init__(self, label: str, limit_s: float, elapsed_s: float):
        self.label, self.limit_s, self.elapsed_s = label, limit_s, elapsed_s
        super().__init__(
            f"candidate '{label}': evaluation exceeded evaluation.generation_timeout_s={limit_s:g}s "
            f"(stopped after {elapsed_s:.1f}s); its results are discarded and it cannot be released"
        )


@dataclass(frozen=True)
class Deadline:
    label: str
    limit_s: float
    started: float  # time.monotonic()

    def remaining(self) -> float:
        return self.limit_s - (time.monotonic() - self.started)

    def check(self) -> None:
        """Raise :class:`GenerationTimeout` once the limit is spent."""
        elapsed = time.monotonic() - self.started
        if elapsed >= self.limit_s:
            raise GenerationTimeout(self.label, self.limit_s, elapsed)


_CURRENT: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("eval_deadline", default=None)


@contextlib.contextmanager
def time_limit(label: str, limit_s: float | None) -> Iterator[Deadline | None]:
    """Bound the model work done inside the block to ``limit_s`` seconds (None: no limit) for candidate ``label``."""
    if limit_s is not None and not limit_s > 0:
        raise ValueError(f"a time limit must be > 0 seconds or None, got {limit_s}")
    deadline = None if limit_s is None else Deadline(label, float(limit_s), time.monotonic())
    token = _CURRENT.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT.reset(token)


def check_deadline() -> None:
    """Between batches: raise :class:`GenerationTimeout` when the current candidate's limit is spent."""
    deadline = _CURRENT.get()
    if deadline is not None:
        deadline.check()


def generate_max_time() -> dict[str, float]:
    """``generate`` keyword arguments that end one call at the current deadline (``{}`` without one)."""
    deadline = _CURRENT.get()
    return {} if deadline is None else {"max_time": max(deadline.remaining(), 0.0)}
