"""What ``mixtrain run`` shows while it works: a line per stage started and finished (rows and rows/s), rows done
in long data stages, training steps (loss, tokens/s, ETA) a few times a minute, and evaluation per candidate and
suite.

The lines are read from the Dagster event log of the run being executed (``DagsterInstance.add_event_listener``),
not from the engines: a Pipes subprocess or torchrun's rank 0 reports its steps as log messages that arrive in
the same event log as an in-process loop's, so one reader covers every launcher, and the event log the UI shows
stays the single record. Training and evaluation log their progress as one JSON object per message (see
:func:`progress_message`); anything else a step logs stays in the event log only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console

PROGRESS_EVERY_ENV = "MIXTRAIN_PROGRESS_EVERY_S"
DEFAULT_EVERY_S = 20.0  # three training lines a minute: enough to see it move, few enough to read
EVAL_KEY = "eval_candidate"  # marks an evaluation progress message
ROWS_KEY = "rows_done"  # marks a data stage's progress message
ROWS_EVERY_S = 5.0  # a data stage logs its rows at most this often: a few lines in the event log per minute


def progress_every_s(value: float | None = None) -> float:
    """Seconds between two training lines: ``value``, else ``$MIXTRAIN_PROGRESS_EVERY_S``, else the default."""
    if value is None:
        raw = os.environ.get(PROGRESS_EVERY_ENV)
        if raw is None or not raw.strip():
            return DEFAULT_EVERY_S
        try:
            value = float(raw)
        except ValueError as e:
            raise ValueError(f"${PROGRESS_EVERY_ENV} must be a number of seconds, got {raw!r}") from e
    if value < 0:
        raise ValueError(f"the progress interval must be 0 or more seconds, got {value}")
    return value


def progress_message(**fields: Any) -> str:
    """One progress report as a log message: compact JSON, which the UI shows as it is and this module parses."""
    return json.dumps(fields, separators=(",", ":"), default=str)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _rate(count: float, seconds: float, unit: str) -> str:
    return f"{count / seconds:,.0f} {unit}/s" if seconds > 0 else f"- {unit}/s"


def _root_cause(error: Any) -> Any:
    """The user's exception under Dagster's wrapper ("Error occurred while executing op ...")."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return error


