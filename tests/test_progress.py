"""The terminal side of ``mixtrain run``: progress lines read from event log entries, and Ctrl-C counting.

The whole path (a real SIGINT to a real ``mixtrain run``) is in ``test_run_interrupt.py``; these pin the parts
that are cheap to drive by hand: throttling, rates and ETA, failure lines, and the first/second press rule.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from types import SimpleNamespace

import pytest

from mixtrain.interrupts import stop_on_interrupt
from mixtrain.progress import PROGRESS_EVERY_ENV, RowMeter, RunProgress, progress_every_s, progress_message


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _log(step_key: str, message: str) -> SimpleNamespace:
    return SimpleNamespace(dagster_event=None, step_key=step_key, user_message=message)


def _train(step: int, steps: int, elapsed: float, tokens: int = 1000, loss: float = 2.5) -> str:
    return json.dumps({"step": step, "steps": steps, "loss": loss, "tokens": tokens, "elapsed_s": elapsed})


def _event(kind: str, step_key: str, **data: object) -> SimpleNamespace:
    return SimpleNamespace(
        dagster_event=SimpleNamespace(event_type_value=kind, **data), step_key=step_key, user_message=""
    )


def test_training_lines_are_throttled_with_rates_and_eta() -> None:
    out, clock = io.StringIO(), Clock()
    progress = RunProgress(out, every_s=30, clock=clock)
    for step in range(1, 11):  # one step every 10 s (wall and training clock alike), 1000 tokens each
        clock.now += 10
        progress(_log("sft_model", _train(step, 10, elapsed=10.0 * step)))
    lines = out.getvalue().splitlines()
    # step 1 always, then every 30 s of wall clock, and the last step always
    assert [line.split(",")[0] for line in lines] == [
        "  sft_model: step 1/10",
        "  sft_model: step 4/10",
        "  sft_model: step 7/10",
        "  sft_model: step 10/10",
    ]
    assert "100 tok/s" in lines[1] and "ETA 1:00" in lines[1], lines[1]
    assert "loss 2.5000" in lines[0] and "ETA" not in lines[-1]


def test_every_step_shows_at_zero_and_other_messages_are_ignored() -> None:
    out = io.StringIO()
    progress = RunProgress(out, every_s=0, clock=Clock())
    progress(_log("distilled_model", "loaded the teacher"))
    progress(_log("distilled_model", "{not json"))
    for step in (1, 2, 3):
        progress(_log("distilled_model", _train(step, 3, elapsed=float(step))))
    assert len(out.getvalue().splitlines()) == 3


def test_eval_progress_names_candidate_and_suite() -> None:
    out = io.StringIO()
    progress = RunProgress(out, clock=Clock())
    message = progress_message(
        eval_candidate="sft",
        candidate=2,
        candidates=3,
        suite="refusal",
        suite_index=1,
        suites=4,
        items=12,
        elapsed_s=3.25,
        status="",
    )
    progress(_log("eval_report", message))
    assert out.getvalue().strip() == "eval_report: sft (candidate 2/3), suite refusal (1/4): 12 items in 3.2 s"


def test_a_long_data_stage_shows_its_rows_while_it_works() -> None:
    """The step logs through a RowMeter (at most every 5 s) and the terminal throttles again (every 30 s)."""
    clock, logged = Clock(), []
    meter = RowMeter(logged.append, "gated", total=10_000, every_s=5, clock=clock)
    batches = [SimpleNamespace(num_rows=1000) for _ in range(10)]
    for _ in meter.metered(batches):
        clock.now += 4  # a batch every 4 s: a message every second batch
    assert meter.done == 10_000 and len(logged) == 5
    out, shown = io.StringIO(), Clock()
    progress = RunProgress(out, every_s=30, clock=shown)
    for message in logged:
        shown.now += 8
        progress(_log("gated_documents", message))
    lines = out.getvalue().splitlines()
    assert lines[0] == "  gated_documents: gated 2,000/10,000 rows (20%), 250 rows/s, ETA 0:32"
    assert len(lines) == 2 and lines[1].startswith("  gated_documents: gated 10,000/10,000 rows (100%)")
    quick: list[str] = []
    short = RowMeter(quick.append, "screened", every_s=5, clock=Clock())
    short.advance(50)
    assert quick == []  # a stage shorter than the interval logs nothing


def test_stage_lines_count_rows_and_failures_are_one_line() -> None:
    out, clock = io.StringIO(), Clock()
    progress = RunProgress(out, clock=clock)
    progress(_event("STEP_START", "gated_documents"))
    clock.now += 4
    materialization = SimpleNamespace(
        asset_key=SimpleNamespace(to_user_string=lambda: "gated_documents"),
        partition="wiki",
        metadata={"dagster/row_count": SimpleNamespace(value=2000)},
    )
    progress(
        _event(
            "ASSET_MATERIALIZATION",
            "gated_documents",
            step_materialization_data=SimpleNamespace(materialization=materialization),
        )
    )
    error = SimpleNamespace(
        cls_name="DagsterExecutionStepExecutionError",
        message="Error occurred",
        to_string=lambda: "stack",
        cause=SimpleNamespace(cls_name="ValueError", message="bad row 7\nmore", cause=None),
    )
    progress(
        _event(
            "STEP_FAILURE",
            "dedupe",
            step_failure_data=SimpleNamespace(error=error, error_source=SimpleNamespace(value="USER_CODE_ERROR")),
        )
    )
    progress(
        _event(
            "STEP_FAILURE",
            "screen",
            step_failure_data=SimpleNamespace(error=error, error_source=SimpleNamespace(value="INTERRUPT")),
        )
    )
    assert out.getvalue().splitlines() == [
        "▸ gated_documents started",
        "✓ gated_documents [wiki]: 2,000 rows in 4.0 s (500 rows/s)",
        "✗ dedupe failed: ValueError: bad row 7",
        "✗ screen interrupted",
    ]
    assert progress.failed_steps == ["dedupe"] and progress.interrupted_steps == ["screen"]


def test_progress_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROGRESS_EVERY_ENV, "5")
    assert progress_every_s() == 5.0 and progress_every_s(2) == 2.0
    monkeypatch.setenv(PROGRESS_EVERY_ENV, "soon")
    with pytest.raises(ValueError, match="number of seconds"):
        progress_every_s()
    with pytest.raises(ValueError, match="0 or more"):
        progress_every_s(-1)


def _wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_first_sigint_asks_to_stop_and_the_second_kills() -> None:
    firsts: list[int] = []
    kills: list[str] = []
    killed = threading.Event()

    def kill(message: str) -> None:
        kills.append(message)
        killed.set()

    before = signal.getsignal(signal.SIGINT)
    with stop_on_interrupt(lambda: firsts.append(1), kill=kill) as stop:
        assert not stop.requested
        with pytest.raises(KeyboardInterrupt):  # outside a Dagster step the press still interrupts the code
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        _wait_for(lambda: stop.requested)
        assert firsts == [1] and not kills
        stop.note()  # the same press seen again in the event log is not a second press
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        assert killed.wait(5)
    assert firsts == [1] and len(kills) == 1 and "second Ctrl-C" in kills[0]
    assert signal.getsignal(signal.SIGINT) is before


def test_the_interrupted_summary_is_one_line_naming_what_was_and_was_not_built() -> None:
    from mixtrain.commands import _interrupted_summary
    from mixtrain.runner import RunReport

    report = RunReport(
        materialized=[("raw_documents", "wiki"), ("raw_documents", "forum"), ("base_model", None)],
        not_materialized=[("gated_documents", "wiki"), ("mixture", None)],
        interrupted=True,
    )
    line = _interrupted_summary(report)
    assert "\n" not in line
    assert "materialized 3 asset partition(s) (raw_documents (2 partitions), base_model)" in line
    assert "not materialized: gated_documents[wiki], mixture and whatever depends on them" in line
    assert "mixtrain status" in _interrupted_summary(RunReport(interrupted=True))
