"""Which warnings a mixtrain user sees: library notes addressed to developers are hidden unless asked for.

Dagster marks parts of its API beta or preview and warns on every use (every run touches some), and libraries
warn about their own deprecations: nothing a person running a pipeline can act on. The CLI hides them for the
length of a command (``-v`` shows them); the domain packages' definitions hide them when imported by a process
without the CLI around it (``dagster dev``), unless ``$MIXTRAIN_VERBOSE`` is 1, which ``-v`` sets, so
``mixtrain -v ui`` and ``mixtrain -v run`` show every note, those raised while the asset modules load included.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from typing import TextIO

VERBOSE_ENV = "MIXTRAIN_VERBOSE"
# Hugging Face's own chatter, read when its libraries are imported (and inherited by a Pipes training process):
# a "Loading weights" / "Writing model shards" bar per model read or written, and advisory log notes. `mixtrain
# run` prints its own progress; -v leaves these as the libraries set them. A value the user set is kept.
LIBRARIES_WARNING_IN_FUTURE = (r"transformers(\.|$)", r"peft(\.|$)", r"huggingface_hub(\.|$)")
QUIET_LIBRARY_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}


def library_warning_categories() -> tuple[type[Warning], ...]:
    """Dagster's beta, preview and supersession notices, and deprecations."""
    from dagster_shared.utils.warnings import BetaWarning, PreviewWarning, SupersessionWarning

    return (BetaWarning, PreviewWarning, SupersessionWarning, DeprecationWarning, PendingDeprecationWarning)


def hide_library_warnings() -> None:
    """Ignore library warnings in this process unless ``$MIXTRAIN_VERBOSE`` is ``1``: for the code location,
    which a ``dagster dev`` process imports without the CLI around it."""
    if os.environ.get(VERBOSE_ENV) != "1":
        for category in library_warning_categories():
            warnings.filterwarnings("ignore", category=category)
        # Hugging Face announces its API changes as FutureWarning (e.g. `is_gradient_checkpointing`), which a
        # Pipes training process would print once per rank; only theirs: FutureWarning is also for end users.
        for module in LIBRARIES_WARNING_IN_FUTURE:
            warnings.filterwarnings("ignore", category=FutureWarning, module=module)


@contextlib.contextmanager
def _shown_on_stderr() -> Iterator[None]:
    """Write warnings to stderr for the duration, whatever a library does to warnings or logging meanwhile.

    Importing detect-secrets (the secret scanner the gate uses) calls ``logging.captureWarnings(True)`` and sets
    the root logger to ERROR, which silently drops every warning raised after it; a test runner may record them
    instead. So ``warnings.showwarning`` is our own writer for the command (ahead of any recorder), and if a library
    routes warnings into logging meanwhile, the ``py.warnings`` logger has a stderr handler of its own."""
    logger = logging.getLogger("py.warnings")
    saved = (logger.level, logger.propagate)
    handler = logging.StreamHandler()  # sys.stderr as it is when a warning is written
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    logger.addHandler(handler)
    shown_by = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = show
    try:
        yield
    finally:
        if warnings.showwarning is not show:  # a library turned logging's capture on meanwhile: undo it here
            logging.captureWarnings(False)
        warnings.showwarning = shown_by
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


@contextlib.contextmanager
def library_warnings(verbose: bool) -> Iterator[None]:
    """Hide library warnings for the duration of a command unless ``verbose`` (then ``$MIXTRAIN_VERBOSE`` is set,
    so the code location and a ``dagster dev`` child show them as well; otherwise Hugging Face's progress bars
    and notes are turned off through ``QUIET_LIBRARY_ENV``). Filters and environment are restored after, so
    calling the CLI from Python (tests, notebooks) leaves the caller's settings as they were."""
    before = os.environ.get(VERBOSE_ENV)
    quieted = [] if verbose else [k for k in QUIET_LIBRARY_ENV if k not in os.environ]
    for key in quieted:
        os.environ[key] = QUIET_LIBRARY_ENV[key]
    with warnings.catch_warnings():
        shown: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if verbose:
            os.environ[VERBOSE_ENV] = "1"
            shown = _shown_on_stderr()
        else:
            os.environ.pop(VERBOSE_ENV, None)
            hide_library_warnings()
        try:
            with shown:
                yield
        finally:
            if before is None:
                os.environ.pop(VERBOSE_ENV, None)
            else:
                os.environ[VERBOSE_ENV] = before
            for key in quieted:
                os.environ.pop(key, None)