class RowMeter:
    """Rows a streaming data stage has done, logged (as a :func:`progress_message`) at most every ``every_s``.

    A gate or screen over a large source runs for minutes between its "started" and "done" lines; these messages
    let the terminal and the UI's event log show it moving. ``log`` is the step's ``context.log.info``, so
    engines stay free of Dagster: they are handed :meth:`advance` or iterate :meth:`metered`. A stage shorter
    than ``every_s`` logs nothing."""

    def __init__(
        self,
        log: Callable[[str], None],
        what: str,
        *,
        total: int | None = None,
        every_s: float = ROWS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.total, self.done = what, total, 0
        self._log, self._every_s, self._clock = log, every_s, clock
        self._start = self._last = clock()

    def advance(self, rows: int) -> None:
        self.done += rows
        now = self._clock()
        if now - self._last >= self._every_s:
            self._last = now
            fields = {ROWS_KEY: self.done, "rows_total": self.total, "what": self.what}
            self._log(progress_message(**fields, elapsed_s=round(now - self._start, 3)))

    def metered(self, batches: Iterable[Any]) -> Iterator[Any]:
        """``batches`` (tables or record batches) as they are, counted after each is consumed."""
        for batch in batches:
            yield batch
            self.advance(batch.num_rows)


@dataclass
class _Training:
    """What the last printed line of one training step key said, to measure rates between lines."""

    printed_at: float  # monotonic clock
    step: int
    elapsed_s: float
    tokens_since: int = 0


class RunProgress:
    """Turns one run's event log entries into terminal lines (thread-safe: Pipes messages arrive on a thread).

    ``every_s`` throttles training lines (first and last step always show); ``verbose`` adds the stack of a
    failed step.
    """

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        every_s: float | None = None,
        verbose: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_s = progress_every_s(every_s)
        self.verbose = verbose
        self._clock = clock
        self._lock = threading.Lock()
        self._started: dict[str, float] = {}
        self._training: dict[str, _Training] = {}
        self._rows_printed: dict[str, float] = {}  # step key -> when its last rows line was printed
        self.interrupted_steps: list[str] = []
        self.failed_steps: list[str] = []
        # rich styles the lines on a terminal and writes plain text to a pipe or file.
        self._console = Console(file=out, highlight=False, soft_wrap=True)

    # -- writing --------------------------------------------------------------------------------------------

    def line(self, text: str, style: str | None = None) -> None:
        """Print one line now (also used for the runner's own lines, so they interleave in order)."""
        with self._lock:
            self._console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    # -- reading the event log ------------------------------------------------------------------------------

    def __call__(self, entry: Any) -> None:
        """An event listener for ``DagsterInstance.add_event_listener``; never raises into Dagster."""
        try:
            self._handle(entry)
        except Exception as e:  # a display problem must not fail the run it displays
            self.line(f"  (progress display error: {e!r})", style="dim")

    def _handle(self, entry: Any) -> None:
        event = entry.dagster_event
        step = entry.step_key or "run"
        if event is None:
            if entry.user_message:
                self._message(step, entry.user_message)
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            self._started[step] = self._clock()
            self.line(f"▸ {step} started", style="cyan")
        elif kind == "ASSET_MATERIALIZATION":
            self._materialized(step, event.step_materialization_data.materialization)
        elif kind == "STEP_FAILURE":
            self._failed(step, event.step_failure_data)

    def _materialized(self, step: str, materialization: Any) -> None:
        name = materialization.asset_key.to_user_string()
        if materialization.partition:
            name += f" [{materialization.partition}]"
        took = self._clock() - self._started.get(step, self._clock())
        rows = materialization.metadata.get("dagster/row_count")
        count = getattr(rows, "value", None)
        if isinstance(count, int):
            self.line(f"✓ {name}: {count:,} rows in {took:.1f} s ({_rate(count, took, 'rows')})", style="green")
        else:
            self.line(f"✓ {name} in {took:.1f} s", style="green")

    def _failed(self, step: str, data: Any) -> None:
        if getattr(data.error_source, "value", None) == "INTERRUPT":
            self.interrupted_steps.append(step)
            self.line(f"✗ {step} interrupted", style="yellow")
            return
        self.failed_steps.append(step)
        cause = _root_cause(data.error) if data.error is not None else None
        what = f"{cause.cls_name}: {(cause.message or '').strip().splitlines()[0] if cause.message else ''}"
        self.line(f"✗ {step} failed: {what if cause else 'no error recorded'}", style="red")
        if self.verbose and data.error is not None:
            self.line(data.error.to_string().rstrip(), style="dim")

    def _message(self, step: str, message: str) -> None:
        if not message.startswith("{"):
            return
        try:
            fields = json.loads(message)
        except ValueError:
            return
        if not isinstance(fields, dict):
            return
        if "step" in fields and "steps" in fields:
            self._train_step(step, fields)
        elif EVAL_KEY in fields:
            self._eval(step, fields)
        elif ROWS_KEY in fields:
            self._rows(step, fields)

    def _train_step(self, step_key: str, info: Mapping[str, Any]) -> None:
        done, total = int(info["step"]), int(info["steps"])
        elapsed = float(info.get("elapsed_s") or 0.0)
        tokens = int(info.get("tokens") or 0)
        now = self._clock()
        last = self._training.get(step_key)
        if last is None or done <= last.step:  # the first step seen (or a restart): rates from the start
            last = _Training(printed_at=now, step=0, elapsed_s=elapsed - (elapsed / done if done else 0.0))
            if last.elapsed_s < 0:
                last.elapsed_s = 0.0
            self._training[step_key] = last
            due = True
        else:
            due = done == total or now - last.printed_at >= self.every_s
        last.tokens_since += tokens
        if not due:
            return
        span = elapsed - last.elapsed_s
        per_step = span / (done - last.step) if done > last.step else 0.0
        eta = f", ETA {_duration(per_step * (total - done))}" if done < total and per_step > 0 else ""
        loss = info.get("loss")
        loss_text = f"loss {loss:.4f}" if isinstance(loss, (int, float)) else "loss -"
        world = int(info.get("world_size") or 1)
        on = f" on {world} processes" if world > 1 else ""
        self.line(f"  {step_key}: step {done}/{total}, {loss_text}, {_rate(last.tokens_since, span, 'tok')}{eta}{on}")
        self._training[step_key] = _Training(printed_at=now, step=done, elapsed_s=elapsed)

    def _rows(self, step_key: str, info: Mapping[str, Any]) -> None:
        now = self._clock()
        last = self._rows_printed.get(step_key)
        if last is not None and now - last < self.every_s:
            return
        self._rows_printed[step_key] = now
        done, total, took = int(info[ROWS_KEY]), info.get("rows_total"), float(info.get("elapsed_s") or 0.0)
        count = f"{done:,}"
        eta = ""
        if isinstance(total, int) and total > 0:
            count += f"/{total:,} rows ({100 * done / total:.0f}%)"
            if 0 < done < total and took > 0:
                eta = f", ETA {_duration((total - done) * took / done)}"
        else:
            count += " rows"
        self.line(f"  {step_key}: {info.get('what') or 'rows'} {count}, {_rate(done, took, 'rows')}{eta}")

    def _eval(self, step_key: str, info: Mapping[str, Any]) -> None:
        where = f"candidate {info.get('candidate')}/{info.get('candidates')}"
        suite = f"suite {info.get('suite')} ({info.get('suite_index')}/{info.get('suites')})"
        items, took = info.get("items"), float(info.get("elapsed_s") or 0.0)
        counted = f": {items} items in {took:.1f} s" if isinstance(items, int) else ""
        status = f", {info['status']}" if info.get("status") else ""
        self.line(f"  {step_key}: {info[EVAL_KEY]} ({where}), {suite}{counted}{status}")
