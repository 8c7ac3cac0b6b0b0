"""Ctrl-C for ``mixtrain run``: the first press stops cleanly, a second one kills at once.

A terminal's Ctrl-C signals every process of the foreground group: besides ``mixtrain run`` itself, the
``tail`` and orphan-watcher processes Dagster starts to capture each step's output, a Pipes training process
and torchrun's workers, each of which would print its own traceback. So ``mixtrain run`` runs as a small
parent (:func:`run_in_own_group`) that starts the real run in a session of its own and forwards the signal to it
alone: the run stops its current step (Dagster terminates the step's children), records the Dagster run as
canceled and reports once. A second press makes the parent kill the run's whole group and exit at once.

Dagster swaps its own SIGINT handler in while a step runs (it turns the signal into an interruption of the
step and records the run as failed or canceled), so a Python-level handler of ours would not see presses made
during a step. The signal module's wakeup file descriptor sits below every Python handler: the interpreter
writes the signal number to it whichever handler is installed. A thread reading it therefore counts every
press: the first only records that a stop was asked for (Dagster, or the KeyboardInterrupt outside a run, does
the stopping), the second ends the process with status 130 without waiting for any cleanup.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process stopped by Ctrl-C
WORKER_ENV = "MIXTRAIN_RUN_WORKER"  # set in the process run_in_own_group starts: it does the work itself
KILLED = "\nmixtrain: killed by a second Ctrl-C; the next `mixtrain run` clears what was left\n"


class StopRequest:
    """Whether the person running the command asked it to stop, and how many times."""

    def __init__(self) -> None:
        self._presses = 0
        self._lock = threading.Lock()

    @property
    def requested(self) -> bool:
        return self._presses > 0

    def press(self) -> int:
        """Count one stop request (a signal, or an interruption Dagster reported); returns the count."""
        with self._lock:
            self._presses += 1
            return self._presses

    def note(self) -> None:
        """Record that a stop happened without counting a press: an interruption seen in the event log may be
        the same press the watcher already counted, and must not turn into a kill."""
        with self._lock:
            self._presses = max(self._presses, 1)


def _kill_now(message: str) -> None:
    with contextlib.suppress(OSError):
        os.write(sys.stderr.fileno(), message.encode())
    os._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def stop_on_interrupt(
    on_first: Callable[[], None] | None = None, kill: Callable[[str], None] = _kill_now
) -> Iterator[StopRequest]:
    """Watch SIGINT for the duration: yields the :class:`StopRequest` the presses are counted on.

    ``on_first`` runs (in the watcher thread) at the first press, to tell the person what happens next. Outside
    the main thread (a notebook's worker, a test runner thread) signals cannot be watched: the request is then
    only ever set by interruptions reported some other way."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_handler = signal.getsignal(signal.SIGINT)
    if previous_handler in (signal.SIG_DFL, signal.SIG_IGN, None):
        # The wakeup descriptor is written only for signals with a Python handler.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum != signal.SIGINT:
                    continue
                presses = stop.press()
                if presses == 1 and on_first is not None:
                    on_first()
                elif presses >= 2:
                    kill(KILLED)

    watcher = threading.Thread(target=watch, name="mixtrain-sigint", daemon=True)
    watcher.start()
    try:
        yield stop
    finally:
        signal.set_wakeup_fd(previous_fd)
        if previous_handler is not None:  # None: installed outside Python, nothing to put back
            signal.signal(signal.SIGINT, previous_handler)
        os.close(write_fd)  # the watcher reads end-of-file and returns
        watcher.join(timeout=1.0)
        os.close(read_fd)


def can_run_in_own_group() -> bool:
    """Whether this process should start the run as a child in its own session (see the module docstring):
    not in that child itself, and only where sessions and signal handlers are available (POSIX, main thread)."""
    return (
        os.environ.get(WORKER_ENV) != "1"
        and os.name == "posix"
        and threading.current_thread() is threading.main_thread()
    )


def run_in_own_group(argv: list[str]) -> int:
    """Run ``mixtrain <argv>`` in a new session and wait for it, forwarding SIGINT, SIGTERM and SIGHUP to it
    alone; a second SIGINT kills its whole group. Returns its exit status (128 + N for a death by signal N)."""
    env = {**os.environ, WORKER_ENV: "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mixtrain.cli", *argv], env=env, start_new_session=True)
    presses = 0

    def forward(signum: int, _frame: object) -> None:
        nonlocal presses
        if signum == signal.SIGINT:
            presses += 1
            if presses >= 2:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                _kill_now(KILLED)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, forward) for signum in forwarded}
    try:
        code = proc.wait()  # a signal runs its handler and the wait resumes (PEP 475)
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(signum, handler)
    return 128 - code if code < 0 else code
