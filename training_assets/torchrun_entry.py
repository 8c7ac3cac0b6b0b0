"""torchrun as the ``torchrun`` launcher starts it: ``python -m training_assets.torchrun_entry <torchrun args>``.

It is the current interpreter's ``torch.distributed.run``, unchanged, with one difference: how it ends when it is
stopped. When a ``mixtrain run`` is interrupted (Ctrl-C), Dagster Pipes sends SIGINT to this process; torchrun's
agent stops its workers (each exits quietly, see :mod:`training_assets.pipes_train`) and then raises
``SignalException``, whose traceback, plus a warning per signal, would land in the terminal under the one line
``mixtrain run`` prints for the stop. Here that ends as exit status 128 + the signal, silently unless
``$MIXTRAIN_VERBOSE`` is 1. Any other failure keeps torchrun's own report.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from mixtrain.warnings_policy import VERBOSE_ENV

QUIET_LOGGERS = (
    "torch.distributed.run",
    "torch.distributed.elastic.agent.server.api",
    "torch.distributed.elastic.multiprocessing.api",
)


def main(argv: Sequence[str] | None = None) -> int:
    try:  # the imports too: a signal may come while torch loads
        from torch.distributed.elastic.multiprocessing.api import SignalException
        from torch.distributed.run import main as torchrun

        if os.environ.get(VERBOSE_ENV) != "1":
            # "Setting OMP_NUM_THREADS ...", "Received 2 death signal, shutting down workers", "Sending process
            # N closing signal": notes for whoever runs torchrun by hand; `mixtrain run` says what happened.
            # torchrun sets each logger's own level at import (from $LOGLEVEL): they are set one by one after.
            for name in QUIET_LOGGERS:
                logging.getLogger(name).setLevel(logging.ERROR)
        try:
            torchrun(list(argv) if argv is not None else None)
        except SignalException as e:
            return 128 + int(e.sigval)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
